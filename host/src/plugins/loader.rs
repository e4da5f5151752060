//! Finds plugin libraries in a folder and loads them, refusing anything that is not a
//! compatible brewblox-host plugin before any of its code runs.
//!
//! Each file is first checked without loading it ([`elf_check`]: a complete ELF shared
//! object for this machine that exports the plugin header), so a half-written file or a
//! library that is not a plugin is refused before any of its code runs.
//!
//! Each library is then copied into a private folder and loaded from there: abi_stable
//! never unloads a library, and overwriting a mapped `.so` in place crashes the process
//! (SIGBUS). With private copies the plugins folder can be changed freely while the host
//! runs (`cp`, `mv`, `rm`); the new files serve after a reload. A copy is deleted as soon as
//! it is loaded (the mapping stays valid), so no copy outlives the process, whatever way it
//! ends; unless the copies are cached ([`copy_cache`]), in which case a copy of a file that
//! has not changed since is kept for the next start, read-only, and mapped from there.
//!
//! The copy holds only what the dynamic loader maps (the ELF header and the bytes its
//! program headers cover): a release build with `debug = 1` is ~13 MiB, of which ~1 MiB is
//! loaded, and copying whole files made startup with 50 plugins take most of a second. Set
//! `RUST_BACKTRACE=full` to get whole copies, whose debug info symbolises plugin frames.

use std::{
    collections::HashMap,
    fmt, fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::SystemTime,
};

use abi_stable::library::{lib_header_from_raw_library, LibraryError, RawLibrary, RootModule};
use plugin_abi::{Arg, PluginModRef, ABI_FINGERPRINT, ABI_FINGERPRINT_SYMBOL};
use tempfile::TempDir;

use super::copy_cache::{self, CopyCache};
use super::{elf_check, permissions, version};
use crate::names;
use crate::phases::Phases;
use crate::sync::Unpoisoned;

/// A plugin library that passed every check.
pub struct LoadedPlugin {
    pub name: String,
    pub version: String,
    /// What identifies this build of the library: its GNU build id, or a SHA-256 of its
    /// content (see [`elf_check::ElfInfo`]); two builds of a version differ.
    pub build_id: Option<String>,
    /// The `plugin-api` version it was built against.
    pub api_version: String,
    /// Whether it was built against byte-identical ABI sources (layout check skipped).
    pub same_fingerprint: bool,
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
    pub reason: Refusal,
    /// The full diagnosis where there is more (abi_stable's layout report), for `--debug`.
    pub detail: Option<String>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", shown(&self.file), self.reason)
    }
}

/// A path as it may be printed: control characters escaped (a newline in a file name would
/// start a forged log line).
pub fn shown(path: &Path) -> String {
    crate::logging::escape(&path.display().to_string()).into_owned()
}

/// Why a plugin file (or the folder) was refused, in one line.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("cannot open plugins folder: {0}")]
    OpenFolder(std::io::Error),
    #[error("not a folder")]
    NotAFolder,
    #[error("cannot list plugins folder: {0}")]
    ListFolder(std::io::Error),
    #[error("cannot create a private folder for plugins: {0}")]
    PrivateFolder(std::io::Error),
    #[error(transparent)]
    Permissions(#[from] permissions::PermissionError),
    #[error("cannot read: {0}")]
    Unreadable(std::io::Error),
    #[error(transparent)]
    Elf(#[from] elf_check::ElfError),
    #[error("cannot copy to {}: {err}", .copy.display())]
    Copy { copy: PathBuf, err: std::io::Error },
    /// What the dynamic loader or abi_stable refused.
    #[error(transparent)]
    Library(#[from] LibraryRefusal),
    /// Boxed: the two versions are large, and an `Err` is best kept small.
    #[error(transparent)]
    Version(Box<version::VersionError>),
    #[error("not a brewblox-host plugin (its root module is \"{0}\")")]
    OtherRootModule(String),
    #[error(
        "built with panic = \"abort\"; a panic in it would take the host down. Build it with \
         the default panic = \"unwind\""
    )]
    PanicAbort,
    #[error("inconsistent plugin-api versions ({declared} and {header})")]
    InconsistentApi { declared: String, header: String },
    /// Boxed: the name's error is large, and an `Err` is best kept small.
    #[error(transparent)]
    Name(Box<names::InvalidName>),
    #[error("plugin name \"{name}\" is already used by {}; plugin names must be unique", shown(.first))]
    DuplicateName { name: String, first: PathBuf },
    /// The plugin's own error, as it gave it.
    #[error("plugin {name} failed to declare its arguments: {err}")]
    DeclareArgs { name: String, err: String },
    #[error("plugin {name} declared invalid arguments: {err}")]
    BadArgs {
        name: String,
        err: serde_json::Error,
    },
}

