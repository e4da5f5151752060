//! Private copies kept for the next start: a host restarted with unchanged plugins maps the
//! copies an earlier start wrote, instead of writing 50 new ones (most of the start-up time
//! of a host with many plugins goes into filling new page-cache pages with copies).
//!
//! A private copy exists so that nothing done to the plugins folder reaches a mapped library
//! ([`super::loader`]). A cached copy keeps that promise as long as nobody writes to it, and
//! it answers for exactly one state of one file:
//!
//! - **Who may write.** The folder belongs to the user running the host and nobody else may
//!   enter it (mode `0700`, not a symlink), and no folder above it may be changed by anyone
//!   but root and that user unless it is sticky (`/tmp`), as sshd checks a user's files; it is
//!   checked at each start, and a folder that fails is not used (the start copies as before
//!   and says why). An entry is mapped only if it is a regular file of that user that nobody
//!   else may write. Entries are written under a new temporary name, checked and mapped;
//!   then, on a thread of their own, flushed to disk and renamed into place read-only: no
//!   entry is ever written in place, so a host that maps one is never hurt by another host
//!   writing, replacing or deleting it.
//! - **Which file it stands for.** An entry's name is a digest of the file's path (its folder
//!   resolved) and of what changes whenever its content can have: device, inode, size,
//!   modification and change times (nanoseconds) and its build id. `cp` over the file, `mv`
//!   onto it, `touch`, a `chmod` all change one of them.
//! - **A file changed within the clock's resolution.** A file whose change time is less than
//!   [`SETTLE`] old is copied privately, not cached: a write in the same clock tick as the
//!   copy would leave its change time as it was, and the cached copy would stand for content
//!   it does not hold (git's "racily clean" entries). The copy is also made from the very
//!   file that was looked at (its open descriptor's metadata, after the copy, must match),
//!   so a symlink retargeted meanwhile or a write during the copy stores nothing.
//! - **Eviction.** Each start removes the entries of older versions of the files it loaded
//!   (older than the entry it used or stored); beyond [`MAX_ENTRIES`] the least recently used
//!   go. Removing an entry never hurts a
//!   host that maps it (the mapping keeps the inode). Temporary files a killed host left are
//!   removed after [`STALE_TEMPORARY`]. Only names of the cache's own patterns are touched:
//!   a folder named by mistake loses none of its other files.

use std::{
    fs::{self, File, Metadata},
    io,
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use super::elf_check::hex;
use crate::sync::Unpoisoned;

/// How old a file's last change must be before its copy is cached.
pub const SETTLE: Duration = Duration::from_secs(2);
/// How many entries the folder keeps (more if one start uses more).
pub const MAX_ENTRIES: usize = 256;
/// How old a temporary file must be before it counts as left behind by a killed host.
pub const STALE_TEMPORARY: Duration = Duration::from_secs(600);
/// Bumped whenever what a private copy holds changes, so that no start maps an entry an older
/// host wrote differently.
const FORMAT: &str = "brewblox-host copy 1";
/// Hex digits of an entry name's two digests (of the path, of the file's state).
const PATH_DIGITS: usize = 16;
const STATE_DIGITS: usize = 32;

/// Where the cache lies when the command line does not say: the user's runtime folder
/// (`$XDG_RUNTIME_DIR`, a tmpfs of the user's own) if there is one, else
/// `brewblox-host-UID` in the temporary folder.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|dir| Path::new(dir).is_absolute()) {
        Some(runtime) => Path::new(&runtime).join("brewblox-host"),
        None => std::env::temp_dir().join(format!("brewblox-host-{}", effective_uid())),
    }
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Why the cache folder is not used.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error("no folder is named (`off` turns the cache off)")]
    Empty,
    #[error("cannot create it: {0}")]
    Create(io::Error),
    #[error("cannot read it: {0}")]
    Read(io::Error),
    #[error("it is not a folder (a symlink is not followed)")]
    NotAFolder,
    #[error("it is the plugins folder")]
    PluginsFolder,
    #[error("it is owned by uid {owner}, not by the user running the host (uid {me})")]
    Owner { owner: u32, me: u32 },
    #[error("other users may enter it (mode {0:03o}); fix with: chmod 700 on it")]
    Open(u32),
    #[error(
        "{} above it may be changed by other users (owner uid {owner}, mode {mode:03o}, not \
         sticky), who could put another folder in its place",
        .folder.display()
    )]
    Ancestor {
        folder: PathBuf,
        owner: u32,
        mode: u32,
    },
}

