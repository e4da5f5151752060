//! Checks a plugin file before anything loads it: a well-formed ELF shared object for this
//! machine, complete (every loadable segment inside the file), exporting the plugin header.
//!
//! `dlopen` trusts the file: a truncated library (a deploy still copying it) is mapped
//! anyway, and the first touch of a page past the end of the file kills the process with
//! SIGBUS; any library's constructors run as soon as it is opened. Reading the headers with
//! the `object` crate first turns both into a refusal with a reason, and reads only the
//! headers and the dynamic symbol table (never the whole file: a 1 GB sparse file named
//! `x.so` costs a few reads).

use std::{fs::File, path::Path};

use abi_stable::library::ROOT_MODULE_LOADER_NAME;
use object::{
    elf,
    read::elf::{FileHeader, ProgramHeader, Sym},
    Endianness, ReadCache,
};

/// The refusal of a library that does not export the plugin header.
pub const NOT_A_PLUGIN: &str =
    "not a brewblox-host plugin (it exports no plugin header; use plugin_api::export_plugin!)";

/// Why a file cannot be a plugin, in one line. A truncated file ([`ElfError::Truncated`])
/// is most often one still being copied.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("cannot read: {0}")]
    Unreadable(#[from] std::io::Error),
    #[error("not a regular file")]
    NotRegular,
    #[error("not a shared library (only {0} bytes)")]
    TooShort(u64),
    #[error("not a shared library (no 64-bit ELF header)")]
    NoHeader,
    #[error("not a shared library (unknown byte order)")]
    UnknownByteOrder,
    #[error("a shared library for a machine of the other byte order")]
    OtherByteOrder,
    #[error("not a shared library (ELF type {0})")]
    NotShared(u16),
    #[error(
        "a shared library for another machine (ELF machine {machine}, this host is {})",
        std::env::consts::ARCH
    )]
    OtherMachine { machine: u16 },
    #[error(
        "truncated or still being written: the file has {size} bytes, but its program headers \
         need {needed}; copy it complete (install to a temporary name, then mv)"
    )]
    Truncated { size: u64, needed: u64 },
    #[error("not a shared library (no program headers)")]
    NoProgramHeaders,
    #[error("not a shared library (corrupt program header)")]
    CorruptProgramHeader,
    /// What of the file could not be read: its section headers, its dynamic symbol table.
    #[error("truncated or corrupt: cannot read its {0}")]
    Corrupt(&'static str),
    #[error("{NOT_A_PLUGIN}")]
    NotAPlugin,
}

/// The ELF file header type of this machine's shared libraries.
type Header = elf::FileHeader64<Endianness>;

/// The ELF machine (`e_machine`) this host runs on.
fn host_machine() -> Option<elf::Machine> {
    if cfg!(target_arch = "x86_64") {
        Some(elf::EM_X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(elf::EM_AARCH64)
    } else if cfg!(target_arch = "riscv64") {
        Some(elf::EM_RISCV)
    } else if cfg!(target_arch = "powerpc64") {
        Some(elf::EM_PPC64)
    } else {
        // Another 64-bit machine: `dlopen` checks the machine itself.
        None
    }
}

/// What the check learnt about a plugin file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    /// What identifies this build of the library: its GNU build id (`readelf -n`) in hex, or
    /// for a library linked without one, `sha256:` and the SHA-256 of the bytes the dynamic
    /// loader maps. Two builds of one version differ; `None` only if the file could not be
    /// read again.
    pub build_id: Option<String>,
}

/// Checks a plugin file; `Err` is why it cannot be one, in one line.
pub fn check(path: &Path) -> Result<ElfInfo, ElfError> {
    let (file, size) = open(path)?;
    let data = &ReadCache::new(file);
    let (header, endian) = parse_header(data, size)?;
    check_segments(header, endian, data, size)?;
    check_export(header, endian, data)?;
    let build_id = build_id(header, endian, data)
        .or_else(|| mapped_end(path).and_then(|end| content_digest(path, end)));
    Ok(ElfInfo { build_id })
}

