//! A simulated button on a `tcp://` bus, as the simulator container serves it, for tests that
//! run the services (or the bus client) over the real protocol without Docker.

use std::net::SocketAddr;

use qwiic_bus::server::Limits;
use qwiic_bus::{TcpBus, TcpTimeouts};
use qwiic_sim::SimButton;
use tokio_util::sync::CancellationToken;

/// The simulator's bus server on its own thread and runtime; stopped on drop.
pub struct SimServer {
    /// Where it listens (127.0.0.1, a port of its own).
    pub address: SocketAddr,
    limits: Limits,
    running: Option<(CancellationToken, std::thread::JoinHandle<()>)>,
}

impl SimServer {
    /// Serves `button` on a free loopback port.
    pub fn start(button: SimButton) -> SimServer {
        Self::start_with("127.0.0.1:0".parse().unwrap(), button, Limits::default())
    }

    /// Serves `button` on `address` (port 0: a free one) within `limits`.
    pub fn start_with(address: SocketAddr, button: SimButton, limits: Limits) -> SimServer {
        let mut server = SimServer {
            address,
            limits,
            running: None,
        };
        server.serve(button);
        server
    }

    /// `tcp://127.0.0.1:<port>`, the services' `BUS`.
    pub fn url(&self) -> String {
        format!("tcp://{}", self.address)
    }

    /// A client of it, with the default timeouts.
    pub fn client(&self) -> TcpBus {
        TcpBus::new(
            self.address.ip().to_string(),
            self.address.port(),
            TcpTimeouts::default(),
        )
    }

    /// Stops it: every client's connection is dropped, and new ones are refused.
    pub fn stop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            stop.cancel();
            let _ = thread.join();
        }
    }

    /// Serves `button` again on the same address (a simulator that restarted, with the state
    /// `button` has: a new one for a restart that lost everything).
    pub fn restart(&mut self, button: SimButton) {
        self.stop();
        self.serve(button);
    }

    fn serve(&mut self, button: SimButton) {
        // std binds with SO_REUSEADDR, so the same port is free again at once after a stop.
        let listener = std::net::TcpListener::bind(self.address).unwrap();
        listener.set_nonblocking(true).unwrap();
        self.address = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let limits = self.limits;
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                qwiic_bus::server::serve(listener, button, limits, stopped)
                    .await
                    .unwrap();
            });
        });
        self.running = Some((stop, thread));
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.stop();
    }
}
