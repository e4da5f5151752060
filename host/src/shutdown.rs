//! SIGINT and SIGTERM both mean "shut down gracefully" (aiohttp's behaviour, exit code 0).

use tokio::signal::unix::{signal as unix_signal, SignalKind};

/// Resolves with the name of the first termination signal received.
pub async fn signal() -> &'static str {
    let (Ok(mut term), Ok(mut int)) = (
        unix_signal(SignalKind::terminate()),
        unix_signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the service can only be killed; wait forever.
        tracing::error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
