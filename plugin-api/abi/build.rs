//! Fingerprints the ABI: a hash of this crate's version and of every file in its `src/`,
//! exported by each plugin (`export_plugin!`) and compared by the host before it loads one.
//! Equal fingerprints mean the plugin was built against byte-identical ABI sources, so the
//! host can skip abi_stable's layout check (3.7 M instructions, ~2 ms, per plugin); any
//! difference, even a comment, falls back to the full check.

use std::{
    fs,
    path::{Path, PathBuf},
};

fn main() {
    let root = Path::new("src");
    println!("cargo:rerun-if-changed=src");
    let mut files = Vec::new();
    collect(root, &mut files);
    // Sorted by path relative to `src/`: the same tree hashes the same wherever it lies.
    files.sort();
    // Two independent 64-bit FNV-1a hashes: a 128-bit fingerprint, plenty against accidents
    // (it guards against mistakes, not malice: a plugin is native code either way).
    let mut hashes = [0xcbf2_9ce4_8422_2325u64, 0x6c62_272e_07bb_0142u64];
    let mut feed = |bytes: &[u8]| {
        for (i, hash) in hashes.iter_mut().enumerate() {
            for &byte in bytes {
                *hash ^= u64::from(byte) ^ (i as u64);
                *hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    };
    feed(env!("CARGO_PKG_VERSION").as_bytes());
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let relative = file.strip_prefix(root).unwrap_or(file);
        feed(relative.to_string_lossy().as_bytes());
        feed(&fs::read(file).expect("read an ABI source file"));
    }
    println!(
        "cargo:rustc-env=PLUGIN_ABI_FINGERPRINT={:016x}{:016x}",
        hashes[0], hashes[1]
    );
}

/// Every file below `dir`, at any depth.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read the ABI sources").flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.is_file() {
            out.push(path);
        }
    }
}
