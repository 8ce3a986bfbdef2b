//! Embeds what `cleanroom init` and `cleanroom plugin new` write out: the
//! plugin templates (`runner/templates/<lang>/<kind>/`), the plugin contract
//! (`wit/plugin.wit`), the Rust SDK's sources (`plugins/sdk/`), and the
//! first-party check plugins `init` vendors, when `scripts/build-plugins`
//! has built them (a runner built before them says so when `init` runs).

#![allow(clippy::disallowed_methods, reason = "a build script without dependencies uses std::fs")]

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The check plugins a starter pipeline uses.
const BUNDLED: &[&str] = &["forbid_pattern", "required_files", "max_file_size"];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("the runner lives in the workspace").to_path_buf();
    let mut out = String::new();

    let mut templates = Vec::new();
    walk(&manifest.join("templates"), &mut templates);
    table(&mut out, "TEMPLATES", &manifest.join("templates"), &templates);

    let sdk = root.join("plugins/sdk");
    let mut sdk_files = vec![sdk.join("Cargo.toml")];
    walk(&sdk.join("src"), &mut sdk_files);
    table(&mut out, "SDK", &sdk, &sdk_files);

    let wit = root.join("wit/plugin.wit");
    println!("cargo:rerun-if-changed={}", wit.display());
    let _ = writeln!(out, "pub static WIT: &str = include_str!({:?});", wit.display().to_string());

    let dist = root.join("plugins/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    let bundled: Vec<PathBuf> =
        BUNDLED.iter().map(|name| dist.join(format!("{name}.wasm"))).filter(|p| p.is_file()).collect();
    for path in &bundled {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let _ = writeln!(out, "pub static BUNDLED_PLUGINS: &[(&str, &[u8])] = &[");
    if bundled.len() == BUNDLED.len() {
        for path in &bundled {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let _ = writeln!(out, "    ({name:?}, include_bytes!({:?})),", path.display().to_string());
        }
    }
    let _ = writeln!(out, "];");

    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}

/// Every regular file below `dir`, sorted; tells cargo to watch them all.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        // Build outputs of a template tried out in place never get embedded.
        if matches!(name, "target" | "node_modules" | "__pycache__") || name.ends_with(".wasm") {
            continue;
        }
        if path.is_dir() {
            walk(&path, files);
        } else if path.is_file() {
            println!("cargo:rerun-if-changed={}", path.display());
            files.push(path);
        }
    }
}

/// `pub static NAME: &[(&str, &[u8])]` of files relative to `base`.
fn table(out: &mut String, name: &str, base: &Path, files: &[PathBuf]) {
    let _ = writeln!(out, "pub static {name}: &[(&str, &[u8])] = &[");
    for file in files {
        let rel = file.strip_prefix(base).unwrap_or(file).to_string_lossy().into_owned();
        let _ = writeln!(out, "    ({rel:?}, include_bytes!({:?})),", file.display().to_string());
    }
    let _ = writeln!(out, "];");
}