/// The cache folder, checked.
#[derive(Debug, Clone)]
pub struct CopyCache {
    dir: PathBuf,
}

/// One state of one plugin file: the name its copy has in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// `<path digest>-<state digest>.so`.
    name: String,
    /// The metadata the key was made from, to compare with the copied descriptor's.
    identity: Identity,
}

/// A new copy, written and mapped, to be stored as `key`'s entry.
#[derive(Debug)]
pub struct Pending {
    pub temporary: PathBuf,
    pub key: Key,
    /// The metadata of the file it was copied from, taken after the copy.
    pub source: Metadata,
}

/// What must not change between looking at a file and copying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    fn of(meta: &Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The last change, content or metadata (the later of the two times), if representable.
    fn changed(&self) -> Option<SystemTime> {
        let at = |(secs, nanos): (i64, i64)| {
            let since = Duration::new(u64::try_from(secs).ok()?, u32::try_from(nanos).ok()?);
            SystemTime::UNIX_EPOCH.checked_add(since)
        };
        Some(at(self.mtime)?.max(at(self.ctime)?))
    }

    /// Every field, written out: the part of an entry's name that stands for this state.
    fn text(&self) -> String {
        let Identity {
            dev,
            ino,
            size,
            mtime: (mtime, mtime_ns),
            ctime: (ctime, ctime_ns),
        } = self;
        format!("{dev} {ino} {size} {mtime}.{mtime_ns} {ctime}.{ctime_ns}")
    }
}