/// What opening a library refused, from abi_stable's errors (whose layout report runs to
/// thousands of lines: [`LoadError::detail`] keeps it).
#[derive(Debug, thiserror::Error)]
pub enum LibraryRefusal {
    /// The dynamic loader's words, last part.
    #[error("not a shared library ({0})")]
    NotShared(String),
    #[error("cannot load: {0}")]
    CannotLoad(String),
    #[error("{}", elf_check::NOT_A_PLUGIN)]
    NotAPlugin,
    #[error(
        "built against plugin-api {actual}, but this host loads plugin-api {expected}; \
         rebuild the plugin"
    )]
    OtherVersion { actual: String, expected: String },
    /// The gist of the layout report.
    #[error("incompatible plugin ABI: {0}; rebuild the plugin against this host's plugin-api")]
    Abi(String),
    #[error("built with an incompatible abi_stable or compiler ABI; rebuild the plugin")]
    CompilerAbi,
}

impl LoadError {
    fn new(file: &Path, reason: impl Into<Refusal>) -> Self {
        LoadError {
            file: file.to_owned(),
            reason: reason.into(),
            detail: None,
        }
    }
}

/// The names of the loading phases in [`Phases`], each summed over the plugins.
pub mod phase {
    /// Reading and checking the ELF headers, of the file and of its private copy.
    pub const ELF: &str = "ELF checks";
    /// Writing the private copies.
    pub const COPY: &str = "copies";
    /// The dynamic loader mapping and relocating the copy; the library's constructors.
    pub const DLOPEN: &str = "dlopen";
    /// Versions, root module and ABI fingerprint (or abi_stable's full layout check).
    pub const ABI: &str = "ABI check";
    /// The plugin's info and its declared arguments (its runtime starts later, at `create`).
    pub const DESCRIBE: &str = "info and arguments";
}

/// The loaded plugins. With `RUST_BACKTRACE=full` it also keeps the private folder, whose
/// whole copies let backtraces show plugin symbols; it is removed when the set is dropped.
pub struct LoadedSet {
    pub plugins: Vec<LoadedPlugin>,
    /// `*.so` entries that are not regular files, each with the reason: not loaded, and
    /// reported (the start log, `check`), never passed over in silence.
    pub skipped: Vec<Skipped>,
    /// Where the loading time went ([`phase`]).
    pub phases: Phases,
    /// What the cache of private copies gave, or why it was not used.
    pub cache: CacheReport,
    _private: Option<TempDir>,
}

/// What the cache of private copies did for one load.
#[derive(Debug, Default)]
pub struct CacheReport {
    /// Copies mapped from the cache.
    pub found: usize,
    /// New copies to be kept in the cache for the next start (once flushed to disk, on a
    /// thread of their own: [`CopyCache::keep_in_background`]).
    pub kept: usize,
    /// Why the cache folder asked for was not used (the copies were private, as without
    /// one): reported as a warning.
    pub unusable: Option<String>,
}

impl fmt::Display for CacheReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} copies from the cache, {} new ones kept",
            self.found, self.kept
        )
    }
}

/// How the private copies of one load are made.
struct Copying<'a> {
    /// Where copies that are not cached are written (each deleted once mapped).
    private_dir: &'a Path,
    /// Whole copies (`RUST_BACKTRACE=full`): never cached.
    whole: bool,
    cache: Option<&'a CopyCache>,
    /// The plugins folder, symlinks resolved: the files' paths in the cache's keys.
    resolved_dir: PathBuf,
    /// When the load began: what a file's last change is compared with.
    now: SystemTime,
}

