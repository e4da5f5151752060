//! Signals: SIGINT and SIGTERM mean "shut down gracefully" (aiohttp's behaviour, exit code
//! 0); SIGHUP means "reload the plugins folder" (see [`crate::service`]).
//!
//! The handlers are installed before anything else happens, so a signal at any moment —
//! while plugins load, during a reload, during the shutdown drain — is received and
//! answered, never the default action (SIGHUP's would kill the process).

use tokio::signal::unix::{signal, Signal, SignalKind};

/// A signal the service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// SIGINT or SIGTERM, by name: stop.
    Stop(&'static str),
    /// SIGHUP: reload.
    Reload,
}

/// The process's signal handlers.
pub struct Signals {
    handlers: Option<[Signal; 3]>,
    /// Why the handlers could not be installed: they are installed before logging exists,
    /// so the reason waits for [`Signals::report`].
    failure: Option<std::io::Error>,
}

impl Signals {
    /// Installs the handlers; must run inside the tokio runtime.
    pub fn install() -> Signals {
        let installed = [
            SignalKind::terminate(),
            SignalKind::interrupt(),
            SignalKind::hangup(),
        ]
        .map(signal);
        match installed {
            [Ok(term), Ok(int), Ok(hup)] => Signals {
                handlers: Some([term, int, hup]),
                failure: None,
            },
            [term, int, hup] => Signals {
                handlers: None,
                failure: [term, int, hup].into_iter().find_map(Result::err),
            },
        }
    }

    /// Logs why the handlers are missing, if they are: called once logging is set up.
    pub fn report(&self) {
        if let Some(err) = &self.failure {
            // Without handlers the service can only be killed.
            tracing::error!(
                "cannot install signal handlers: {err}; only SIGKILL stops the service"
            );
        }
    }

    /// The next signal received (those received since the last call first).
    pub async fn next(&mut self) -> Received {
        let Some([term, int, hup]) = &mut self.handlers else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => Received::Stop("SIGTERM"),
            _ = int.recv() => Received::Stop("SIGINT"),
            _ = hup.recv() => Received::Reload,
        }
    }
}