impl CopyCache {
    /// The cache folder at `dir`, checked if it exists; a missing one is created (mode
    /// `0700`) by the first [`CopyCache::temporary`], so that a host with nothing to cache
    /// leaves nothing behind. `plugins`: the plugins folder, which must not be the cache.
    pub fn open(dir: &Path, plugins: &Path) -> Result<CopyCache, Unusable> {
        if dir.as_os_str().is_empty() {
            return Err(Unusable::Empty);
        }
        // Without a trailing `/`, which would make the last symlink followed.
        let dir: PathBuf = dir.components().collect();
        // `cache` alone lies in the working folder.
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
        check_ancestors(parent.unwrap_or(Path::new(".")))?;
        match fs::symlink_metadata(&dir) {
            Ok(meta) => {
                check_folder(&meta)?;
                let same = fs::metadata(plugins)
                    .is_ok_and(|p| (p.dev(), p.ino()) == (meta.dev(), meta.ino()));
                if same {
                    return Err(Unusable::PluginsFolder);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(Unusable::Read(err)),
        }
        Ok(CopyCache { dir })
    }

    /// Creates the folder if it is missing, and checks it again if someone else did.
    fn create(&self) -> Result<(), Unusable> {
        match fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                check_folder(&fs::symlink_metadata(&self.dir).map_err(Unusable::Read)?)
            }
            Err(err) => Err(Unusable::Create(err)),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of the file at `path` (its folder resolved by the caller, so that the same
    /// file reached by two spellings has one name) as `meta` (its metadata, through symlinks)
    /// describes it, or `None` if it changed too recently to be cached ([`SETTLE`]).
    pub fn key(path: &Path, meta: &Metadata, build_id: &str, now: SystemTime) -> Option<Key> {
        let identity = Identity::of(meta);
        // A change time in the future (a clock set back) is never settled.
        if now.duration_since(identity.changed()?).ok()? < SETTLE {
            return None;
        }
        let path_digest = hex_digest(&[path.as_os_str().as_encoded_bytes()], PATH_DIGITS);
        let text = identity.text();
        let state = [FORMAT, &text, build_id].map(str::as_bytes);
        let state_digest = hex_digest(&state, STATE_DIGITS);
        Some(Key {
            name: format!("{path_digest}-{state_digest}.so"),
            identity,
        })
    }

    /// The entry of `key` if there is a sound one (a regular file of this user that nobody
    /// else may write), marked as just used (the least recently used are evicted first).
    pub fn find(&self, key: &Key) -> Option<PathBuf> {
        let entry = self.dir.join(&key.name);
        // Neither a symlink followed nor a FIFO waited for.
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&entry)
            .ok()?;
        let meta = file.metadata().ok()?;
        let sound = meta.is_file() && meta.uid() == effective_uid() && meta.mode() & 0o022 == 0;
        if !sound {
            return None;
        }
        // Marked through the descriptor: the entry may be replaced by an identical one at any
        // moment, and either is as good. A failed mark only makes it evicted sooner.
        let _ = file.set_modified(SystemTime::now());
        Some(entry)
    }

    /// Where the copy of `key` is to be written (with `create_new`) before
    /// [`CopyCache::store`]: a name of its own in the folder, created if need be.
    pub fn temporary(&self, key: &Key, index: usize) -> Result<PathBuf, Unusable> {
        self.create()?;
        // The pid and index tell this process's names apart, the random part those of hosts
        // in other pid namespaces (the clock's nanoseconds if the system has no randomness);
        // and `create_new` refuses a name taken all the same.
        let mut random = [0u8; 8];
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random).is_err() {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            random = (nanos as u64).to_le_bytes();
        }
        let random = hex(&random);
        let pid = std::process::id();
        let name = format!(".{}.{pid}-{index}-{random}.tmp", key.name);
        Ok(self.dir.join(name))
    }

    /// Flushes the finished copy `temporary` to disk and renames it to `key`'s entry,
    /// read-only, if `source` (the metadata of the descriptor the copy was read from, taken
    /// after the copy) is the state `key` was made from; otherwise removes it. `Ok(false)`:
    /// not stored.
    pub fn store(&self, temporary: &Path, key: &Key, source: &Metadata) -> io::Result<bool> {
        if Identity::of(source) != key.identity {
            fs::remove_file(temporary)?;
            return Ok(false);
        }
        // A power cut must not leave a complete-looking entry whose pages never reached the
        // disk: every later start would map it.
        let stored = File::open(temporary)
            .and_then(|file| file.sync_all())
            .and_then(|()| fs::set_permissions(temporary, fs::Permissions::from_mode(0o400)))
            .and_then(|()| fs::rename(temporary, self.dir.join(&key.name)));
        if let Err(err) = stored {
            let _ = fs::remove_file(temporary);
            return Err(err);
        }
        Ok(true)
    }

    /// Stores `pending` ([`CopyCache::store`]) and tidies the folder, keeping `used` and
    /// the entries of `pending` ([`CopyCache::tidy`]), on a thread of its own: flushing 50 copies to disk takes
    /// longer than the start itself, and nothing needs to wait for it (each copy is mapped
    /// already). A host that exits first leaves temporary files, which a later start
    /// removes.
    pub fn keep_in_background(self, pending: Vec<Pending>, mut used: Vec<Key>) {
        // Counted until the thread ends, or until the closure is dropped unstarted.
        let running = KEEPING.begin();
        let keep = move || {
            let _running = running;
            for Pending {
                temporary,
                key,
                source,
            } in pending
            {
                if let Err(err) = self.store(&temporary, &key, &source) {
                    let dir = super::loader::shown(&self.dir);
                    tracing::warn!("Cannot keep a plugin copy in {dir}: {err}");
                }
                used.push(key);
            }
            self.tidy(&used);
        };
        // Without a thread (no resources left), the copies are not kept: a later start
        // removes the temporary files and keeps its own.
        if let Err(err) = std::thread::Builder::new()
            .name("plugin-cache".into())
            .spawn(keep)
        {
            tracing::warn!("Cannot keep the plugin copies: {err}");
        }
    }

    /// Removes temporary files left behind, older versions of the files of `used` (the keys
    /// this start used), and the least recently used entries beyond [`MAX_ENTRIES`]. Entries
    /// in `used` stay, and so does every name that is not the cache's own. Errors are
    /// ignored: another host may be tidying at the same time.
    pub fn tidy(&self, used: &[Key]) {
        let Ok(listing) = fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        let in_use = |name: &str| used.iter().any(|key| key.name == name);
        let age = |path: &Path| {
            let modified = fs::symlink_metadata(path).and_then(|meta| meta.modified());
            modified.map_or(Duration::ZERO, |at| {
                now.duration_since(at).unwrap_or_default()
            })
        };
        // Another version of a file this start used, and older than the one it used (a newer
        // one is another host's, or a later reload's, whose file changed since).
        let superseded = |name: &str, path: &Path| {
            used.iter().any(|key| {
                key.name[..PATH_DIGITS] == name[..PATH_DIGITS]
                    && age(path) > age(&self.dir.join(&key.name))
            })
        };
        let mut kept: Vec<PathBuf> = Vec::new();
        // Bounded by the folder's entries.
        for entry in listing.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if is_temporary_name(name) {
                if age(&path) > STALE_TEMPORARY {
                    let _ = fs::remove_file(&path);
                }
            } else if !is_entry_name(name) || in_use(name) {
                continue;
            } else if superseded(name, &path) {
                let _ = fs::remove_file(&path);
            } else {
                kept.push(path);
            }
        }
        let room = MAX_ENTRIES.saturating_sub(used.len());
        if kept.len() > room {
            // Read only when there are too many: a start usually reads no entry's metadata.
            let mut aged: Vec<(Duration, PathBuf)> =
                kept.into_iter().map(|path| (age(&path), path)).collect();
            aged.sort_unstable_by_key(|(age, _)| *age);
            for (_, path) in &aged[room..] {
                let _ = fs::remove_file(path);
            }
        }
    }
}