/// `sha256:` and the hex SHA-256 of the first `len` bytes of `path`: the identity of a
/// library the linker gave no build id (`-Wl,--build-id=none`). Only the mapped bytes are
/// read, never a file's debug info or anything appended after them.
fn content_digest(path: &Path, len: u64) -> Option<String> {
    use std::io::Read;
    let mut file = File::open(path).ok()?.take(len);
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 64 * 1024];
    // Bounded by `len`: `take` ends the reads there, or earlier at the end of the file.
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => digest.update(&buffer[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(format!("sha256:{}", hex(digest.finish().as_ref())))
}

/// `bytes` in lower-case hex, two digits each.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// The `NT_GNU_BUILD_ID` note, which linkers add by default on Linux distributions.
fn build_id(header: &Header, endian: Endianness, data: &ReadCache<File>) -> Option<String> {
    for segment in header.program_headers(endian, data).ok()? {
        let Ok(Some(mut notes)) = segment.notes(endian, data) else {
            continue;
        };
        while let Ok(Some(note)) = notes.next() {
            if note.name() == elf::ELF_NOTE_GNU && note.n_type(endian) == elf::NT_GNU_BUILD_ID {
                return Some(hex(note.desc()));
            }
        }
    }
    None
}

/// Checks that a file (a private copy, whose section headers are dropped) is a complete
/// shared library for this machine, without looking for the plugin header.
pub fn check_loadable(path: &Path) -> Result<(), ElfError> {
    let (file, size) = open(path)?;
    let data = &ReadCache::new(file);
    let (header, endian) = parse_header(data, size)?;
    check_segments(header, endian, data, size)
}

/// The end of the last byte the dynamic loader maps (the ELF header, the program header
/// table and every segment), if the file is an ELF file whose headers all lie inside it.
pub fn mapped_end(path: &Path) -> Option<u64> {
    let (file, size) = open(path).ok()?;
    let data = &ReadCache::new(file);
    let header = Header::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let segments = header.program_headers(endian, data).ok()?;
    let table_end = header
        .e_phoff
        .get(endian)
        .checked_add(u64::from(header.e_phentsize.get(endian)) * segments.len() as u64)?;
    let mut end = table_end.max(std::mem::size_of::<Header>() as u64);
    for segment in segments {
        end = end.max(
            segment
                .p_offset(endian)
                .checked_add(segment.p_filesz(endian))?,
        );
    }
    (end <= size).then_some(end)
}

/// Opens `path` without waiting (a FIFO put in a plugin's place must not hold a start or a
/// reload in `open`), and only if it is a regular file.
fn open(path: &Path) -> Result<(File, u64), ElfError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ElfError::NotRegular);
    }
    Ok((file, meta.len()))
}

/// The ELF header, if it is that of a shared library for this machine.
fn parse_header(data: &ReadCache<File>, size: u64) -> Result<(&Header, Endianness), ElfError> {
    let header = Header::parse(data).map_err(|_| {
        if size < 64 {
            ElfError::TooShort(size)
        } else {
            ElfError::NoHeader
        }
    })?;
    let endian = header.endian().map_err(|_| ElfError::UnknownByteOrder)?;
    if endian != Endianness::default() {
        return Err(ElfError::OtherByteOrder);
    }
    if header.e_type(endian) != elf::ET_DYN {
        return Err(ElfError::NotShared(header.e_type(endian).0));
    }
    let machine = header.e_machine(endian);
    if host_machine().is_some_and(|host| host != machine) {
        return Err(ElfError::OtherMachine { machine: machine.0 });
    }
    Ok((header, endian))
}

/// Every loadable segment lies inside the file: a truncated (or still copying) file would be
/// mapped past its end.
fn check_segments(
    header: &Header,
    endian: Endianness,
    data: &ReadCache<File>,
    size: u64,
) -> Result<(), ElfError> {
    let truncated = |needed: u64| ElfError::Truncated { size, needed };
    let segments = header
        .program_headers(endian, data)
        .map_err(|_| truncated(header.e_phoff.get(endian)))?;
    if segments.is_empty() {
        return Err(ElfError::NoProgramHeaders);
    }
    for segment in segments {
        if segment.p_type(endian) != elf::PT_LOAD {
            continue;
        }
        let end = segment
            .p_offset(endian)
            .checked_add(segment.p_filesz(endian))
            .ok_or(ElfError::CorruptProgramHeader)?;
        if end > size {
            return Err(truncated(end));
        }
    }
    Ok(())
}

