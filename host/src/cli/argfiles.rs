//! `@file` arguments, as argparse's `fromfile_prefix_chars='@'` reads them: every argument
//! that starts with `@` is replaced by the lines of that file, one argument per line, and
//! arguments in the file that start with `@` are read in turn.
//!
//! Unlike argparse, reading is bounded: a file that names itself, or one that never ends, is
//! a usage error instead of a process that spins or fills memory. Only regular files are
//! read: a FIFO, a device or a socket (`@/dev/zero`, a pipe nobody writes to) is refused
//! before it is opened, and the open itself never waits (`O_NONBLOCK`), so that a FIFO put
//! in the file's place between the check and the open cannot hold the process either (the
//! signal handlers are installed by then, and a reload reads the files again).
//!
//! An argument file may hold secrets (a password option): its content is never shown in an
//! error. Errors name the file and the line; a line with a control character (the NULs of
//! `/proc/self/environ`) is refused as such, and [`Origins::redact`] replaces every
//! argument that came from a file in the command-line parser's messages by its file and
//! line, and so the value of a line written `--opt=value`, `-x=value` or `-xvalue`, which
//! the parser quotes alone.

use std::{
    ffi::{OsStr, OsString},
    fs::OpenOptions,
    io::Read,
    os::unix::{ffi::OsStrExt, fs::OpenOptionsExt},
    path::{Path, PathBuf},
};

/// How deep argument files may name other argument files.
pub const MAX_DEPTH: usize = 8;
/// Bytes read from all argument files together.
pub const MAX_TOTAL_BYTES: usize = 1 << 20;
/// Bytes in one line (one argument) of an argument file.
pub const MAX_LINE_BYTES: usize = 4096;

/// Why the arguments could not be expanded. Each names the file (and the line), never
/// what is in it.
#[derive(Debug, thiserror::Error)]
pub enum ArgFileError {
    #[error(
        "argument file {}: argument files nested more than {MAX_DEPTH} deep \
         (does one name itself?)",
        .0.display()
    )]
    TooDeep(PathBuf),
    #[error("argument file {} line {line}: longer than {MAX_LINE_BYTES} bytes", .file.display())]
    LongLine { file: PathBuf, line: usize },
    #[error(
        "argument file {} line {line}: contains a control character (is it an argument file?)",
        .file.display()
    )]
    ControlCharacter { file: PathBuf, line: usize },
    #[error(
        "argument file {}: argument files hold more than {MAX_TOTAL_BYTES} bytes in total",
        .0.display()
    )]
    TooLarge(PathBuf),
    #[error("cannot read argument file {}: {why}", .file.display())]
    Unreadable { file: PathBuf, why: Unreadable },
}

/// Why an argument file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("not a regular file (a FIFO, device, socket or folder)")]
    NotRegular,
    #[error("not UTF-8 text")]
    NotUtf8,
}

/// Where each argument that came from a file came from, to keep it out of error messages.
#[derive(Debug, Default, Clone)]
pub struct Origins(Vec<(String, String)>);

impl Origins {
    /// `text` with every quoted argument that came from a file (`'value'`, as clap quotes
    /// them) replaced by `<argument file F line N>`.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (arg, origin) in &self.0 {
            // Our own value parsers show a value escaped (`escape_debug`).
            let escaped = arg.escape_debug().to_string();
            for quoted in [
                format!("'{arg}'"),
                format!("'-- {arg}'"),
                format!("\"{arg}\""),
                format!("'{escaped}'"),
            ] {
                text = text.replace(&quoted, &format!("'<{origin}>'"));
            }
        }
        text
    }

    /// Records a line read from a file, and the values clap may quote without the rest of
    /// the line: the part after the first `=` (`--opt=value`, `-x=value`) and the value of
    /// an attached short option (`-xvalue`).
    fn record(&mut self, line: &str, at: &str) {
        let values = [option_value(line), attached_short_value(line)];
        let parts = std::iter::once(line).chain(values.into_iter().flatten());
        for part in parts {
            if !part.is_empty() {
                self.0.push((part.to_owned(), at.to_owned()));
            }
        }
    }
}

