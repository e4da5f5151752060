//! Finds plugin libraries in a folder and loads them, refusing anything that is not a
//! compatible brewblox-host plugin before any of its code runs.
//!
//! Each library is first copied into a private folder and loaded from there: abi_stable
//! never unloads a library, and overwriting a mapped `.so` in place crashes the process
//! (SIGBUS). With private copies the plugins folder can be changed freely while the host
//! runs (`cp`, `mv`, `rm`); the new files serve after a restart.

use std::{
    collections::HashMap,
    fmt, fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use abi_stable::library::{lib_header_from_path, LibraryError, RootModule};
use plugin_api::{abi::PluginModRef, Arg};
use tempfile::TempDir;

use super::{permissions, version};

/// A plugin library that passed every check.
pub struct LoadedPlugin {
    pub name: String,
    pub version: String,
    /// Where it was found (not the private copy).
    pub file: PathBuf,
    pub module: PluginModRef,
    pub args: Vec<Arg>,
}

/// Why a file was refused.
#[derive(Debug)]
pub struct LoadError {
    pub file: PathBuf,
    /// One readable line.
    pub reason: String,
    /// The full diagnosis where there is more (abi_stable's layout report), for `--debug`.
    pub detail: Option<String>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.reason)
    }
}

impl LoadError {
    fn new(file: &Path, reason: impl Into<String>) -> Self {
        LoadError {
            file: file.to_owned(),
            reason: reason.into(),
            detail: None,
        }
    }
}

/// The private copies; they live as long as the process uses the libraries.
pub struct LoadedSet {
    pub plugins: Vec<LoadedPlugin>,
    _private: Option<TempDir>,
}

/// Loads every `*.so` in `dir`, in file-name order, each file once.
///
/// `missing_ok`: a folder that does not exist means "no plugins" (the default folder),
/// instead of an error (a folder the user named).
pub fn load_dir(dir: &Path, missing_ok: bool) -> Result<LoadedSet, Vec<LoadError>> {
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(err) if missing_ok && err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LoadedSet {
                plugins: Vec::new(),
                _private: None,
            });
        }
        Err(err) => {
            return Err(vec![LoadError::new(
                dir,
                format!("cannot open plugins folder: {err}"),
            )])
        }
    };
    if !meta.is_dir() {
        return Err(vec![LoadError::new(dir, "not a folder")]);
    }
    permissions::check(dir, &meta).map_err(|reason| vec![LoadError::new(dir, reason)])?;

    let files = plugin_files(dir).map_err(|err| vec![err])?;
    let private = tempfile::Builder::new()
        .prefix("brewblox-host-")
        .tempdir()
        .map_err(|err| {
            vec![LoadError::new(
                dir,
                format!("cannot create a private folder for plugins: {err}"),
            )]
        })?;

    let mut plugins: Vec<LoadedPlugin> = Vec::new();
    let mut errors = Vec::new();
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    for (index, file) in files.iter().enumerate() {
        match load_file(file, private.path(), index) {
            Ok(plugin) => match names.get(&plugin.name) {
                Some(first) => errors.push(LoadError::new(
                    file,
                    format!(
                        "plugin name \"{}\" is already used by {}; plugin names must be unique",
                        plugin.name,
                        first.display()
                    ),
                )),
                None => {
                    names.insert(plugin.name.clone(), file.clone());
                    plugins.push(plugin);
                }
            },
            Err(err) => errors.push(err),
        }
    }
    if errors.is_empty() {
        Ok(LoadedSet {
            plugins,
            _private: Some(private),
        })
    } else {
        Err(errors)
    }
}

