//! Lays out a release build's code with the functions that start-up and idle work run side
//! by side, and packs its relative relocations: for `build.rs` of the host and of plugins.
//!
//! ```no_run
//! // in `fn main` of a plugin's build.rs (with `link-layout` under `[build-dependencies]`)
//! link_layout::plugin();
//! ```
//!
//! **Why.** The kernel maps a program's code 64 KiB at a time around each page it faults in,
//! so a function run at start or at every idle tick keeps its whole 64 KiB block resident.
//! Spread over the code as the linker places them by default, the functions an idle service
//! runs kept most of the host's ~9.5 MB of code resident, and nearly all of each plugin's;
//! side by side they keep little more than their own size (BENCHMARKS.md, "The code's
//! layout"). A linker script lists them (`host/hot-code.ld` for the host, [`PLUGIN_SCRIPT`]
//! for plugins: the functions the bundled plugins run, most of them the SDK's, tokio's and
//! serde's, which any plugin runs too) and inserts them at the front of `.text`.
//!
//! The scripts list patterns of v0 symbol names (`-Csymbol-mangling-version=v0`, which names
//! each instance of a generic function by its type arguments). Left open are what changes
//! between builds: the crate hashes (with the toolchain and with the features a build
//! unifies), the byte offsets of back-references, and the crate that instantiated a generic
//! function (identical instances are merged, and the one kept bears another crate's name in
//! another build). So a pattern still finds its function in another build; one that finds
//! nothing is skipped. A stale list costs memory, never a failed build.
//! `bench/scripts/link-order` writes both afresh.
//!
//! **Relocations.** A position-independent program's relocation table is read at every
//! start and stays resident: ~400 KiB in the host, ~110 KiB in a plugin. Packed
//! (`-z pack-relative-relocs`, DT_RELR) it is a few KiB. The loader must know DT_RELR: a
//! program or plugin built so needs glibc 2.36 or later where it runs (an older one refuses
//! it at start, naming the missing `GLIBC_ABI_DT_RELR`). It is packed only when a program
//! linked so runs on the build machine; set `LINK_LAYOUT_NO_RELR=1` when building for
//! machines with an older glibc.
//!
//! **When.** Release builds only, linked by lld (the default linker of Rust 1.90+ on x86-64
//! Linux): GNU ld places an inserted section otherwise. Each is checked by linking an empty
//! program with the build's target, linker, flags and the arguments; any other build keeps
//! the default layout, with a `cargo:warning` saying why.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The plugins' script: the functions that the bundled plugins run at start and while
/// serving and idle, as patterns.
pub const PLUGIN_SCRIPT: &str = include_str!("../plugin-hot-code.ld");

/// Set (to anything but `0`) to leave relocations unpacked.
const NO_RELR: &str = "LINK_LAYOUT_NO_RELR";

/// For a plugin's `build.rs`: lays out the cdylib with [`PLUGIN_SCRIPT`].
pub fn plugin() {
    let Some(out) = env::var_os("OUT_DIR") else {
        return warn("no OUT_DIR (not run as a build script?)");
    };
    let script = PathBuf::from(out).join("plugin-hot-code.ld");
    if let Err(err) = std::fs::write(&script, PLUGIN_SCRIPT) {
        return warn(&format!("{} not written: {err}", script.display()));
    }
    link(&script, "cargo:rustc-cdylib-link-arg");
}

/// For a binary's `build.rs`: lays out its binaries with `script` (a path relative to the
/// package), which the build then watches.
pub fn binary(script: &str) {
    println!("cargo:rerun-if-changed={script}");
    let Some(manifest) = env::var_os("CARGO_MANIFEST_DIR") else {
        return warn("no CARGO_MANIFEST_DIR (not run as a build script?)");
    };
    link(
        &Path::new(&manifest).join(script),
        "cargo:rustc-link-arg-bins",
    );
}

fn link(script: &Path, directive: &str) {
    for var in ["RUSTC_LINKER", NO_RELR] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    if !script.is_file() {
        return warn(&format!("{} is missing", script.display()));
    }
    let Some(script) = script.to_str() else {
        return warn(&format!("{} is not UTF-8", script.display()));
    };
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if !flags.contains("symbol-mangling-version=v0") {
        println!(
            "cargo:warning=symbol names are not v0 (-Csymbol-mangling-version=v0): the layout \
             script's patterns will find few functions"
        );
    }
    // `-Xlinker`, not `-Wl,`: a path may hold commas.
    let layout = ["-Xlinker".to_owned(), format!("--script={script}")];
    if !links_with_lld(&layout, false) {
        return warn(&format!("the linker is not lld or refused {script}"));
    }
    for arg in &layout {
        println!("{directive}={arg}");
    }
    let relr = ["-Wl,-z,pack-relative-relocs".to_owned()];
    let wanted = env::var(NO_RELR).map_or(true, |v| v == "0");
    if wanted && env::var("HOST") == env::var("TARGET") && links_with_lld(&relr, true) {
        println!("{directive}={}", relr[0]);
    }
}

fn warn(why: &str) {
    println!(
        "cargo:warning={why}: the code keeps the default layout (more resident memory, \
         nothing else)"
    );
}

