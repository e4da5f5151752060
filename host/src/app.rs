//! The process: read the command line, load the plugins folder ([`crate::boot`]), then run
//! the service ([`crate::service`]) or, for `brewblox-host check`, only check the folder
//! ([`crate::check`]).

use std::{ffi::OsString, process::ExitCode, time::Duration};

use crate::{
    boot::{prepare, EXIT_FAILURE},
    check, logging,
    service::{self, Boot},
    shutdown::Signals,
};

/// Runs the process with its arguments; the return value is the exit code.
pub fn main() -> ExitCode {
    let began = std::time::Instant::now();
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "check") {
        return check::main(&args);
    }
    // Before the first thread: with threads running, each growth of the table waits.
    crate::fd_table::grow_while_single_threaded();
    // Whatever way `main` returns (a refused plugin, `--help`, a stop), the copies of the
    // plugins being kept for the next start are stored first (at most 5 s).
    let _keeping = FinishKeeping;
    // Signal handlers first: a SIGHUP or SIGTERM while plugins load must not kill the
    // process with the default action.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(crate::plugins::bridge::mark_host_runtime_thread)
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let mut signals = runtime.block_on(async { Signals::install() });

    let prepared = match prepare(args.clone()) {
        Ok(prepared) => prepared,
        Err(err) => return err.exit(&args),
    };
    let log_settings = logging::LogSettings {
        debug: prepared.settings.debug,
        output: prepared.settings.output.as_deref(),
        rust_log: std::env::var("RUST_LOG").ok(),
    };
    if let Err(err) = logging::init(&log_settings) {
        eprintln!("error: {err}");
        return ExitCode::from(EXIT_FAILURE);
    }
    signals.report();
    let boot = Boot {
        settings: prepared.settings,
        loaded: prepared.loaded,
        args,
        began,
    };
    let code = runtime.block_on(service::run(boot, &mut signals));
    // Plugin runtimes and abandoned hooks must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// Waits, as it is dropped, for the copies of plugins still being kept
/// ([`crate::plugins::copy_cache::finish_keeping`]).
struct FinishKeeping;

impl Drop for FinishKeeping {
    fn drop(&mut self) {
        crate::plugins::copy_cache::finish_keeping(Duration::from_secs(5));
    }
}
