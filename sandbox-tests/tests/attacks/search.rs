//! Attacks on the host's native search (`cleanroom:plugin/search`, used by
//! forbid-pattern): a check that searches is confined to its own mounts
//! exactly as its WASI reads are. Symlinks out of a mount (to the holdout,
//! to a file outside the workspace), include globs that climb, and `.git`
//! and the run directory inside a mount are never searched. Each case has a
//! control: the same marker in a file the check may read is found.

use sandbox_tests::{cleanroom_binary, Workspace};

use super::{case, Case};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case("search the holdout through symlinks out of the mount (host search)", search_through_symlinks),
        case("search outside the mount with climbing include globs (host search)", search_with_climbing_globs),
        case("slip a huge file past a size check narrowed to it (run --files)", narrowed_size_check),
    ]
}

/// The first-party forbid-pattern plugin (it searches through the host).
fn forbid_pattern() -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist/forbid_pattern.wasm");
    assert!(path.is_file(), "{} is missing: run scripts/build-plugins first", path.display());
    path
}

/// A forbid-pattern check over `src` looking for `marker`, through the
/// CLI; its findings' messages.
fn search(ws: &Workspace, marker: &str, include: &str) -> Vec<String> {
    let pipeline = format!(
        "[pipeline]\nname = \"search\"\n[plugins]\nfp = {:?}\n[barrier]\nholdout = [\"scenarios\"]\n\n\
         [check.scan]\nplugin = \"fp\"\nread = [\"src\"]\nconfig = {{ patterns = ['{marker}'], include = {include} }}\n",
        forbid_pattern().display().to_string()
    );
    ws.file("pipeline.toml", &pipeline);
    let out = std::process::Command::new(cleanroom_binary())
        .args(["run", "--no-cache", "--format", "json", "pipeline.toml"])
        .current_dir(ws.root())
        .output()
        .expect("run cleanroom");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    let scan = &report["steps"][0];
    assert!(scan["status"] == "passed" || scan["status"] == "failed", "{scan}");
    scan["findings"]
        .as_array()
        .map(|all| all.iter().map(|f| format!("{} {}", f["path"], f["message"])).collect())
        .unwrap_or_default()
}

/// The attacker's goal: a stage (or the work under review) left symlinks in
/// `src` pointing at the holdout, so a check whose findings feed a retry
/// would quote the scenarios (its findings carry the matched text).
fn search_through_symlinks() {
    let ws = Workspace::new();
    let marker = format!("HOLDOUT-{}", std::process::id());
    ws.file("scenarios/secret.md", &format!("expect {marker}\n")).file("src/ok.rs", "fn ok() {}\n");
    std::os::unix::fs::symlink(ws.root().join("scenarios"), ws.root().join("src/dir")).unwrap();
    std::os::unix::fs::symlink(ws.root().join("scenarios/secret.md"), ws.root().join("src/file.md")).unwrap();
    std::os::unix::fs::symlink("../scenarios/secret.md", ws.root().join("src/relative.md")).unwrap();
    let found = search(&ws, &marker, "[]");
    assert!(found.is_empty(), "the search followed a symlink out of the mount: {found:?}");
    // Control: the same marker in a file of the mount is found.
    ws.file("src/mine.rs", &format!("// {marker}\n"));
    let found = search(&ws, &marker, "[]");
    assert_eq!(found.len(), 1, "control: the marker in the mount was not found: {found:?}");
}

/// The attacker's goal: include globs that name paths above the mount
/// (`../scenarios/*`, `/scenarios/**`, `**`) make the host walk outside it.
fn search_with_climbing_globs() {
    let ws = Workspace::new();
    let marker = format!("HOLDOUT-{}", std::process::id());
    ws.file("scenarios/secret.md", &format!("expect {marker}\n")).file("src/ok.rs", "fn ok() {}\n");
    ws.file(".git/config", &format!("[x]\n\ty = {marker}\n"));
    for include in ["['../scenarios/*']", "['/scenarios/**']", "['**']", "['../**/*.md', '../../**']"] {
        let found = search(&ws, &marker, include);
        assert!(found.is_empty(), "include {include} reached outside the mount: {found:?}");
    }
    ws.file("src/mine.md", &format!("{marker}\n"));
    let found = search(&ws, &marker, "['**']");
    assert_eq!(found.len(), 1, "control: the marker in the mount was not found: {found:?}");
}

/// The attacker's goal: a check narrowed to the staged files (`run
/// --files`, the pre-commit hook) gets one-file mounts; a plugin that walks
/// only directories would see nothing and pass the huge file it is there
/// to stop.
fn narrowed_size_check() {
    let ws = Workspace::new();
    let plugin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist/max_file_size.wasm");
    assert!(plugin.is_file(), "{} is missing: run scripts/build-plugins first", plugin.display());
    ws.file("small.txt", "ok\n").file("big.bin", &"x".repeat(8192));
    ws.file(
        "pipeline.toml",
        &format!(
            "[pipeline]\nname = \"size\"\n[plugins]\nsize = {:?}\n[check.size]\nplugin = \"size\"\nread = [\".\"]\n\
             include = [\"*\"]\nconfig = {{ max = \"1KiB\" }}\n",
            plugin.display().to_string()
        ),
    );
    for files in [&["big.bin"][..], &["small.txt", "big.bin"][..]] {
        let mut args = vec!["run", "--no-cache", "--format", "json", "pipeline.toml", "--files"];
        args.extend(files);
        let out = std::process::Command::new(cleanroom_binary())
            .args(&args)
            .current_dir(ws.root())
            .output()
            .expect("run cleanroom");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("no JSON report ({e}): {}", String::from_utf8_lossy(&out.stderr)));
        let size = &report["steps"][0];
        assert_eq!(size["status"], "failed", "the narrowed size check let big.bin through: {size}");
        assert!(size.to_string().contains("big.bin"), "failed, but not for big.bin: {size}");
    }
}
