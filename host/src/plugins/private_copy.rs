//! The private copy of a plugin library that the dynamic loader maps.
//!
//! A copy lives in memory (a sealed `memfd`, opened by its `/proc/self/fd/N` path), or, where
//! the kernel has no `memfd_create` or the copies must stay readable as files
//! (`RUST_BACKTRACE=full`), as a file in the loader's private folder.
//!
//! Why memory: a file copy costs the file system a create and an unlink per plugin beside the
//! copying itself (about as much again as the bytes copied, measured on ext4 with 50 plugins,
//! see BENCHMARKS.md); a memfd costs only its pages. Sealed against writes, shrinking and
//! growing once written, nothing (not even this process) can change the bytes the loader maps.
//!
//! A memfd copy's descriptor is kept open for the life of the process: the dynamic loader
//! knows a library by the path it was opened by, and a closed `/proc/self/fd/N` would let the
//! next copy get the same N, which `dlopen` would then answer with the library loaded before.
//! Libraries are never unloaded anyway (abi_stable), so this costs one descriptor per loaded
//! build.

use std::{
    ffi::CString,
    fs::File,
    io::{Read, Seek, SeekFrom, Write},
    os::fd::{AsRawFd, FromRawFd},
    path::{Path, PathBuf},
};

use super::elf_check;
use crate::sync::Unpoisoned;

/// A private copy, written and checked, ready to be opened by `path`.
pub struct PrivateCopy {
    path: PathBuf,
    /// The memfd behind a `/proc/self/fd/N` path; `None` for a file in the private folder.
    memory: Option<File>,
}

impl PrivateCopy {
    /// Copies `file` into memory, named [`memory_name`]`(index)`; `Ok(None)` where this
    /// kernel makes no memfd (the caller then copies into its folder).
    pub fn in_memory(file: &Path, index: usize) -> std::io::Result<Option<PrivateCopy>> {
        let Some(mut target) = memfd(index)? else {
            return Ok(None);
        };
        copy_into(file, &mut target, false)?;
        seal(&target)?;
        let path = PathBuf::from(format!("/proc/self/fd/{}", target.as_raw_fd()));
        Ok(Some(PrivateCopy {
            path,
            memory: Some(target),
        }))
    }

    /// Copies `file` to the file `copy`, whole or only its mapped part.
    pub fn in_folder(file: &Path, copy: &Path, whole: bool) -> std::io::Result<PrivateCopy> {
        let mut target = File::create(copy)?;
        copy_into(file, &mut target, whole)?;
        Ok(PrivateCopy {
            path: copy.to_owned(),
            memory: None,
        })
    }

    /// The path the dynamic loader opens.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The dynamic loader has mapped the copy: a memfd stays open for good (see the module
    /// docs); a file copy stays where it is (the caller removes it, or keeps whole copies).
    pub fn mapped(self) {
        if let Some(memory) = self.memory {
            KEPT.locked().push(memory);
        }
    }
}

/// The descriptors of every memfd copy the dynamic loader has mapped.
static KEPT: std::sync::Mutex<Vec<File>> = std::sync::Mutex::new(Vec::new());

/// How the memory copy of the `index`th file of a load shows (`/proc/PID/maps`, errors):
/// the name is ours, the file's may hold anything.
pub fn memory_name(index: usize) -> String {
    format!("/memfd:brewblox-plugin-{index:03}")
}

/// A new sealable memfd, closed on exec; `None` where the kernel has none.
fn memfd(index: usize) -> std::io::Result<Option<File>> {
    let name = memory_name(index);
    let name = name.trim_start_matches("/memfd:");
    let name = CString::new(name).map_err(std::io::Error::other)?;
    // SAFETY: a valid C string and flags; the result is checked before use.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENOSYS | libc::EINVAL | libc::EPERM) => Ok(None),
            _ => Err(err),
        };
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Ok(Some(unsafe { File::from_raw_fd(fd) }))
}

