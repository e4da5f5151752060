//! What a start and a reload both need: the command line read (with `@file` arguments), the
//! plugins folder loaded and checked, and the exit codes. Below both the process
//! ([`crate::app`]), the service ([`crate::service`], which reloads) and `brewblox-host check`
//! ([`crate::check`]), so none of them reaches up into another.

use std::{ffi::OsString, fmt, process::ExitCode};

use crate::{
    cli::{self, PluginArgSpec, Settings},
    logging,
    plugins::loader::{self, LoadError, LoadedSet},
};

/// Exit code for a service that could not start (bad plugin, port taken, …).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a bad command line, as argparse and clap use.
pub const EXIT_USAGE: u8 = 2;

/// The command line read and the plugins folder loaded: what a start or a reload needs.
pub struct Prepared {
    pub settings: Settings,
    pub loaded: LoadedSet,
}

/// Why [`prepare`] failed.
pub enum PrepareError {
    /// An `@file` argument could not be read.
    ArgFile(String),
    /// Plugin files were refused (each with its reason).
    Refused(Vec<LoadError>),
    /// The plugins' arguments clash with each other or the host's.
    PluginArgs(String),
    /// The command line is wrong, or asks for `--help`/`--version` (clap's answer), and
    /// what came from argument files, never to be shown.
    Usage(clap::Error, cli::argfiles::Origins),
}

impl fmt::Display for PrepareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrepareError::ArgFile(err) | PrepareError::PluginArgs(err) => f.write_str(err),
            PrepareError::Refused(errors) => {
                write!(f, "{} plugin file(s) refused: ", errors.len())?;
                let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                f.write_str(&lines.join("; "))
            }
            PrepareError::Usage(err, origins) => {
                let text = origins.redact(&err.to_string());
                f.write_str(text.lines().next().unwrap_or("bad command line").trim())
            }
        }
    }
}

impl PrepareError {
    /// Says what went wrong at start, on stderr (logging is not set up yet), and gives the
    /// exit code. Everything loaded is dropped first: nothing is left behind.
    pub fn exit(self, args: &[OsString]) -> ExitCode {
        match self {
            PrepareError::ArgFile(err) => {
                eprintln!("error: {}", logging::escape(&err));
                ExitCode::from(EXIT_USAGE)
            }
            PrepareError::Refused(errors) => {
                let detail = cli::prescan_debug(args);
                eprintln!(
                    "error: {} plugin file(s) refused; the service will not start:",
                    errors.len()
                );
                for err in &errors {
                    eprintln!("error: {}", logging::escape(&err.to_string()));
                    if let (true, Some(detail)) = (detail, &err.detail) {
                        eprintln!("{detail}");
                    }
                }
                ExitCode::from(EXIT_FAILURE)
            }
            PrepareError::PluginArgs(err) => {
                eprintln!("error: {}", logging::escape(&err));
                ExitCode::from(EXIT_FAILURE)
            }
            PrepareError::Usage(err, origins) => {
                if err.use_stderr() {
                    eprint!("{}", origins.redact(&err.render().to_string()));
                } else {
                    let _ = err.print();
                }
                ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(EXIT_USAGE))
            }
        }
    }
}

/// Expands `@file` arguments, loads the plugins folder (every check before any plugin code
/// runs) and parses the command line with the plugins' arguments.
pub fn prepare(args: Vec<OsString>) -> Result<Prepared, PrepareError> {
    let (args, origins) =
        cli::argfiles::expand_with_origins(args).map_err(PrepareError::ArgFile)?;
    let explicit_dir = cli::prescan_plugins(&args);
    let plugins_dir = explicit_dir
        .clone()
        .unwrap_or_else(|| cli::DEFAULT_PLUGINS.into());
    let loaded =
        loader::load_dir(&plugins_dir, explicit_dir.is_none()).map_err(PrepareError::Refused)?;
    let plugin_args = plugin_arg_specs(&loaded).map_err(PrepareError::PluginArgs)?;
    let settings =
        cli::parse(&args, &plugin_args).map_err(|err| PrepareError::Usage(err, origins))?;
    Ok(Prepared { settings, loaded })
}

/// Every plugin argument, refusing invalid names and clashes with the host's or another
/// plugin's.
pub fn plugin_arg_specs(loaded: &LoadedSet) -> Result<Vec<PluginArgSpec>, String> {
    let mut specs = Vec::new();
    for plugin in &loaded.plugins {
        cli::add_plugin_args(&mut specs, &plugin.name, &plugin.args)
            .map_err(|err| format!("{}: {err}", loader::shown(&plugin.file)))?;
    }
    Ok(specs)
}
