//! The led-service binary: parse the configuration, open the bus, serve until SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser as _;
use led_service::config::{Cli, Config};
use led_service::device::LedDevice;
use led_service::metrics::Metrics;
use led_service::{AppState, run};
use qwiic_button::QwiicButton;

fn main() -> ExitCode {
    let Cli { command, config } = Cli::parse();
    service_kit::main(command, config.listen, config.log_format, || serve(config))
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let bus = config.bus.open()?;
        let metrics = Metrics::default();
        let button = QwiicButton::new(bus, config.address);
        let led = LedDevice::spawn(button, config.bus.clone(), &metrics, config.bus_timeout)
            .context("cannot start the I2C owner thread")?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let (closing, closing_rx) = tokio::sync::watch::channel(false);
        let state = AppState {
            led: led.clone(),
            metrics,
            token: config.api_token.filter(|token| !token.is_empty()).map(Arc::from),
            default_brightness: config.brightness,
            closing: closing_rx,
        };
        tracing::info!(listen = %config.listen, bus = %config.bus, address = %config.address, auth = state.token.is_some(), "led-service ready");
        // Find the button now so the log says at once whether it is there; requests retry.
        if let Err(error) = led.health().await {
            tracing::debug!(%error, "no button yet");
        }
        run(listener, state, closing, service_kit::shutdown_signal()).await?;
        Ok(())
    })
}