/// Forbids any later write, shrink or growth, and further seals.
fn seal(file: &File) -> std::io::Result<()> {
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: an open descriptor and a plain integer argument.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Copies `file` into `target`: for an ELF file, only the part the dynamic loader maps
/// ([`elf_check::mapped_end`]), with the section header table (which lies past it) dropped
/// from the header; anything else (or everything, `whole`) as it is, so that `dlopen`
/// reports on it exactly as on the original.
fn copy_into(file: &Path, target: &mut File, whole: bool) -> std::io::Result<()> {
    let mut source = File::open(file)?;
    let size = source.metadata()?.len();
    let end = if whole {
        None
    } else {
        elf_check::mapped_end(file)
    };
    let Some(end) = end.filter(|end| *end < size) else {
        let copied = std::io::copy(&mut source, target)?;
        return if copied == size {
            Ok(())
        } else {
            Err(changed())
        };
    };
    let copied = std::io::copy(&mut (&mut source).take(end), target)?;
    if copied != end {
        return Err(changed());
    }
    // e_shoff = 0, e_shnum = 0, e_shstrndx = 0 (SHN_UNDEF): "no section headers".
    target.seek(SeekFrom::Start(0x28))?;
    target.write_all(&0u64.to_le_bytes())?;
    target.seek(SeekFrom::Start(0x3C))?;
    target.write_all(&[0; 4])?;
    Ok(())
}

fn changed() -> std::io::Error {
    std::io::Error::other("the file changed while it was copied")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary is an ELF file like any plugin.
    fn this_binary() -> (PathBuf, Vec<u8>) {
        let exe = std::env::current_exe().unwrap();
        let bytes = std::fs::read(&exe).unwrap();
        (exe, bytes)
    }

    fn assert_loaded_part(copied: &[u8], original: &[u8]) {
        assert!(copied.len() <= original.len());
        assert_eq!(&copied[..4], b"\x7fELF");
        assert_eq!(
            copied[0x40..],
            original[0x40..copied.len()],
            "loaded bytes unchanged"
        );
    }

    #[test]
    fn folder_copies_hold_what_is_loaded_and_leave_other_files_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (exe, original) = this_binary();
        let copy = dir.path().join("copy");
        PrivateCopy::in_folder(&exe, &copy, false).unwrap();
        assert_loaded_part(&std::fs::read(&copy).unwrap(), &original);

        let whole = dir.path().join("whole");
        PrivateCopy::in_folder(&exe, &whole, true).unwrap();
        assert_eq!(std::fs::read(&whole).unwrap(), original);

        let text = dir.path().join("text.so");
        std::fs::write(&text, "not a library").unwrap();
        let text_copy = dir.path().join("text-copy");
        PrivateCopy::in_folder(&text, &text_copy, false).unwrap();
        assert_eq!(std::fs::read(&text_copy).unwrap(), b"not a library");
    }

    #[test]
    fn memory_copies_hold_what_is_loaded_and_cannot_be_changed() {
        let (exe, original) = this_binary();
        let copy = PrivateCopy::in_memory(&exe, 7)
            .unwrap()
            .expect("memfd on Linux");
        assert!(copy.path().starts_with("/proc/self/fd/"));
        assert_loaded_part(&std::fs::read(copy.path()).unwrap(), &original);
        let mut writer = std::fs::OpenOptions::new()
            .write(true)
            .open(copy.path())
            .unwrap();
        let err = writer.write_all(b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "sealed: {err}");
        assert!(writer.set_len(10).is_err(), "sealed against shrinking");
    }

    #[test]
    fn a_memory_copy_keeps_its_descriptor_once_mapped() {
        let (exe, _) = this_binary();
        let copy = PrivateCopy::in_memory(&exe, 7)
            .unwrap()
            .expect("memfd on Linux");
        let path = copy.path().to_owned();
        copy.mapped();
        // Still readable by its path: the descriptor, and with it the path, was not reused.
        assert_eq!(&std::fs::read(&path).unwrap()[..4], b"\x7fELF");
    }
}
