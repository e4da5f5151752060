//! What a start and a reload both need: the command line read (with `@file` arguments), the
//! plugins folder loaded and checked, and the exit codes. Below both the process
//! ([`crate::app`]), the service ([`crate::service`], which reloads) and `brewblox-host check`
//! ([`crate::check`]), so none of them reaches up into another.

use std::{ffi::OsString, fmt, path::PathBuf, process::ExitCode};

use crate::{
    cli::{self, argfiles::ArgFileError, PluginArgError, PluginArgSpec, Settings},
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

/// Why [`prepare`] failed; the message is one line (a reload's log and health show it).
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// An `@file` argument could not be read.
    #[error(transparent)]
    ArgFile(ArgFileError),
    /// Plugin files were refused (each with its reason).
    #[error("{} plugin file(s) refused: {}", .0.len(), Refusals(.0))]
    Refused(Vec<LoadError>),
    /// The plugins' arguments clash with each other or the host's.
    #[error(transparent)]
    PluginArgs(PluginArgsError),
    /// The command line is wrong, or asks for `--help`/`--version` (clap's answer), and
    /// what came from argument files, never to be shown.
    #[error("{}", first_line(.0, .1))]
    Usage(clap::Error, cli::argfiles::Origins),
}

/// Refused plugin files on one line, `; ` between them.
struct Refusals<'a>(&'a [LoadError]);

impl fmt::Display for Refusals<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

/// The first line of clap's message, without what came from argument files.
fn first_line(err: &clap::Error, origins: &cli::argfiles::Origins) -> String {
    let text = origins.redact(&err.to_string());
    text.lines()
        .next()
        .unwrap_or("bad command line")
        .trim()
        .to_owned()
}

impl PrepareError {
    /// Says what went wrong at start, on stderr (logging is not set up yet), and gives the
    /// exit code. Everything loaded is dropped first: nothing is left behind.
    pub fn exit(self, args: &[OsString]) -> ExitCode {
        match self {
            PrepareError::ArgFile(err) => {
                eprintln!("error: {}", logging::escape(&err.to_string()));
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
                eprintln!("error: {}", logging::escape(&err.to_string()));
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
    let cache_dir = cli::prescan_plugin_cache(&args);
    let loaded = loader::load_dir(&plugins_dir, explicit_dir.is_none(), cache_dir.as_deref())
        .map_err(PrepareError::Refused)?;
    let plugin_args = plugin_arg_specs(&loaded).map_err(PrepareError::PluginArgs)?;
    let settings =
        cli::parse(&args, &plugin_args).map_err(|err| PrepareError::Usage(err, origins))?;
    Ok(Prepared { settings, loaded })
}

/// A plugin argument refused, and the file of the plugin that declares it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {refused}", loader::shown(.file))]
pub struct PluginArgsError {
    pub file: PathBuf,
    /// Boxed: the refusal is large, and an `Err` is best kept small.
    pub refused: Box<PluginArgError>,
}

/// Every plugin argument, refusing invalid names and clashes with the host's or another
/// plugin's.
pub fn plugin_arg_specs(loaded: &LoadedSet) -> Result<Vec<PluginArgSpec>, PluginArgsError> {
    let mut specs = Vec::new();
    for plugin in &loaded.plugins {
        cli::add_plugin_args(&mut specs, &plugin.name, &plugin.args).map_err(|refused| {
            PluginArgsError {
                file: plugin.file.clone(),
                refused: Box::new(refused),
            }
        })?;
    }
    Ok(specs)
}