/// What one loading thread took from and gave to the cache.
#[derive(Default)]
struct CacheUse {
    /// The entries found or reused ([`CopyCache::tidy`] keeps them, and those of `pending`).
    used: Vec<copy_cache::Key>,
    found: usize,
    /// New copies, mapped, to be stored as entries.
    pending: Vec<copy_cache::Pending>,
    /// Why a copy that was to be cached could not be.
    unusable: Option<String>,
}

impl CacheUse {
    fn merge(&mut self, other: CacheUse) {
        self.used.extend(other.used);
        self.found += other.found;
        self.pending.extend(other.pending);
        self.unusable = self.unusable.take().or(other.unusable);
    }
}

/// A `*.so` entry of the plugins folder that is no file to load.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub file: PathBuf,
    /// What it is instead: `a symlink loop`, `a dangling symlink`, `a FIFO`, …
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: not a regular file ({})",
            shown(&self.file),
            self.reason
        )
    }
}

/// Why `path` is no regular file to load, or `None` if it is one (through symlinks).
fn not_regular(path: &Path) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
            return Some("a symlink loop".into())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Some("a dangling symlink".into())
        }
        Err(err) => return Some(format!("cannot be read: {err}")),
    };
    let kind = meta.file_type();
    Some(
        if kind.is_file() {
            return None;
        } else if kind.is_dir() {
            "a folder"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a file"
        }
        .into(),
    )
}

/// Loads every `*.so` in `dir`, in file-name order, each file once.
///
/// `missing_ok`: a folder that does not exist means "no plugins" (the default folder),
/// instead of an error (a folder the user named). `cache_dir`: where private copies are
/// kept for the next start ([`copy_cache`]), if anywhere.
pub fn load_dir(
    dir: &Path,
    missing_ok: bool,
    cache_dir: Option<&Path>,
) -> Result<LoadedSet, Vec<LoadError>> {
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(err) if missing_ok && err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LoadedSet {
                plugins: Vec::new(),
                skipped: Vec::new(),
                phases: Phases::default(),
                cache: CacheReport::default(),
                _private: None,
            });
        }
        Err(err) => return Err(vec![LoadError::new(dir, Refusal::OpenFolder(err))]),
    };
    if !meta.is_dir() {
        return Err(vec![LoadError::new(dir, Refusal::NotAFolder)]);
    }
    permissions::check(dir, &meta).map_err(|reason| vec![LoadError::new(dir, reason)])?;

    let (files, skipped) = plugin_files(dir).map_err(|err| vec![err])?;
    let private = tempfile::Builder::new()
        .prefix("brewblox-host-")
        .tempdir()
        .map_err(|err| vec![LoadError::new(dir, Refusal::PrivateFolder(err))])?;

    let whole = whole_copies();
    let mut report = CacheReport::default();
    let cache = match cache_dir.filter(|_| !whole && !without_private_copies()) {
        Some(cache_dir) => CopyCache::open(cache_dir, dir)
            .map_err(|err| report.unusable = Some(cache_unusable(cache_dir, &err)))
            .ok(),
        None => None,
    };
    // Resolved only for the cache's keys: a start without one spends nothing on it.
    let resolved_dir = match &cache {
        Some(_) => fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned()),
        None => dir.to_owned(),
    };
    let copying = Copying {
        private_dir: private.path(),
        whole,
        cache: cache.as_ref(),
        resolved_dir,
        now: SystemTime::now(),
    };
    let (outcomes, phases, cache_use) = load_files(&files, &copying);
    report.found = cache_use.found;
    report.kept = cache_use.pending.len();
    if let Some(cache) = cache {
        if let Some(err) = cache_use.unusable {
            report.unusable = Some(cache_unusable(cache.dir(), &err));
        }
        cache.keep_in_background(cache_use.pending, cache_use.used);
    }
    let (plugins, errors) = unique_names(&files, outcomes);
    if errors.is_empty() {
        Ok(LoadedSet {
            plugins,
            skipped,
            phases,
            cache: report,
            // Without whole copies the folder is empty by now: remove it at once.
            _private: whole.then_some(private),
        })
    } else {
        Err(errors)
    }
}