/// The value of an option line written `--opt=value` or `-x=value`.
fn option_value(line: &str) -> Option<&str> {
    line.strip_prefix('-')?
        .split_once('=')
        .map(|(_, value)| value)
}

/// What follows the option letter of `-xvalue` (a short option and its attached value).
fn attached_short_value(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('-')?;
    if rest.starts_with('-') {
        return None;
    }
    let letter = rest.chars().next()?;
    Some(&rest[letter.len_utf8()..])
}

/// Replaces every `@path` argument by the lines of that file (the first argument is the
/// program name and is never expanded), and says where each argument read from a file came
/// from.
pub fn expand_with_origins(args: Vec<OsString>) -> Result<(Vec<OsString>, Origins), ArgFileError> {
    let mut args = args.into_iter();
    let mut out: Vec<OsString> = args.next().into_iter().collect();
    let mut origins = Origins::default();
    let mut budget = MAX_TOTAL_BYTES;
    for arg in args {
        expand_one(arg, 0, &mut budget, &mut out, &mut origins)?;
    }
    // The longest first, so that a value inside another is not replaced within it.
    origins
        .0
        .sort_by_key(|(arg, _)| std::cmp::Reverse(arg.len()));
    Ok((out, origins))
}

fn file_of(arg: &OsStr) -> Option<&Path> {
    arg.as_bytes()
        .strip_prefix(b"@")
        .map(|path| Path::new(OsStr::from_bytes(path)))
}

fn expand_one(
    arg: OsString,
    depth: usize,
    budget: &mut usize,
    out: &mut Vec<OsString>,
    origins: &mut Origins,
) -> Result<(), ArgFileError> {
    let Some(path) = file_of(&arg) else {
        out.push(arg);
        return Ok(());
    };
    if depth >= MAX_DEPTH {
        return Err(ArgFileError::TooDeep(path.to_owned()));
    }
    let text = read_bounded(path, budget)?;
    for (index, line) in text.lines().enumerate() {
        let (file, line_number) = (path.to_owned(), index + 1);
        if line.len() > MAX_LINE_BYTES {
            return Err(ArgFileError::LongLine {
                file,
                line: line_number,
            });
        }
        // Never the line itself: it may hold a secret.
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(ArgFileError::ControlCharacter {
                file,
                line: line_number,
            });
        }
        if !line.is_empty() && !line.starts_with('@') {
            let at = format!("argument file {} line {line_number}", path.display());
            origins.record(line, &at);
        }
        expand_one(line.into(), depth + 1, budget, out, origins)?;
    }
    Ok(())
}

