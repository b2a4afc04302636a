//! The button-service binary: parse the configuration, open the bus, run until SIGTERM.

use std::process::ExitCode;

use anyhow::Context as _;
use button_service::config::Config;
use button_service::{Service, run};

/// mimalloc: the images link musl, whose own allocator is slow (scripts/lib/cross.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    service_kit::process::main(serve)
}

fn serve(config: Config) -> anyhow::Result<()> {
    let settings = config.resolve()?;
    // Two threads are plenty for one HTTP client and a tiny internal server.
    let runtime = service_kit::process::runtime(Some(2))?;
    runtime.block_on(async {
        let shutdown = service_kit::shutdown::on_signal();
        let bus = settings.device.bus.open()?;
        let listener = tokio::net::TcpListener::bind(settings.service.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.service.listen))?;
        let service = Service::start(bus, &settings, shutdown.clone())?;
        tracing::info!(
            bus = %settings.device.bus, address = %settings.device.address, led_url = %settings.led_url,
            poll_ms = settings.poll_interval.as_millis() as u64,
            int = settings.int.as_ref().map_or_else(|| "none (polled)".to_owned(), |(line, _)| line.to_string()),
            listen = %listener.local_addr()?,
            "button-service ready"
        );
        settings.device.announce_a_simulated_bus();
        run(listener, service, shutdown).await?;
        tracing::info!("bye");
        Ok::<_, anyhow::Error>(())
    })?;
    // Don't wait for the poll thread or idle runtime threads: exit now.
    runtime.shutdown_background();
    Ok(())
}