/// The warning of a cache folder not used.
fn cache_unusable(cache_dir: &Path, err: &dyn fmt::Display) -> String {
    format!(
        "the cache of plugin copies {} is not used: {err}",
        shown(cache_dir)
    )
}

/// The plugins loaded, and the refusals: in file-name order, whichever thread loaded what,
/// the first file of a name keeps it.
fn unique_names(
    files: &[PathBuf],
    outcomes: Vec<Result<LoadedPlugin, LoadError>>,
) -> (Vec<LoadedPlugin>, Vec<LoadError>) {
    let mut plugins: Vec<LoadedPlugin> = Vec::new();
    let mut errors = Vec::new();
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    for (file, outcome) in files.iter().zip(outcomes) {
        match outcome {
            Ok(plugin) => match names.get(&plugin.name) {
                Some(first) => errors.push(LoadError::new(
                    file,
                    Refusal::DuplicateName {
                        name: plugin.name.clone(),
                        first: first.clone(),
                    },
                )),
                None => {
                    names.insert(plugin.name.clone(), file.clone());
                    plugins.push(plugin);
                }
            },
            Err(err) => errors.push(err),
        }
    }
    (plugins, errors)
}

/// Loads `files` on as many threads as there are cores (at most one per file), each thread
/// taking the next file not yet taken; the outcomes in the order of `files`, and the phases
/// summed over the threads.
///
/// The files are independent until their names are compared, and most of a file's loading
/// (its checks, its copy, its runtime starting) runs in parallel; only the dynamic loader's
/// own work is one library at a time, behind its lock. The plugins are created and started
/// later, one after the other in file-name order, as before.
fn load_files(
    files: &[PathBuf],
    copying: &Copying,
) -> (Vec<Result<LoadedPlugin, LoadError>>, Phases, CacheUse) {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(files.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let work = || {
        let mut phases = Phases::default();
        let mut cache_use = CacheUse::default();
        let mut outcomes = Vec::new();
        // Bounded by the number of files: each pass takes a new index.
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(file) = files.get(index) else {
                return (outcomes, phases, cache_use);
            };
            let outcome = load_file(file, copying, index, &mut phases, &mut cache_use);
            outcomes.push((index, outcome));
        }
    };
    let (mut outcomes, phases, cache_use) = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let (mut outcomes, mut phases, mut cache_use) = work();
        for helper in helpers {
            match helper.join() {
                Ok((theirs, their_phases, their_cache_use)) => {
                    outcomes.extend(theirs);
                    phases.merge(&their_phases);
                    cache_use.merge(their_cache_use);
                }
                // The loader's own code does not panic; a plugin's panic is caught in the
                // plugin. Anything else is passed on as it would be on one thread.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        (outcomes, phases, cache_use)
    });
    outcomes.sort_unstable_by_key(|(index, _)| *index);
    let outcomes = outcomes.into_iter().map(|(_, outcome)| outcome).collect();
    (outcomes, phases, cache_use)
}

/// The `.so` files of `dir`, sorted by name, symlinks to the same file counted once, and
/// the `.so` entries that are no regular file (with the reason).
fn plugin_files(dir: &Path) -> Result<(Vec<PathBuf>, Vec<Skipped>), LoadError> {
    let entries = fs::read_dir(dir).map_err(|err| LoadError::new(dir, Refusal::ListFolder(err)))?;
    let mut candidates: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "so"))
        .collect();
    candidates.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for path in candidates {
        match not_regular(&path) {
            None => files.push(path),
            Some(reason) => skipped.push(Skipped { file: path, reason }),
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|path| match fs::metadata(path) {
        Ok(meta) => seen.insert((meta.dev(), meta.ino())),
        Err(_) => true,
    });
    Ok((files, skipped))
}

