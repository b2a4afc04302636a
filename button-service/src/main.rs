//! The button-service binary: parse the configuration, open the bus, run until SIGTERM.

use std::process::ExitCode;

use anyhow::Context as _;
use button_service::config::Config;
use button_service::{Service, run};

fn main() -> ExitCode {
    service_kit::process::main(serve)
}

fn serve(config: Config) -> anyhow::Result<()> {
    // Two threads are plenty for one HTTP client and a tiny internal server.
    let runtime = service_kit::process::runtime(Some(2))?;
    runtime.block_on(async {
        let shutdown = service_kit::shutdown::on_signal();
        let bus = config.service.bus.open()?;
        let listener = tokio::net::TcpListener::bind(config.service.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.service.listen))?;
        let service = Service::start(bus, &config, shutdown.clone())?;
        tracing::info!(
            bus = %config.service.bus, address = %config.service.address, led_url = %config.led_url,
            poll_ms = config.poll_interval.as_millis() as u64, listen = %listener.local_addr()?,
            "button-service ready"
        );
        run(listener, service, shutdown).await?;
        tracing::info!("bye");
        Ok::<_, anyhow::Error>(())
    })?;
    // Don't wait for the poll thread or idle runtime threads: exit now.
    runtime.shutdown_background();
    Ok(())
}
