//! `brewblox-host check --plugins DIR`: every check the host makes when it loads a plugins
//! folder, without running anything — no startup hook, no socket, no broker. A deploy
//! script runs it before sending SIGHUP; exit 1 if the host would refuse the folder, or if
//! it would load no plugin while skipping some `*.so` entry that is no regular file (a
//! symlink loop, a dangling symlink, a FIFO, a device: each named with its reason).
//!
//! For each plugin it prints its name, version, build id, the plugin-api version it was
//! built against, whether its ABI fingerprint matches this host's, and its arguments.

use std::{ffi::OsString, path::PathBuf, process::ExitCode};

use clap::{Arg, Command};
use plugin_abi::ArgKind;

use crate::{
    boot::{plugin_arg_specs, EXIT_FAILURE, EXIT_USAGE},
    cli::DEFAULT_PLUGINS,
    plugins::loader::{self, shown, LoadedPlugin},
};

fn command() -> Command {
    Command::new("brewblox-host check")
        .bin_name("brewblox-host check")
        .about(
            "Checks a plugins folder as the host would load it, without starting any plugin; exit 1 if a file would be refused",
        )
        .arg(
            Arg::new("plugins")
                .long("plugins")
                .help(format!("Folder of plugin libraries [{DEFAULT_PLUGINS}]"))
                .env("BREWBLOX_PLUGINS")
                .default_value(DEFAULT_PLUGINS)
                .hide_default_value(true),
        )
}

/// Runs the check with the process's arguments (`args[1]` is `check`).
pub fn main(args: &[OsString]) -> ExitCode {
    let matches = match command().try_get_matches_from(&args[1..]) {
        Ok(matches) => matches,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(EXIT_USAGE));
        }
    };
    let dir = PathBuf::from(
        matches
            .get_one::<String>("plugins")
            .map(String::as_str)
            .unwrap_or(DEFAULT_PLUGINS),
    );
    let loaded = match loader::load_dir(&dir, false, None) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for err in &errors {
                println!("refused  {err}");
            }
            println!("{} plugin file(s) would be refused", errors.len());
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    if let Err(err) = plugin_arg_specs(&loaded) {
        println!("refused  {err}");
        return ExitCode::from(EXIT_FAILURE);
    }
    for plugin in &loaded.plugins {
        print!("{}", describe(plugin));
    }
    for skipped in &loaded.skipped {
        println!("skipped  {skipped}");
    }
    println!(
        "{} plugin(s) in {} would be loaded{}",
        loaded.plugins.len(),
        shown(&dir),
        match loaded.skipped.len() {
            0 => String::new(),
            n => format!(", {n} file(s) skipped"),
        }
    );
    // Skipped files beside loaded plugins are worth a look; skipped files and nothing loaded
    // is a folder that does not do what its owner meant.
    if loaded.plugins.is_empty() && !loaded.skipped.is_empty() {
        return ExitCode::from(EXIT_FAILURE);
    }
    ExitCode::SUCCESS
}

/// A plugin's entry: one line of identity, then one line per fact.
fn describe(plugin: &LoadedPlugin) -> String {
    let mut text = format!(
        "ok       {} {}  {}\n",
        plugin.name,
        plugin.version,
        shown(&plugin.file)
    );
    let fingerprint = if plugin.same_fingerprint {
        "matches this host's"
    } else {
        "differs from this host's (its layout was checked instead)"
    };
    text += &format!(
        "         build id: {}\n",
        plugin.build_id.as_deref().unwrap_or("none")
    );
    text += &format!(
        "         plugin-api: {} (host {}); ABI fingerprint {fingerprint}\n",
        plugin.api_version,
        plugin_abi::API_VERSION
    );
    if plugin.args.is_empty() {
        text += "         arguments: none\n";
    }
    for arg in &plugin.args {
        let kind = match arg.kind() {
            ArgKind::Flag => "flag",
            ArgKind::Int => "int",
            ArgKind::Float => "float",
            ArgKind::String => "string",
        };
        let default = arg
            .default_value()
            .map(|value| format!(", default {value}"))
            .unwrap_or_default();
        text += &format!(
            "         --{} ({kind}{default}): {}\n",
            arg.name(),
            arg.help_text()
        );
    }
    text
}