fn load_file(
    file: &Path,
    copying: &Copying,
    index: usize,
    phases: &mut Phases,
    cache_use: &mut CacheUse,
) -> Result<LoadedPlugin, LoadError> {
    let meta = fs::metadata(file).map_err(|err| LoadError::new(file, Refusal::Unreadable(err)))?;
    permissions::check(file, &meta).map_err(|reason| LoadError::new(file, reason))?;
    let elf = phases
        .time(phase::ELF, || elf_check::check(file))
        .map_err(|reason| LoadError::new(file, reason))?;
    let cached = match (copying.cache, &elf.build_id, file.file_name()) {
        (Some(cache), Some(build_id), Some(name)) => {
            let path = copying.resolved_dir.join(name);
            CopyCache::key(&path, &meta, build_id, copying.now).map(|key| (cache, key))
        }
        _ => None,
    };
    if let Some(opened) = elf.build_id.as_deref().and_then(already_opened) {
        // Its entry, if it has one, is still this file's: not to be evicted.
        cache_use.used.extend(cached.map(|(_, key)| key));
        return phases.time(phase::DESCRIBE, || {
            describe_module(file, opened, elf.build_id)
        });
    }

    let opened = match cached {
        Some((cache, key)) => open_cached(file, copying, cache, key, index, phases, cache_use)?,
        None => open_new(file, copying, index, phases)?,
    };
    if let Some(id) = &elf.build_id {
        OPENED.locked().insert(id.clone(), opened.clone());
    }
    phases.time(phase::DESCRIBE, || {
        describe_module(file, opened, elf.build_id)
    })
}

/// Opens a library this process has not opened yet, from its private copy `NNN.so` in the
/// private folder (in a bench build asked to, where it lies: [`without_private_copies`]).
fn open_new(
    file: &Path,
    copying: &Copying,
    index: usize,
    phases: &mut Phases,
) -> Result<Opened, LoadError> {
    if without_private_copies() {
        return open_module(file, file, phases);
    }
    // The copy's name is ours: the original's may hold anything.
    let copy = copying.private_dir.join(format!("{index:03}.so"));
    let loaded = copy_and_open(file, &copy, copying.whole, phases);
    if !copying.whole {
        // Mapped or refused: either way the copy is no longer needed.
        let _ = fs::remove_file(&copy);
    }
    loaded.map(|(opened, _)| opened)
}

/// Opens a library this process has not opened yet through the cache: its entry for `key`
/// if there is a sound one, else a new copy, to be stored as that entry once it has loaded.
fn open_cached(
    file: &Path,
    copying: &Copying,
    cache: &CopyCache,
    key: copy_cache::Key,
    index: usize,
    phases: &mut Phases,
    cache_use: &mut CacheUse,
) -> Result<Opened, LoadError> {
    if let Some(entry) = phases.time(phase::COPY, || cache.find(&key)) {
        // A damaged entry, or one removed since it was found: copied anew below, replacing it.
        if phases
            .time(phase::ELF, || elf_check::check_loadable(&entry))
            .is_ok()
        {
            if let Ok(library) = dlopen(file, &entry, phases) {
                cache_use.found += 1;
                cache_use.used.push(key);
                return check_and_keep(file, library, phases);
            }
        }
    }
    let temporary = match cache.temporary(&key, index) {
        Ok(temporary) => temporary,
        Err(err) => {
            // The folder could not be made: copied privately, as without a cache.
            cache_use.unusable = Some(err.to_string());
            return open_new(file, copying, index, phases);
        }
    };
    let (opened, source) = match copy_and_open(file, &temporary, false, phases) {
        Ok(loaded) => loaded,
        // The name was another's (`create_new` refused it): copied privately instead.
        Err(LoadError {
            reason: Refusal::Copy { err, .. },
            ..
        }) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            return open_new(file, copying, index, phases);
        }
        Err(err) => {
            let _ = fs::remove_file(&temporary);
            return Err(err);
        }
    };
    // Mapped already: whatever becomes of the file now, the library stays.
    cache_use.pending.push(copy_cache::Pending {
        temporary,
        key,
        source,
    });
    Ok(opened)
}