/// The threads still storing copies ([`CopyCache::keep_in_background`]).
static KEEPING: Keeping = Keeping {
    running: std::sync::Mutex::new(0),
    finished: std::sync::Condvar::new(),
};

struct Keeping {
    running: std::sync::Mutex<usize>,
    finished: std::sync::Condvar,
}

impl Keeping {
    /// Counts one more thread until the guard is dropped.
    fn begin(&'static self) -> KeepingGuard {
        *self.running.locked() += 1;
        KeepingGuard(self)
    }
}

struct KeepingGuard(&'static Keeping);

impl Drop for KeepingGuard {
    fn drop(&mut self) {
        let mut running = self.0.running.locked();
        *running = running.saturating_sub(1);
        self.0.finished.notify_all();
    }
}

/// Waits, at most `bound`, until every copy being kept is stored: a host stopped right after
/// its start still leaves its copies for the next one. Called as the process ends.
pub fn finish_keeping(bound: Duration) {
    let running = KEEPING.running.locked();
    let _ = KEEPING
        .finished
        .wait_timeout_while(running, bound, |running| *running > 0);
}

/// Checks the cache folder: a real folder of the user running the host, that nobody else
/// may enter.
fn check_folder(meta: &Metadata) -> Result<(), Unusable> {
    if !meta.is_dir() {
        return Err(Unusable::NotAFolder);
    }
    let me = effective_uid();
    if meta.uid() != me {
        return Err(Unusable::Owner {
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Unusable::Open(mode));
    }
    Ok(())
}

/// Checks that nobody but root and this user can rename or replace anything in the folders
/// from `parent` up to `/`, both as written (a symlink on the way lies in a folder that must
/// be safe too) and with symlinks resolved: each is theirs, or sticky, or closed to writing
/// by others.
fn check_ancestors(parent: &Path) -> Result<(), Unusable> {
    let written = std::path::absolute(parent).map_err(Unusable::Read)?;
    let resolved = fs::canonicalize(parent).map_err(Unusable::Read)?;
    let me = effective_uid();
    // Bounded by the paths' components.
    for folder in written.ancestors().chain(resolved.ancestors()) {
        let meta = fs::metadata(folder).map_err(Unusable::Read)?;
        let (owner, mode) = (meta.uid(), meta.mode());
        let sticky = mode & libc::S_ISVTX != 0;
        let foreign_owner = owner != 0 && owner != me;
        if foreign_owner || (mode & 0o022 != 0 && !sticky) {
            return Err(Unusable::Ancestor {
                folder: folder.to_owned(),
                owner,
                mode: mode & 0o7777,
            });
        }
    }
    Ok(())
}

/// Whether `name` is an entry's: `<16 hex>-<32 hex>.so`.
fn is_entry_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".so") else {
        return false;
    };
    let Some((path, state)) = stem.split_once('-') else {
        return false;
    };
    let hex = |part: &str, len: usize| {
        part.len() == len && part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    hex(path, PATH_DIGITS) && hex(state, STATE_DIGITS)
}

/// Whether `name` is a temporary file's: `.<entry name>.<anything>.tmp`.
fn is_temporary_name(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|rest| rest.strip_suffix(".tmp"))
        .and_then(|rest| rest.split_once(".so."))
        .is_some_and(|(stem, _)| is_entry_name(&format!("{stem}.so")))
}

