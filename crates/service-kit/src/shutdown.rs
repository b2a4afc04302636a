//! The root of every service's shutdown tree: a [`CancellationToken`] cancelled by SIGTERM
//! (`docker stop`) or SIGINT (Ctrl-C). Tasks take child tokens; blocking threads check
//! [`CancellationToken::is_cancelled`]; tests stop a service by cancelling the token they gave it.

use tokio_util::sync::CancellationToken;

/// A token that SIGTERM or SIGINT cancels (and logs once). Must be called inside a Tokio
/// runtime.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let which = signal().await;
        tracing::info!("{which} received, shutting down");
        cancel.cancel();
    });
    token
}

/// Completes with the signal's name on SIGTERM or SIGINT.
async fn signal() -> &'static str {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => "SIGINT",
        () = terminate => "SIGTERM",
    }
}