/// Copies `file` to `copy`, checks the copy (the file may have changed since it was checked:
/// the copy is what is mapped) and opens it; also the metadata of what was copied, taken
/// after the copy.
fn copy_and_open(
    file: &Path,
    copy: &Path,
    whole: bool,
    phases: &mut Phases,
) -> Result<(Opened, fs::Metadata), LoadError> {
    let source = phases
        .time(phase::COPY, || private_copy(file, copy, whole))
        .map_err(|err| {
            let copy = copy.to_owned();
            LoadError::new(file, Refusal::Copy { copy, err })
        })?;
    phases
        .time(phase::ELF, || elf_check::check_loadable(copy))
        .map_err(|reason| LoadError::new(file, reason))?;
    Ok((open_module(file, copy, phases)?, source))
}

/// A library this process has opened. It stays mapped for the life of the process
/// (abi_stable never unloads), so opening the same build again would only map a second
/// copy: a reload of an unchanged plugin reuses it instead, and costs no memory.
#[derive(Clone)]
struct Opened {
    module: PluginModRef,
    plugin_api: String,
    same_fingerprint: bool,
}

/// Opened libraries by build id (a hash of the linked content, or of the mapped bytes).
static OPENED: std::sync::Mutex<std::collections::BTreeMap<String, Opened>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn already_opened(build_id: &str) -> Option<Opened> {
    OPENED.locked().get(build_id).cloned()
}

/// Opens the library (its constructors run here) and checks its versions and layout.
fn open_module(file: &Path, copy: &Path, phases: &mut Phases) -> Result<Opened, LoadError> {
    let library = dlopen(file, copy, phases)?;
    check_and_keep(file, library, phases)
}

/// Opens the library at `copy` (its constructors run here), a copy of `file`.
fn dlopen(file: &Path, copy: &Path, phases: &mut Phases) -> Result<RawLibrary, LoadError> {
    phases
        .time(phase::DLOPEN, || RawLibrary::load_at(copy))
        .map_err(|err| describe(file, err))
}

/// Checks an opened library's versions and layout, and keeps it open for good.
fn check_and_keep(
    file: &Path,
    library: RawLibrary,
    phases: &mut Phases,
) -> Result<Opened, LoadError> {
    let opened = phases.time(phase::ABI, || check_module(file, &library));
    // Kept open for good, refused or not: abi_stable never unloads a library (its header and
    // root module are `'static`), and a refused one's constructors have run already.
    std::mem::forget(library);
    opened
}

/// Checks an opened library's versions, root module and layout, and initialises its root
/// module.
fn check_module(file: &Path, library: &RawLibrary) -> Result<Opened, LoadError> {
    // SAFETY: the library stays loaded for the life of the process (`open_module`).
    let header =
        unsafe { lib_header_from_raw_library(library) }.map_err(|err| describe(file, err))?;
    // Our own semver check first: it gives the clearest message and catches what
    // abi_stable ignores (a plugin built against a newer patch than the host).
    let strings = header.version_strings();
    let plugin_api = strings.version.as_str();
    version::check(plugin_api, version::host_api_version())
        .map_err(|err| LoadError::new(file, Refusal::Version(Box::new(err))))?;
    if header.root_mod_consts().name().as_str() != PluginModRef::NAME {
        let name = header.root_mod_consts().name().as_str().to_owned();
        return Err(LoadError::new(file, Refusal::OtherRootModule(name)));
    }

    let same_fingerprint = same_abi_fingerprint(library);
    let module = if same_fingerprint {
        // SAFETY: the plugin was built against byte-identical ABI sources of the same
        // plugin-api version (see `plugin_abi::ABI_FINGERPRINT`), all `#[repr(C)]`
        // `StableAbi` types, and `lib_header_from_raw_library` checked abi_stable's own ABI
        // version: its layout is the host's. abi_stable's check would only confirm that, at
        // ~2 ms per plugin (most of the start-up time with many plugins).
        unsafe { header.init_root_module_with_unchecked_layout::<PluginModRef>() }
    } else {
        header.init_root_module::<PluginModRef>()
    }
    .map_err(|err| describe(file, err))?;
    Ok(Opened {
        module,
        plugin_api: plugin_api.to_owned(),
        same_fingerprint,
    })
}