/// The first `digits` hex digits of the SHA-256 of `parts` (each length-prefixed).
fn hex_digest(parts: &[&[u8]], digits: usize) -> String {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        digest.update(&(part.len() as u64).to_le_bytes());
        digest.update(part);
    }
    hex(&digest.finish().as_ref()[..digits / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled_file(dir: &Path, name: &str) -> (PathBuf, Metadata) {
        let path = dir.join(name);
        fs::write(&path, b"library").unwrap();
        let meta = fs::metadata(&path).unwrap();
        (path, meta)
    }

    /// A time well after `meta`'s changes.
    fn later(meta: &Metadata) -> SystemTime {
        SystemTime::now().max(meta.modified().unwrap()) + SETTLE * 3
    }

    fn set_modified(path: &Path, at: SystemTime) {
        let file = fs::File::options().write(true).open(path).unwrap();
        file.set_modified(at).unwrap();
    }

    /// A cache in a fresh folder, created, and a settled key in it.
    fn cache_with_key(dir: &Path) -> (CopyCache, Key) {
        let cache = CopyCache::open(&dir.join("cache"), dir).unwrap();
        let (a, meta) = settled_file(dir, "a.so");
        let key = CopyCache::key(&a, &meta, "id", later(&meta)).unwrap();
        cache.create().unwrap();
        (cache, key)
    }

    #[test]
    fn a_file_changed_within_the_settle_time_has_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let (path, meta) = settled_file(dir.path(), "a.so");
        let changed = SystemTime::now();
        assert_eq!(
            CopyCache::key(&path, &meta, "id", changed + SETTLE / 2),
            None
        );
        assert!(CopyCache::key(&path, &meta, "id", changed + SETTLE * 2).is_some());

        // Its modification time set back (`touch -d`, `cp -p`): the change time still counts.
        set_modified(&path, SystemTime::now() - SETTLE * 100);
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(
            CopyCache::key(&path, &meta, "id", changed + SETTLE / 2),
            None
        );
    }

    #[test]
    fn a_key_names_one_state_of_one_path() {
        let dir = tempfile::tempdir().unwrap();
        let (a, meta) = settled_file(dir.path(), "a.so");
        let now = later(&meta);
        let key = CopyCache::key(&a, &meta, "id", now).unwrap();
        assert!(is_entry_name(&key.name), "{}", key.name);
        assert_eq!(CopyCache::key(&a, &meta, "id", now), Some(key.clone()));
        let other_build = CopyCache::key(&a, &meta, "other", now).unwrap();
        assert_ne!(other_build.name, key.name);
        assert_eq!(other_build.name[..PATH_DIGITS], key.name[..PATH_DIGITS]);
        let b = dir.path().join("b.so");
        let other_path = CopyCache::key(&b, &meta, "id", now).unwrap();
        assert_ne!(other_path.name[..PATH_DIGITS], key.name[..PATH_DIGITS]);

        fs::write(&a, b"library, rewritten").unwrap();
        let changed = fs::metadata(&a).unwrap();
        let rewritten = CopyCache::key(&a, &changed, "id", later(&changed)).unwrap();
        assert_ne!(rewritten.name, key.name);
    }

    #[test]
    fn a_folder_others_may_enter_or_a_symlink_or_the_plugins_folder_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        fs::create_dir(&plugins).unwrap();
        let cache = dir.path().join("cache");
        let opened = CopyCache::open(&cache, &plugins).unwrap();
        assert!(
            !cache.exists(),
            "created only when something is to be stored"
        );
        let (a, meta) = settled_file(dir.path(), "a.so");
        let key = CopyCache::key(&a, &meta, "id", later(&meta)).unwrap();
        let temporary = opened.temporary(&key, 0).unwrap();
        assert!(is_temporary_name(
            temporary.file_name().unwrap().to_str().unwrap()
        ));
        let mode = fs::metadata(&cache).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);

        fs::set_permissions(&cache, fs::Permissions::from_mode(0o755)).unwrap();
        let err = CopyCache::open(&cache, &plugins).unwrap_err().to_string();
        assert!(err.contains("mode 755"), "{err}");

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&cache, &link).unwrap();
        let err = CopyCache::open(&link, &plugins).unwrap_err().to_string();
        assert!(err.contains("not a folder"), "{err}");
        let with_slash = PathBuf::from(format!("{}/", link.display()));
        assert!(matches!(
            CopyCache::open(&with_slash, &plugins),
            Err(Unusable::NotAFolder)
        ));

        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        assert!(matches!(
            CopyCache::open(&file, &plugins),
            Err(Unusable::NotAFolder)
        ));
        assert!(matches!(
            CopyCache::open(Path::new(""), &plugins),
            Err(Unusable::Empty)
        ));

        fs::set_permissions(&plugins, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(
            CopyCache::open(&plugins, &plugins),
            Err(Unusable::PluginsFolder)
        ));
    }

    #[test]
    fn a_folder_under_one_others_may_change_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let err = CopyCache::open(&open.join("cache"), dir.path()).unwrap_err();
        assert!(
            matches!(&err, Unusable::Ancestor { folder, .. } if folder.ends_with("open")),
            "{err}"
        );
        // Sticky, as /tmp is: others cannot rename what is not theirs.
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        CopyCache::open(&open.join("cache"), dir.path()).unwrap();
    }

    #[test]
    fn a_copy_is_stored_only_from_the_state_its_key_names() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, key) = cache_with_key(dir.path());
        let meta = fs::metadata(dir.path().join("a.so")).unwrap();
        assert_eq!(cache.find(&key), None);

        let temporary = cache.temporary(&key, 0).unwrap();
        fs::write(&temporary, b"copy").unwrap();
        assert!(cache.store(&temporary, &key, &meta).unwrap());
        let entry = cache.find(&key).unwrap();
        assert_eq!(fs::read(&entry).unwrap(), b"copy");
        assert_eq!(fs::metadata(&entry).unwrap().mode() & 0o777, 0o400);
        assert!(!temporary.exists());

        // Copied from another file (a retargeted symlink) or changed during the copy: removed,
        // not stored.
        let (_, other) = settled_file(dir.path(), "b.so");
        let temporary = cache.temporary(&key, 1).unwrap();
        fs::write(&temporary, b"other copy").unwrap();
        assert!(!cache.store(&temporary, &key, &other).unwrap());
        assert!(!temporary.exists());
        assert_eq!(fs::read(&entry).unwrap(), b"copy");
    }

    #[test]
    fn copies_kept_in_the_background_are_stored_once_keeping_has_finished() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, key) = cache_with_key(dir.path());
        let source = fs::metadata(dir.path().join("a.so")).unwrap();
        let temporary = cache.temporary(&key, 0).unwrap();
        fs::write(&temporary, b"copy").unwrap();
        let pending = vec![Pending {
            temporary: temporary.clone(),
            key: key.clone(),
            source,
        }];
        cache.clone().keep_in_background(pending, vec![key.clone()]);
        finish_keeping(Duration::from_secs(10));
        assert!(!temporary.exists());
        assert_eq!(fs::read(cache.find(&key).unwrap()).unwrap(), b"copy");
    }

    #[test]
    fn finding_an_entry_marks_it_used_and_refuses_one_others_may_write() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, key) = cache_with_key(dir.path());
        let entry = cache.dir().join(&key.name);
        fs::write(&entry, b"copy").unwrap();
        let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        set_modified(&entry, long_ago);
        let before = SystemTime::now() - Duration::from_secs(1);
        assert_eq!(cache.find(&key), Some(entry.clone()));
        assert!(fs::metadata(&entry).unwrap().modified().unwrap() > before);

        fs::set_permissions(&entry, fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(cache.find(&key), None, "writable by others");
        fs::remove_file(&entry).unwrap();
        std::os::unix::fs::symlink(dir.path().join("a.so"), &entry).unwrap();
        assert_eq!(cache.find(&key), None, "a symlink");
    }

    #[test]
    fn tidying_removes_older_versions_the_least_used_and_stale_temporaries_only() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, new) = cache_with_key(dir.path());
        let meta = fs::metadata(dir.path().join("a.so")).unwrap();
        let a = dir.path().join("a.so");
        let old = CopyCache::key(&a, &meta, "v1", later(&meta)).unwrap();
        let newer = CopyCache::key(&a, &meta, "v3", later(&meta)).unwrap();
        let entry = |key: &Key| cache.dir().join(&key.name);
        fs::write(entry(&old), b"v1").unwrap();
        fs::write(entry(&new), b"v2").unwrap();
        fs::write(entry(&newer), b"v3").unwrap();
        set_modified(&entry(&old), SystemTime::now() - Duration::from_secs(60));
        set_modified(&entry(&newer), SystemTime::now() + Duration::from_secs(60));
        // Other files' entries, the oldest first.
        let others: Vec<PathBuf> = (0..MAX_ENTRIES + 2)
            .map(|i| {
                let (path, meta) = settled_file(dir.path(), &format!("p{i}.so"));
                let key = CopyCache::key(&path, &meta, "id", later(&meta)).unwrap();
                fs::write(entry(&key), b"x").unwrap();
                let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + i as u64);
                set_modified(&entry(&key), at);
                entry(&key)
            })
            .collect();
        let stale = cache.dir().join(format!(".{}.1-0-ab.tmp", old.name));
        let fresh = cache.dir().join(format!(".{}.2-0-cd.tmp", old.name));
        let long_ago = SystemTime::now() - STALE_TEMPORARY * 2;
        // Not the cache's own names: never touched, however old.
        let foreign: Vec<PathBuf> = ["notes.txt", "libother.so", ".hidden.tmp", "a-b.so"]
            .iter()
            .map(|name| cache.dir().join(name))
            .collect();
        for path in foreign.iter().chain([&stale, &fresh]) {
            fs::write(path, b"").unwrap();
        }
        for path in foreign.iter().chain([&stale]) {
            set_modified(path, long_ago);
        }

        cache.tidy(std::slice::from_ref(&new));
        assert!(entry(&new).exists(), "the entry in use stays");
        assert!(
            !entry(&old).exists(),
            "the older version of the same file goes"
        );
        assert!(entry(&newer).exists(), "a newer one is another host's");
        assert!(!stale.exists() && fresh.exists());
        assert!(foreign.iter().all(|path| path.exists()));
        // One slot is the entry in use, one the newer version: the four oldest others go.
        assert!(others[..4].iter().all(|path| !path.exists()));
        assert!(others[4..].iter().all(|path| path.exists()));
    }
}
