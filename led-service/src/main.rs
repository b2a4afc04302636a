//! The led-service binary: parse the configuration, open the bus, serve until SIGTERM.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use led_service::config::{Cli, Config};
use led_service::{AppState, run};

fn main() -> ExitCode {
    let Cli { command, config } = Cli::parse();
    let (listen, log_format) = (config.service.listen, config.service.log_format);
    service_kit::process::main::<Cli>(command, listen, log_format, || serve(config))
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = service_kit::shutdown::on_signal();
        let bus = config.service.bus.open()?;
        let state = AppState::start(bus, &config, shutdown.clone())?;
        let listener = tokio::net::TcpListener::bind(config.service.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.service.listen))?;
        let listen = listener.local_addr()?;
        let (bus, address) = (&config.service.bus, config.service.address);
        tracing::info!(%listen, %bus, %address, auth = state.token.is_some(), "led-service ready");
        // Find the button now so the log says at once whether it is there; requests retry.
        if let Err(error) = state.led.health().await {
            tracing::debug!(%error, "no button yet");
        }
        run(listener, state, shutdown).await?;
        Ok(())
    })
}
