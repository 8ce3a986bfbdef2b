//! Pipeline text -> manifest -> validated plan: must never panic or hang,
//! and every problem must render as a diagnostic.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use cleanroom::diag::SourceMap;
use cleanroom::manifest::Manifest;
use cleanroom::plan::Plan;
use libfuzzer_sys::fuzz_target;

/// A small workspace the plans resolve against (made once per process).
fn workspace() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cleanroom-fuzz-{}", std::process::id()));
        for sub in ["src", "scenarios", "out", "docs"] {
            let _ = std::fs::create_dir_all(dir.join(sub));
        }
        let _ = std::fs::write(dir.join("src/main.rs"), "fn main() {}");
        let _ = std::os::unix::fs::symlink("scenarios", dir.join("link"));
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = workspace().join("pipeline.toml");
    let source = SourceMap::new(&path, text);
    match Manifest::parse(text, &source) {
        Ok(manifest) => {
            if let Err(diags) = Plan::resolve(&manifest, &source) {
                assert!(!diags.render().is_empty());
            }
        }
        Err(diagnostic) => assert!(!diagnostic.render().is_empty()),
    }
});
