//! `--watch`: reload when the plugins folder changes.
//!
//! The folder is polled (every 500 ms) rather than watched with inotify: inotify misses
//! changes made through some container bind mounts and network filesystems, where plugin
//! folders often live, and one `readdir` plus a `stat` per file twice a second costs nothing.
//! A change is acted on once the folder has been quiet for a second (a build writes a file
//! in many steps) and every changed file passes the checks made before loading (a complete
//! ELF plugin: a half-copied file waits). A file that does not pass them is logged once, as a
//! warning, and shown in health (`reload.waiting`) until the next reload; it waits for the
//! next change.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::plugins::{elf_check, loader::shown};
use crate::reloads::ReloadLog;

const POLL: Duration = Duration::from_millis(500);
const QUIET: Duration = Duration::from_secs(1);

/// One `.so` file as seen: size, modification time, inode.
type Seen = (u64, SystemTime, u64);

/// The `.so` files of `dir` by name.
fn snapshot(dir: &Path) -> BTreeMap<OsString, Seen> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "so"))
        .filter_map(|entry| {
            let meta = std::fs::metadata(entry.path()).ok()?;
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            Some((entry.file_name(), (meta.len(), modified, meta.ino())))
        })
        .collect()
}

/// The first changed file that is not yet a complete plugin, with why.
fn incomplete(
    dir: &Path,
    before: &BTreeMap<OsString, Seen>,
    now: &BTreeMap<OsString, Seen>,
) -> Option<(PathBuf, elf_check::ElfError)> {
    now.iter()
        .filter(|(name, seen)| before.get(*name) != Some(seen))
        .find_map(|(name, _)| {
            let path = dir.join(name);
            elf_check::check(&path).err().map(|why| (path, why))
        })
}

/// Polls `dir`; each message on the receiver is a change worth a reload. A change that is
/// not ready is put in `reloads` for health.
pub fn spawn(dir: PathBuf, reloads: Arc<ReloadLog>) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut loaded = snapshot(&dir);
        let mut seen = loaded.clone();
        let mut quiet_since = tokio::time::Instant::now();
        let mut logged: Option<BTreeMap<OsString, Seen>> = None;
        loop {
            tokio::time::sleep(POLL).await;
            let now = snapshot(&dir);
            if now != seen {
                seen = now;
                quiet_since = tokio::time::Instant::now();
                continue;
            }
            if seen == loaded || quiet_since.elapsed() < QUIET {
                continue;
            }
            if let Some((file, why)) = incomplete(&dir, &loaded, &seen) {
                if logged.as_ref() != Some(&seen) {
                    let message = format!(
                        "{} is not ready: {why}; waiting for the next change",
                        shown(&file)
                    );
                    tracing::warn!("Plugins folder changed, but {message}");
                    reloads.waiting(message);
                    logged = Some(seen.clone());
                }
                continue;
            }
            loaded = seen.clone();
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    rx
}