/// Whether rustc, with this build's target and flags, links an empty program given `args`
/// with lld (which writes its name into the program's `.comment` section); and, if `run`,
/// whether that program runs.
fn links_with_lld(args: &[String], run: bool) -> bool {
    let (Some(rustc), Some(out)) = (env::var_os("RUSTC"), env::var_os("OUT_DIR")) else {
        return false;
    };
    let probe = Probe {
        rustc: rustc.into(),
        out: out.into(),
        target: env::var("TARGET").ok(),
        linker: env::var_os("RUSTC_LINKER").map(PathBuf::from),
        flags: env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default(),
    };
    probe.links_with_lld(args, run)
}

/// How to link an empty program as the build links: rustc, a scratch folder, the target,
/// the linker cargo was configured with, and the encoded flags (separated by `\x1f`, as
/// cargo hands them to build scripts).
struct Probe {
    rustc: PathBuf,
    out: PathBuf,
    target: Option<String>,
    linker: Option<PathBuf>,
    flags: String,
}

impl Probe {
    fn links_with_lld(&self, args: &[String], run: bool) -> bool {
        let source = self.out.join("link_probe.rs");
        let program = self.out.join("link_probe");
        let _ = std::fs::remove_file(&program);
        if std::fs::write(&source, "fn main() {}\n").is_err() {
            return false;
        }
        let mut probe = Command::new(&self.rustc);
        if let Some(target) = &self.target {
            probe.args(["--target", target]);
        }
        if let Some(linker) = &self.linker {
            probe.arg("-C").arg(format!("linker={}", linker.display()));
        }
        probe.args(self.flags.split('\x1f').filter(|flag| !flag.is_empty()));
        for arg in args {
            probe.arg(format!("-Clink-arg={arg}"));
        }
        probe
            .arg("-o")
            .arg(&program)
            .arg(&source)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if !probe.status().is_ok_and(|status| status.success()) {
            return false;
        }
        let linked = std::fs::read(&program).unwrap_or_default();
        let lld = linked
            .windows(b"Linker: LLD".len())
            .any(|window| window == b"Linker: LLD");
        lld && (!run || Command::new(&program).status().is_ok_and(|s| s.success()))
    }
}

/// The patterns of a layout script, or why it is not one these builds can use. A malformed
/// script would only make the probe fail, and the build fall back to the default layout
/// with a warning; the tests of this crate and of the host check their scripts with it.
pub fn patterns(script: &str) -> Result<Vec<&str>, String> {
    let body = script
        .split_once("SECTIONS\n{\n  .text : {\n")
        .and_then(|(_, rest)| rest.strip_suffix("  }\n}\nINSERT BEFORE .init;\n"))
        .ok_or("not `SECTIONS { .text : { … } } INSERT BEFORE .init;`")?;
    let mut found = Vec::new();
    for line in body.lines() {
        let list = line
            .trim()
            .strip_prefix("*(")
            .and_then(|rest| rest.strip_suffix(')'))
            .ok_or_else(|| format!("not an input section list: {line}"))?;
        let first = list.split(' ').next().unwrap_or_default();
        let name = first
            .strip_prefix(".text.")
            .ok_or_else(|| format!("not a .text section: {first}"))?;
        let plain = |c: char| c.is_ascii_alphanumeric() || "_$.*".contains(c);
        if name.is_empty() || !name.chars().all(plain) {
            return Err(format!("a pattern with other characters: {name}"));
        }
        found.push(name);
    }
    let distinct: std::collections::HashSet<_> = found.iter().collect();
    if distinct.len() != found.len() {
        return Err("a pattern listed twice".into());
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugins_script_is_a_well_formed_list_of_distinct_patterns() {
        let found = patterns(PLUGIN_SCRIPT).unwrap();
        assert!(found.len() > 100, "only {} patterns", found.len());
    }

    #[test]
    fn a_script_with_a_stray_character_or_a_pattern_twice_is_refused() {
        let script = |lines: &str| {
            format!("SECTIONS\n{{\n  .text : {{\n{lines}  }}\n}}\nINSERT BEFORE .init;\n")
        };
        assert_eq!(patterns(&script("    *(.text.a*_b)\n")), Ok(vec!["a*_b"]));
        assert!(patterns(&script("    *(.text.a(b))\n")).is_err());
        assert!(patterns(&script("    *(.text.a)\n    *(.text.a)\n")).is_err());
        assert!(patterns("SECTIONS {}").is_err());
    }

    #[test]
    fn the_probe_tells_a_flag_the_linker_takes_from_one_it_refuses() {
        let out = std::env::temp_dir().join(format!("link-layout-probe-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        let probe = Probe {
            rustc: std::env::var_os("RUSTC").unwrap_or("rustc".into()).into(),
            out: out.clone(),
            target: None,
            linker: None,
            flags: String::new(),
        };
        let lld = probe.links_with_lld(&[], false);
        assert!(!probe.links_with_lld(&["-Wl,--no-such-linker-flag".into()], false));
        if lld {
            // This toolchain links with lld: the plugins' script is taken, from a path with
            // a comma and a space in it.
            let script = out.join("a, b.ld");
            std::fs::write(&script, PLUGIN_SCRIPT).unwrap();
            let layout = ["-Xlinker".into(), format!("--script={}", script.display())];
            assert!(probe.links_with_lld(&layout, true));
        }
        let _ = std::fs::remove_dir_all(&out);
    }
}