/// Reads at most `budget` bytes (and one more to notice a larger file), as UTF-8.
fn read_bounded(path: &Path, budget: &mut usize) -> Result<String, ArgFileError> {
    let cannot = |why: Unreadable| ArgFileError::Unreadable {
        file: path.to_owned(),
        why,
    };
    let io = |err: std::io::Error| cannot(err.into());
    let regular = |metadata: std::fs::Metadata| {
        if metadata.is_file() {
            Ok(())
        } else {
            Err(cannot(Unreadable::NotRegular))
        }
    };
    regular(std::fs::metadata(path).map_err(io)?)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    // Again on what was opened: the path may have been replaced since the check.
    regular(file.metadata().map_err(io)?)?;
    let mut bytes = Vec::new();
    file.take(*budget as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() > *budget {
        return Err(ArgFileError::TooLarge(path.to_owned()));
    }
    *budget -= bytes.len();
    String::from_utf8(bytes).map_err(|_| cannot(Unreadable::NotUtf8))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The arguments expanded, or the error's message.
    fn expand_strs(args: &[&str]) -> Result<Vec<String>, String> {
        let args = args.iter().map(OsString::from).collect();
        expand_with_origins(args)
            .map(|(out, _)| out.into_iter().map(|a| a.into_string().unwrap()).collect())
            .map_err(|err| err.to_string())
    }

    #[test]
    fn one_argument_per_line_and_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("inner");
        let outer = dir.path().join("outer");
        std::fs::write(&inner, "--port\n5001\n").unwrap();
        std::fs::write(&outer, format!("--name\nhas space\n@{}\n", inner.display())).unwrap();
        let out = expand_strs(&["prog", &format!("@{}", outer.display()), "--debug"]).unwrap();
        assert_eq!(
            out,
            ["prog", "--name", "has space", "--port", "5001", "--debug"]
        );
        // The program name is never a file.
        assert_eq!(expand_strs(&["@prog"]).unwrap(), ["@prog"]);
    }

    #[test]
    fn a_file_that_names_itself_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a");
        std::fs::write(&file, format!("@{}\n", file.display())).unwrap();
        let err = expand_strs(&["prog", &format!("@{}", file.display())]).unwrap_err();
        assert!(err.contains("nested more than 8 deep"), "{err}");
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for path in [
            fifo.display().to_string(),
            "/dev/zero".into(),
            "/tmp".into(),
        ] {
            let err = expand_strs(&["prog", &format!("@{path}")]).unwrap_err();
            assert!(err.contains("not a regular file"), "{err}");
        }
    }

    #[test]
    fn a_file_content_is_never_shown_in_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets");
        std::fs::write(&file, "--name\nx\n--mqtt-password\nhunter2\0PATH=/bin\n").unwrap();
        let err = expand_strs(&["prog", &format!("@{}", file.display())]).unwrap_err();
        assert!(
            err.contains("line 4: contains a control character"),
            "{err}"
        );
        assert!(!err.contains("hunter2") && !err.contains("PATH"), "{err}");
        std::fs::write(&file, "--bogus-option=hunter2\n").unwrap();
        let arg = format!("@{}", file.display());
        let (_, origins) = expand_with_origins(vec!["prog".into(), arg.into()]).unwrap();
        let text = origins.redact("error: unexpected argument '--bogus-option=hunter2' found");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("secrets line 1"), "{text}");
    }

    #[test]
    fn the_value_of_an_option_line_is_redacted_as_the_line_is() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets");
        let lines = "--mqtt-port=hunter2\n-phunter3\n-p=hunter4\n--name\n-\u{e9}hunter5\n";
        std::fs::write(&file, lines).unwrap();
        let arg = format!("@{}", file.display());
        let (_, origins) = expand_with_origins(vec!["prog".into(), arg.into()]).unwrap();
        for (value, line) in [
            ("hunter2", 1),
            ("hunter3", 2),
            ("hunter4", 3),
            ("hunter5", 5),
        ] {
            let text = origins.redact(&format!("error: invalid value '{value}' for '--x'"));
            assert!(!text.contains(value), "{text}");
            assert!(text.contains(&format!("secrets line {line}>")), "{text}");
        }
        // A long option is not a short one with its value attached.
        let text = origins.redact("error: unexpected value 'name'");
        assert!(text.contains("'name'"), "{text}");
    }

    #[test]
    fn endless_and_huge_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("long");
        std::fs::write(&file, "x".repeat(MAX_LINE_BYTES + 1)).unwrap();
        let err = expand_strs(&["prog", &format!("@{}", file.display())]).unwrap_err();
        assert!(err.contains("line 1: longer than 4096 bytes"), "{err}");
        // The budget is shared: a file read twice counts twice.
        let half = dir.path().join("half");
        std::fs::write(&half, "y\n".repeat(MAX_TOTAL_BYTES / 4 + 1)).unwrap();
        let arg = format!("@{}", half.display());
        let err = expand_strs(&["prog", &arg, &arg]).unwrap_err();
        assert!(err.contains("in total"), "{err}");
    }

    #[test]
    fn unreadable_files_are_named() {
        let err = expand_strs(&["prog", "@/no/such/file"]).unwrap_err();
        assert!(
            err.starts_with("cannot read argument file /no/such/file"),
            "{err}"
        );
    }
}
