//! The led-service binary: parse the configuration, open the bus, serve until SIGTERM.

use std::process::ExitCode;

use anyhow::Context as _;
use led_service::config::Config;
use led_service::{AppState, run};

/// mimalloc: the images link musl, whose own allocator is slow (scripts/lib/cross.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    service_kit::process::main(serve)
}

fn serve(config: Config) -> anyhow::Result<()> {
    let settings = config.resolve()?;
    service_kit::process::runtime(None)?.block_on(async {
        let shutdown = service_kit::shutdown::on_signal();
        let bus = settings.device.bus.open()?;
        let state = AppState::start(bus, &settings, shutdown.clone())?;
        let listener = tokio::net::TcpListener::bind(settings.service.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.service.listen))?;
        let listen = listener.local_addr()?;
        let (bus, address) = (&settings.device.bus, settings.device.address);
        tracing::info!(%listen, %bus, %address, auth = state.token.is_some(), "led-service ready");
        settings.device.announce_a_simulated_bus();
        // Find the button now so the log says at once whether it is there; requests retry.
        if let Err(error) = state.led.health().await {
            tracing::debug!(%error, "no button yet");
        }
        run(listener, state, shutdown).await?;
        Ok(())
    })
}
