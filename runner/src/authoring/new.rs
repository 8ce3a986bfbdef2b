//! `cleanroom plugin new NAME --kind check|stage|evaluator --lang rust|python|js`:
//! a plugin scaffold that builds and passes its own test.
//!
//! The scaffold is the template `runner/templates/<lang>/<kind>/` on top of
//! the language's `runner/templates/<lang>/_common/` (one `build.sh` per
//! language), with `{{name}}` (the name as given), `{{snake}}` (`-` -> `_`)
//! and `{{kind}}` replaced in file names and contents, plus the plugin contract at `wit/plugin.wit`
//! and, for Rust, a copy of the SDK crate at `sdk/` (the scaffold builds
//! offline, from crates.io alone). Nothing is written when the target
//! directory already exists.

use std::path::{Path, PathBuf};

use clap::ValueEnum;

use super::embedded;
use crate::diag::{Code, Diagnostic, Diagnostics, Location};
use crate::plan::StepKind;

/// How to publish the plugin to an OCI registry: one note for every
/// language and kind.
const PUBLISH: &str = include_str!("../../templates/PUBLISH.md");

/// The languages there are templates for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust with the Cleanroom SDK (wit-bindgen), built with cargo.
    Rust,
    /// Python, built with componentize-py.
    Python,
    /// JavaScript, built with jco / componentize-js.
    Js,
}

impl Lang {
    fn dir(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }
}

/// Creates the scaffold `parent/name/` and returns its path and the files written.
///
/// # Errors
/// `CR026` when the name is not a valid plugin name, the directory exists,
/// or a file cannot be written.
pub fn scaffold(name: &str, kind: StepKind, lang: Lang, parent: &Path) -> Result<(PathBuf, Vec<String>), Diagnostics> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        return Err(Diagnostic::new(Code::CR026, format!("`{name}` is not a usable plugin name"))
            .hint("use lowercase letters, digits and `-`, starting with a letter, e.g. `no-fixme`")
            .into());
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(Diagnostic::new(Code::CR026, format!("`{}` already exists", dir.display()))
            .at(Location::Path(dir.clone()))
            .hint("pick another name or --dir, or remove the directory")
            .into());
    }
    let snake = name.replace('-', "_");
    let fill =
        |text: &str| text.replace("{{name}}", name).replace("{{snake}}", &snake).replace("{{kind}}", kind.as_str());
    // The language's `_common/` files, then the kind's own (which win).
    let mut chosen: std::collections::BTreeMap<String, &[u8]> = std::collections::BTreeMap::new();
    for dir in ["_common", kind.as_str()] {
        let prefix = format!("{}/{dir}/", lang.dir());
        for (path, bytes) in embedded::TEMPLATES {
            if let Some(rel) = path.strip_prefix(&prefix) {
                chosen.insert(fill(rel), bytes);
            }
        }
    }
    let own = format!("{}/{}/", lang.dir(), kind.as_str());
    let has_own = embedded::TEMPLATES.iter().any(|(path, _)| path.starts_with(&own));
    let mut files: Vec<(String, Vec<u8>)> = chosen
        .into_iter()
        .map(|(rel, bytes)| match std::str::from_utf8(bytes) {
            Ok(text) => (rel, fill(text).into_bytes()),
            Err(_) => (rel, bytes.to_vec()),
        })
        .collect();
    if !has_own {
        files.clear();
    }
    if files.is_empty() {
        return Err(Diagnostic::new(
            Code::CR026,
            format!("this build of cleanroom has no {} template for {} plugins", kind, lang.dir()),
        )
        .hint("rebuild cleanroom from a checkout that has runner/templates/")
        .into());
    }
    files.push(("wit/plugin.wit".to_string(), embedded::WIT.as_bytes().to_vec()));
    files.push(("PUBLISH.md".to_string(), fill(PUBLISH).into_bytes()));
    if lang == Lang::Rust {
        for (path, bytes) in embedded::SDK {
            files.push((format!("sdk/{path}"), bytes.to_vec()));
        }
        files.push(("sdk/wit/plugin.wit".to_string(), embedded::WIT.as_bytes().to_vec()));
    }
    // Written into a sibling temporary directory and renamed into place, so
    // a failure leaves no half scaffold behind.
    fs_err::create_dir_all(parent).map_err(|e| write_error(parent, &e))?;
    let staging =
        tempfile::Builder::new().prefix(".cleanroom-new-").tempdir_in(parent).map_err(|e| write_error(parent, &e))?;
    let mut written = Vec::new();
    for (rel, bytes) in &files {
        super::write_file(&staging.path().join(rel), bytes, rel.ends_with(".sh"))?;
        written.push(rel.clone());
    }
    let staged = staging.keep();
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs_err::set_permissions(&staged, std::fs::Permissions::from_mode(0o755));
    }
    if let Err(e) = fs_err::rename(&staged, &dir) {
        let _ = fs_err::remove_dir_all(&staged);
        return Err(write_error(&dir, &e));
    }
    written.sort();
    Ok((dir, written))
}

fn write_error(path: &Path, e: &std::io::Error) -> Diagnostics {
    Diagnostic::new(Code::CR026, format!("cannot create `{}`: {e}", path.display()))
        .at(Location::Path(path.to_path_buf()))
        .hint("check that the directory is writable")
        .into()
}
