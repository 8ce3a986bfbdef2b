//! Authoring: what helps people write pipelines and plugins rather than
//! run them.
//!
//! [`init`] writes a starter pipeline for a project, vendoring the
//! first-party check plugins it uses; [`new`] scaffolds a plugin in Rust,
//! Python or JavaScript from the templates in `runner/templates/`; [`test`]
//! runs a plugin against fixture directories with expected results (like
//! Semgrep's rule tests), through the same plan and executor as `run`.
//! Everything they write out is embedded in the binary at build time
//! (`build.rs`), so they work from an installed `cleanroom` alone.

pub mod init;
pub mod new;
pub mod test;

/// Files embedded by `build.rs`: templates, the contract, the SDK, bundled plugins.
pub(crate) mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

use std::path::Path;

use crate::diag::{Code, Diagnostic, Diagnostics, Location};

/// Writes `bytes` to `path` (creating parent directories) through a
/// temporary file and a rename, so an interrupted write leaves no half file.
pub(crate) fn write_file(path: &Path, bytes: &[u8], executable: bool) -> Result<(), Diagnostics> {
    let fail = |e: std::io::Error| -> Diagnostics {
        Diagnostic::new(Code::CR026, format!("cannot write `{}`: {e}", path.display()))
            .at(Location::Path(path.to_path_buf()))
            .hint("check that the directory is writable")
            .into()
    };
    fs_err::create_dir_all(path.parent().unwrap_or(Path::new("."))).map_err(fail)?;
    crate::cache::write_atomic_mode(path, bytes, if executable { 0o755 } else { 0o644 }).map_err(fail)?;
    Ok(())
}
