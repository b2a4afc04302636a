//! The simulator binary: one simulated button on TCP, its page and control API on HTTP.

use std::process::ExitCode;

use anyhow::Context as _;
use qwiic_sim::{Settings, SimButton, SimConfig, SystemClock};
use simulator::config::Config;

/// mimalloc: the images link musl, whose own allocator is slow (scripts/lib/cross.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    service_kit::process::main(serve)
}

fn serve(config: Config) -> anyhow::Result<()> {
    // One thread: the device is one mutex anyway, and a single-threaded runtime answers a
    // client's round trip without a cross-thread wake-up.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let tcp = tokio::net::TcpListener::bind(config.tcp_listen)
            .await
            .with_context(|| format!("cannot listen on {} (TCP bus)", config.tcp_listen))?;
        let http = tokio::net::TcpListener::bind(config.http_listen)
            .await
            .with_context(|| format!("cannot listen on {} (HTTP)", config.http_listen))?;
        let button = SimButton::with_config(
            SimConfig {
                firmware: config.firmware,
                eeprom: Settings {
                    address: config.address.get(),
                    ..Settings::default()
                }
                .into(),
                ..SimConfig::default()
            },
            SystemClock::new(),
        );
        let shutdown = service_kit::shutdown::on_signal();
        let state = simulator::AppState::new(button, shutdown.clone()).with_allowed_hosts(
            service_kit::guard::AllowedHosts::new(&config.hosts.allowed_hosts),
        );
        tracing::info!(
            tcp = %tcp.local_addr()?, http = %http.local_addr()?, address = %config.address,
            firmware = %format!("{}.{}", config.firmware.0, config.firmware.1),
            "simulator ready: open the page on the HTTP address"
        );
        simulator::run(tcp, http, state, shutdown).await?;
        tracing::info!("bye");
        Ok::<_, anyhow::Error>(())
    })?;
    runtime.shutdown_background();
    Ok(())
}
