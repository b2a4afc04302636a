//! The button-service binary: parse the configuration, open the bus, run until SIGTERM.

use std::process::ExitCode;

use anyhow::Context as _;
use button_service::config::{Cli, Config};
use button_service::metrics::Metrics;
use clap::Parser as _;
use qwiic_button::QwiicButton;

fn main() -> ExitCode {
    let Cli { command, config } = Cli::parse();
    service_kit::main(command, config.listen, config.log_format, || serve(config))
}

fn serve(config: Config) -> anyhow::Result<()> {
    // Two threads are plenty for one HTTP client and a tiny internal server.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let bus = config.bus.open()?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        tracing::info!(
            bus = %config.bus, address = %config.address, led_url = %config.led_url,
            poll_ms = config.poll_interval.as_millis() as u64, listen = %config.listen,
            "button-service ready"
        );
        let button = QwiicButton::new(bus, config.address);
        button_service::run(
            &config,
            button,
            listener,
            Metrics::default(),
            service_kit::shutdown_signal(),
        )
        .await?;
        tracing::info!("bye");
        Ok::<_, anyhow::Error>(())
    })?;
    // Don't wait for the poll thread or idle runtime threads: exit now.
    runtime.shutdown_background();
    Ok(())
}
