//! The led-service binary: parse the configuration, open the bus, serve until SIGTERM.

use std::process::ExitCode;

use anyhow::Context as _;
use led_service::config::Config;
use led_service::{AppState, run};

fn main() -> ExitCode {
    service_kit::process::main(serve)
}

fn serve(config: Config) -> anyhow::Result<()> {
    service_kit::process::runtime(None)?.block_on(async {
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
