//! Refuse plugin files that someone else could have written (as sshd's StrictModes does):
//! loading a library runs its code with the host's rights.

use std::{
    fs::Metadata,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Why a plugin file or folder is refused: someone else could have written it. Each says
/// the command that fixes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    #[error(
        "{} is owned by uid {owner}, not by root or the user running the host (uid {me}); \
         fix with: chown {me} {}",
        .path.display(),
        .path.display()
    )]
    Owner { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "{} is writable by other users (mode {mode:03o}); fix with: chmod go-w {}",
        .path.display(),
        .path.display()
    )]
    Writable { path: PathBuf, mode: u32 },
}

/// Checks that only root or the user running the host can write `path`.
pub fn check(path: &Path, meta: &Metadata) -> Result<(), PermissionError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let owner = meta.uid();
    if owner != 0 && owner != me {
        return Err(PermissionError::Owner {
            path: path.to_owned(),
            owner,
            me,
        });
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(PermissionError::Writable {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}