/// Asks a loaded module who it is and what arguments it takes.
fn describe_module(
    file: &Path,
    opened: Opened,
    build_id: Option<String>,
) -> Result<LoadedPlugin, LoadError> {
    let Opened {
        module,
        plugin_api,
        same_fingerprint,
    } = opened;
    let info = module.info()();
    if !info.panic_unwind {
        return Err(LoadError::new(file, Refusal::PanicAbort));
    }
    if info.api_version.as_str() != plugin_api {
        return Err(LoadError::new(
            file,
            Refusal::InconsistentApi {
                declared: info.api_version.to_string(),
                header: plugin_api,
            },
        ));
    }
    let name = info.name.to_string();
    names::identifier("plugin name", &name)
        .map_err(|err| LoadError::new(file, Refusal::Name(Box::new(err))))?;
    let args_json = module.declare_args()().into_result().map_err(|err| {
        let (name, err) = (name.clone(), err.to_string());
        LoadError::new(file, Refusal::DeclareArgs { name, err })
    })?;
    let args: Vec<Arg> = serde_json::from_str(&args_json).map_err(|err| {
        let name = name.clone();
        LoadError::new(file, Refusal::BadArgs { name, err })
    })?;
    Ok(LoadedPlugin {
        name,
        version: info.version.to_string(),
        build_id,
        api_version: plugin_api,
        same_fingerprint,
        file: file.to_owned(),
        module,
        args,
    })
}

/// Whether the library exports the host's own ABI fingerprint.
fn same_abi_fingerprint(library: &RawLibrary) -> bool {
    // SAFETY: the symbol's address is that of a `[u8; 32]` static (`export_plugin!`), read
    // once here; the library stays loaded (abi_stable never unloads it).
    let exported = unsafe { library.get::<*const [u8; 32]>(ABI_FINGERPRINT_SYMBOL) };
    exported.is_ok_and(|symbol| unsafe { symbol.read() } == ABI_FINGERPRINT)
}

/// Whether the libraries are opened where they lie, without private copies: only in a
/// bench build (`bench-native`) with `BREWBLOX_BENCH_NO_PRIVATE_COPIES=1`, so that the
/// start-up row can show what the copies cost. A deployed host always copies: a plugin file
/// replaced or truncated in place while it is mapped would crash the process.
fn without_private_copies() -> bool {
    cfg!(feature = "bench-native")
        && std::env::var_os("BREWBLOX_BENCH_NO_PRIVATE_COPIES").is_some_and(|v| v == "1")
}

/// Whether private copies keep everything (debug info for symbolised backtraces): with
/// `RUST_BACKTRACE=full` only, since many environments set `RUST_BACKTRACE=1` for good.
fn whole_copies() -> bool {
    std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v == "full")
}

/// Copies `file` to `copy`: for an ELF file, only the part the dynamic loader maps
/// ([`elf_check::mapped_end`]), with the section header table (which lies past it) dropped
/// from the header; anything else whole, so that `dlopen` reports on it exactly as on the
/// original. `copy` must not exist yet. Returns the metadata of the file copied, of the open
/// descriptor (whatever the path names by now) after the copy (a write meanwhile shows).
fn private_copy(file: &Path, copy: &Path, whole: bool) -> std::io::Result<fs::Metadata> {
    use std::io::{Read, Seek, SeekFrom, Write};

    let mut source = fs::File::open(file)?;
    let size = source.metadata()?.len();
    let create = || fs::File::options().write(true).create_new(true).open(copy);
    let end = if whole {
        None
    } else {
        elf_check::mapped_end(file)
    };
    let Some(end) = end.filter(|end| *end < size) else {
        std::io::copy(&mut source, &mut create()?)?;
        return source.metadata();
    };
    let mut target = create()?;
    let copied = std::io::copy(&mut (&mut source).take(end), &mut target)?;
    if copied != end {
        return Err(std::io::Error::other(
            "the file changed while it was copied",
        ));
    }
    // e_shoff = 0, e_shnum = 0, e_shstrndx = 0 (SHN_UNDEF): "no section headers".
    target.seek(SeekFrom::Start(0x28))?;
    target.write_all(&0u64.to_le_bytes())?;
    target.seek(SeekFrom::Start(0x3C))?;
    target.write_all(&[0; 4])?;
    source.metadata()
}

