//! `@file` arguments, as argparse's `fromfile_prefix_chars='@'` reads them: every argument
//! that starts with `@` is replaced by the lines of that file, one argument per line, and
//! arguments in the file that start with `@` are read in turn.
//!
//! Unlike argparse, reading is bounded: a file that names itself, or a device that never
//! ends (`@/dev/zero`), is a usage error instead of a process that spins or fills memory.

use std::{
    ffi::{OsStr, OsString},
    fs::File,
    io::Read,
    os::unix::ffi::OsStrExt,
    path::Path,
};

/// How deep argument files may name other argument files.
pub const MAX_DEPTH: usize = 8;
/// Bytes read from all argument files together.
pub const MAX_TOTAL_BYTES: usize = 1 << 20;
/// Bytes in one line (one argument) of an argument file.
pub const MAX_LINE_BYTES: usize = 4096;

/// Replaces every `@path` argument by the lines of that file. The first argument is the
/// program name and is never expanded.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let mut args = args.into_iter();
    let mut out: Vec<OsString> = args.next().into_iter().collect();
    let mut budget = MAX_TOTAL_BYTES;
    for arg in args {
        expand_one(arg, 0, &mut budget, &mut out)?;
    }
    Ok(out)
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
) -> Result<(), String> {
    let Some(path) = file_of(&arg) else {
        out.push(arg);
        return Ok(());
    };
    if depth >= MAX_DEPTH {
        return Err(format!(
            "argument file {}: argument files nested more than {MAX_DEPTH} deep \
             (does one name itself?)",
            path.display()
        ));
    }
    let text = read_bounded(path, budget)?;
    for (index, line) in text.lines().enumerate() {
        if line.len() > MAX_LINE_BYTES {
            return Err(format!(
                "argument file {} line {}: longer than {MAX_LINE_BYTES} bytes",
                path.display(),
                index + 1
            ));
        }
        expand_one(line.into(), depth + 1, budget, out)?;
    }
    Ok(())
}

/// Reads at most `budget` bytes (and one more to notice a larger file), as UTF-8.
fn read_bounded(path: &Path, budget: &mut usize) -> Result<String, String> {
    let cannot = |err: &dyn std::fmt::Display| {
        format!("cannot read argument file {}: {err}", path.display())
    };
    let file = File::open(path).map_err(|err| cannot(&err))?;
    let mut bytes = Vec::new();
    file.take(*budget as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| cannot(&err))?;
    if bytes.len() > *budget {
        return Err(format!(
            "argument file {}: argument files hold more than {MAX_TOTAL_BYTES} bytes in total",
            path.display()
        ));
    }
    *budget -= bytes.len();
    String::from_utf8(bytes).map_err(|_| cannot(&"not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_strs(args: &[&str]) -> Result<Vec<String>, String> {
        let args = args.iter().map(OsString::from).collect();
        expand(args).map(|out| out.into_iter().map(|a| a.into_string().unwrap()).collect())
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
    fn endless_and_huge_files_are_refused() {
        let err = expand_strs(&["prog", "@/dev/zero"]).unwrap_err();
        assert!(err.contains("more than 1048576 bytes"), "{err}");
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
