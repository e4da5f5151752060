//! Signals: SIGINT and SIGTERM mean "shut down gracefully" (aiohttp's behaviour, exit code 0);
//! SIGHUP means "reload": shut down gracefully, then start again in the same process with the
//! same arguments, loading the plugins folder afresh (hot swap without a supervisor).

use tokio::signal::unix::{signal as unix_signal, SignalKind};

/// Why the service is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT or SIGTERM: exit.
    Exit(&'static str),
    /// SIGHUP: start again.
    Reload,
}

impl Stop {
    pub fn signal_name(self) -> &'static str {
        match self {
            Stop::Exit(name) => name,
            Stop::Reload => "SIGHUP",
        }
    }
}

/// Resolves with the first termination or reload signal received.
pub async fn signal() -> Stop {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        unix_signal(SignalKind::terminate()),
        unix_signal(SignalKind::interrupt()),
        unix_signal(SignalKind::hangup()),
    ) else {
        // Without signal handlers the service can only be killed; wait forever.
        tracing::error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => Stop::Exit("SIGTERM"),
        _ = int.recv() => Stop::Exit("SIGINT"),
        _ = hup.recv() => Stop::Reload,
    }
}

/// Replaces this process with a fresh start of the same program and arguments. Returns only
/// if that failed.
pub fn reexec(args: &[std::ffi::OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let program = match std::env::current_exe() {
        Ok(program) => program,
        Err(err) => return err,
    };
    std::process::Command::new(program)
        .args(args.iter().skip(1))
        .exec()
}