/// Turns abi_stable's errors (the layout report runs to thousands of lines) into one line.
fn describe(file: &Path, err: LibraryError) -> LoadError {
    let reason = match &err {
        LibraryError::OpenError { err, .. } => {
            // The dynamic loader says what is wrong in words only (dlerror).
            let text = err.to_string();
            if text.contains("invalid ELF header") || text.contains("file too short") {
                LibraryRefusal::NotShared(last_part(&text).to_owned())
            } else {
                LibraryRefusal::CannotLoad(last_part(&text).to_owned())
            }
        }
        LibraryError::GetSymbolError { .. } => LibraryRefusal::NotAPlugin,
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => LibraryRefusal::OtherVersion {
            actual: actual_version.to_string(),
            expected: expected_version.to_string(),
        },
        LibraryError::AbiInstability(report) => LibraryRefusal::Abi(summarize(&report.to_string())),
        LibraryError::InvalidAbiHeader(_) | LibraryError::InvalidCAbi { .. } => {
            LibraryRefusal::CompilerAbi
        }
        other => LibraryRefusal::CannotLoad(summarize(&other.to_string())),
    };
    LoadError {
        file: file.to_owned(),
        reason: reason.into(),
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
    fn private_copies_hold_what_is_loaded_and_leave_other_files_whole() {
        let dir = tempfile::tempdir().unwrap();
        // This test binary is an ELF file like any plugin.
        let exe = std::env::current_exe().unwrap();
        let size = std::fs::metadata(&exe).unwrap().len();
        let copy = dir.path().join("copy");
        super::private_copy(&exe, &copy, false).unwrap();
        let copied = std::fs::read(&copy).unwrap();
        assert!(copied.len() as u64 <= size);
        assert_eq!(&copied[..4], b"\x7fELF");
        let original = std::fs::read(&exe).unwrap();
        assert_eq!(
            copied[0x40..],
            original[0x40..copied.len()],
            "loaded bytes unchanged"
        );

        let whole = dir.path().join("whole");
        super::private_copy(&exe, &whole, true).unwrap();
        assert_eq!(std::fs::metadata(&whole).unwrap().len(), size);

        let text = dir.path().join("text.so");
        std::fs::write(&text, "not a library").unwrap();
        let text_copy = dir.path().join("text-copy");
        super::private_copy(&text, &text_copy, false).unwrap();
        assert_eq!(std::fs::read(&text_copy).unwrap(), b"not a library");
    }

    #[test]
    fn outcomes_come_in_file_order_whichever_thread_loaded_them() {
        let dir = tempfile::tempdir().unwrap();
        let private = tempfile::tempdir().unwrap();
        // Not libraries: each is refused at its ELF check, with its own file named.
        let files: Vec<std::path::PathBuf> = (0..9)
            .map(|i| {
                let file = dir.path().join(format!("{i}.so"));
                std::fs::write(&file, "x".repeat(100 + i)).unwrap();
                file
            })
            .collect();
        let copying = super::Copying {
            private_dir: private.path(),
            whole: false,
            cache: None,
            resolved_dir: dir.path().to_owned(),
            now: std::time::SystemTime::now(),
        };
        let (outcomes, phases, _) = super::load_files(&files, &copying);
        let refused: Vec<_> = outcomes
            .into_iter()
            .map(|outcome| outcome.err().expect("refused").file)
            .collect();
        assert_eq!(refused, files);
        assert!(phases.to_string().starts_with("ELF checks "), "{phases}");
    }

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