/// The library defines abi_stable's root-module symbol, which `export_plugin!` exports.
fn check_export(
    header: &Header,
    endian: Endianness,
    data: &ReadCache<File>,
) -> Result<(), ElfError> {
    let sections = header
        .sections(endian, data)
        .map_err(|_| ElfError::Corrupt("section headers"))?;
    let symbols = sections
        .symbols(endian, data, elf::SHT_DYNSYM)
        .map_err(|_| ElfError::Corrupt("dynamic symbol table"))?;
    let wanted = ROOT_MODULE_LOADER_NAME.as_bytes();
    let exported = symbols.iter().any(|symbol| {
        !symbol.st_shndx(endian).is_special()
            && symbols
                .symbol_name(endian, symbol)
                .is_ok_and(|name| name == wanted)
    });
    if exported {
        Ok(())
    } else {
        Err(ElfError::NotAPlugin)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::{check, ElfError};

    /// This test binary is an ELF file, but an executable.
    fn own_binary() -> std::path::PathBuf {
        std::env::current_exe().unwrap()
    }

    #[test]
    fn text_and_empty_files_are_not_libraries() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("a.so");
        std::fs::write(
            &text,
            "not a library at all, just some text to fill 64 bytes ......",
        )
        .unwrap();
        let err = check(&text).unwrap_err().to_string();
        assert!(err.starts_with("not a shared library"), "{err}");
        let empty = dir.path().join("b.so");
        std::fs::write(&empty, "").unwrap();
        assert_eq!(
            check(&empty).unwrap_err().to_string(),
            "not a shared library (only 0 bytes)"
        );
    }

    #[test]
    fn a_digest_covers_only_the_bytes_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lib.so");
        std::fs::write(&file, "abc and what a loader never maps").unwrap();
        // The FIPS 180-2 test vector for "abc".
        assert_eq!(
            super::content_digest(&file, 3).as_deref(),
            Some("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_ne!(
            super::content_digest(&file, 4),
            super::content_digest(&file, 3)
        );
        assert_eq!(super::content_digest(&dir.path().join("gone.so"), 3), None);
    }

    #[test]
    fn a_large_sparse_file_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let sparse = dir.path().join("x.so");
        let file = std::fs::File::create(&sparse).unwrap();
        file.set_len(1 << 30).unwrap();
        let started = std::time::Instant::now();
        assert!(check(&sparse)
            .unwrap_err()
            .to_string()
            .starts_with("not a shared library"));
        // Reading 1 GiB of zeros takes seconds; the headers take microseconds.
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn an_executable_is_not_a_plugin_and_a_truncated_one_is_named_so() {
        let dir = tempfile::tempdir().unwrap();
        let exe = own_binary();
        // Test binaries are position-independent executables: ELF type DYN, no plugin header.
        let whole = dir.path().join("whole.so");
        std::fs::copy(&exe, &whole).unwrap();
        let err = check(&whole).unwrap_err();
        assert!(matches!(err, ElfError::NotAPlugin), "{err}");
        assert_eq!(err.to_string(), super::NOT_A_PLUGIN);
        assert!(super::check_loadable(&whole).is_ok());

        let bytes = std::fs::read(&exe).unwrap();
        let cut = dir.path().join("cut.so");
        let mut file = std::fs::File::create(&cut).unwrap();
        file.write_all(&bytes[..100_000.min(bytes.len() / 2)])
            .unwrap();
        drop(file);
        let err = check(&cut).unwrap_err();
        assert!(matches!(err, ElfError::Truncated { .. }), "{err}");
        assert!(err.to_string().starts_with("truncated"), "{err}");
    }
}