/// The `.so` files of `dir`, sorted by name, symlinks to the same file counted once.
fn plugin_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let entries = fs::read_dir(dir)
        .map_err(|err| LoadError::new(dir, format!("cannot list plugins folder: {err}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "so"))
        .filter(|path| path.is_file())
        .collect();
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    let mut seen = std::collections::HashSet::new();
    files.retain(|path| match fs::metadata(path) {
        Ok(meta) => seen.insert((meta.dev(), meta.ino())),
        Err(_) => true,
    });
    Ok(files)
}

fn load_file(file: &Path, private_dir: &Path, index: usize) -> Result<LoadedPlugin, LoadError> {
    let meta =
        fs::metadata(file).map_err(|err| LoadError::new(file, format!("cannot read: {err}")))?;
    permissions::check(file, &meta).map_err(|reason| LoadError::new(file, reason))?;

    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let copy = private_dir.join(format!("{index:03}-{file_name}"));
    fs::copy(file, &copy)
        .map_err(|err| LoadError::new(file, format!("cannot copy to {}: {err}", copy.display())))?;

    let header = lib_header_from_path(&copy).map_err(|err| describe(file, err))?;

    // Our own semver check first: it gives the clearest message and catches what
    // abi_stable ignores (a plugin built against a newer patch than the host).
    let strings = header.version_strings();
    let plugin_api = strings.version.as_str();
    version::check(plugin_api, version::host_api_version())
        .map_err(|reason| LoadError::new(file, reason))?;
    if header.root_mod_consts().name().as_str() != PluginModRef::NAME {
        return Err(LoadError::new(
            file,
            format!(
                "not a brewblox-host plugin (its root module is \"{}\")",
                header.root_mod_consts().name().as_str()
            ),
        ));
    }

    let module = header
        .init_root_module::<PluginModRef>()
        .map_err(|err| describe(file, err))?;
    let info = module.info()();
    if !info.panic_unwind {
        return Err(LoadError::new(
            file,
            "built with panic = \"abort\"; a panic in it would take the host down. Build it with the default panic = \"unwind\"",
        ));
    }
    if info.api_version.as_str() != plugin_api {
        return Err(LoadError::new(
            file,
            format!(
                "inconsistent plugin-api versions ({} and {plugin_api})",
                info.api_version
            ),
        ));
    }
    let name = info.name.to_string();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(LoadError::new(
            file,
            format!("invalid plugin name \"{name}\""),
        ));
    }
    let args_json = module.declare_args()().into_result().map_err(|err| {
        LoadError::new(
            file,
            format!("plugin {name} failed to declare its arguments: {err}"),
        )
    })?;
    let args: Vec<Arg> = serde_json::from_str(&args_json).map_err(|err| {
        LoadError::new(
            file,
            format!("plugin {name} declared invalid arguments: {err}"),
        )
    })?;
    Ok(LoadedPlugin {
        name,
        version: info.version.to_string(),
        file: file.to_owned(),
        module,
        args,
    })
}

/// Turns abi_stable's errors (the layout report runs to thousands of lines) into one line.
fn describe(file: &Path, err: LibraryError) -> LoadError {
    let reason = match &err {
        LibraryError::OpenError { err, .. } => {
            let text = err.to_string();
            if text.contains("invalid ELF header") || text.contains("file too short") {
                format!("not a shared library ({})", last_part(&text))
            } else {
                format!("cannot load: {}", last_part(&text))
            }
        }
        LibraryError::GetSymbolError { .. } => {
            "not a brewblox-host plugin (it exports no plugin header; use plugin_api::export_plugin!)".to_owned()
        }
        LibraryError::IncompatibleVersionNumber { expected_version, actual_version, .. } => format!(
            "built against plugin-api {actual_version}, but this host loads plugin-api {expected_version}; rebuild the plugin"
        ),
        LibraryError::AbiInstability(report) => {
            format!("incompatible plugin ABI: {}; rebuild the plugin against this host's plugin-api", summarize(&report.to_string()))
        }
        LibraryError::InvalidAbiHeader(_) | LibraryError::InvalidCAbi { .. } => {
            "built with an incompatible abi_stable or compiler ABI; rebuild the plugin".to_owned()
        }
        other => format!("cannot load: {}", summarize(&other.to_string())),
    };
    LoadError {
        file: file.to_owned(),
        reason,
        detail: Some(err.to_string()),
    }
}

fn last_part(text: &str) -> &str {
    text.rsplit(": ").next().unwrap_or(text).trim()
}

/// The gist of a layout report: its last `Error:` with what was expected and found.
fn summarize(report: &str) -> String {
    let lines: Vec<&str> = report.lines().map(str::trim).collect();
    let value_after = |index: usize, label: &str| -> Option<&str> {
        lines[index..]
            .iter()
            .position(|l| *l == label)
            .and_then(|pos| {
                lines[index + pos + 1..]
                    .iter()
                    .find(|l| !l.is_empty())
                    .copied()
            })
    };
    let mut summary = match lines.iter().rposition(|l| l.starts_with("Error:")) {
        Some(index) => {
            let message = lines[index].trim_start_matches("Error:").trim();
            match (
                value_after(index, "Expected:"),
                value_after(index, "Found:"),
            ) {
                (Some(expected), Some(found)) => {
                    format!("{message}: expected {expected}, found {found}")
                }
                _ => message.to_owned(),
            }
        }
        None => lines
            .iter()
            .find(|l| !l.is_empty())
            .copied()
            .unwrap_or("")
            .to_owned(),
    };
    if summary.len() > 300 {
        let mut cut = 300;
        while !summary.is_char_boundary(cut) {
            cut -= 1;
        }
        summary.truncate(cut);
        summary.push('…');
    }
    summary
}

#[cfg(test)]
mod tests {
    #[test]
    fn layout_reports_are_summarized() {
        let report = "Compared <this>:\n  lots\nError:mismatched type\nExpected:\n    PluginMod\nFound:\n    OtherMod\n";
        assert_eq!(
            super::summarize(report),
            "mismatched type: expected PluginMod, found OtherMod"
        );
        assert_eq!(super::summarize("just one line"), "just one line");
    }
}
