//! Attacks on git's directory and on running over some files: a stage that
//! plants a hook or a config in `.git` (code the user's next git command
//! would run outside every jail), a check that reads a repository's config
//! or history, a commit meant to invalidate every cached step, a file
//! selection (`run --files`) that would widen what a step sees or drop a
//! gate something needs, and a secret committed past the installed
//! pre-commit hook.
//!
//! Each case has a control that fails when the attack did not really happen
//! (the hook was really written inside the stage, the check really ran and
//! saw its granted files, the cache really answers, the hook really ran),
//! so none of them passes vacuously. Cases that need `git` say they were
//! skipped when there is none.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

use cleanroom::{RunOptions, RunReport, StepReport, StepStatus};
use sandbox_tests::{cleanroom_binary, findings, step, Workspace};
use serde_json::Value;

use super::{assert_contained, attack, case, output_text as text, Case};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case("plant .git/hooks/pre-commit through a root write mount", plant_hook_through_root_write),
        case("append an fsmonitor command to .git/config through a root write mount", append_to_git_config),
        case("plant a hook in a nested repository's .git through its write mount", plant_hook_in_nested_repository),
        case("plant a .git file or symlink that points git at the attacker's directory", plant_git_pointer),
        case("read .git/config, HEAD and the listing of .git through a root read mount (native)", read_git_native),
        case("read .git/config and HEAD through a root read mount (plugin)", read_git_plugin),
        case("make a commit invalidate a cached check that reads the whole tree", commit_keeps_cached_results),
        case("widen a narrowed step with a selected file outside its mounts (run --files)", narrowing_never_widens),
        case("drop a gate another step needs by selecting no file it is about (run --files)", narrowing_keeps_gates),
        case("commit a secret past the installed pre-commit hook", hook_refuses_a_failing_commit),
        case("select a symlink into .git to read its config (run --files)", selected_symlink_into_git),
        case("write .git/hooks through a symlinked write mount", write_mount_through_symlink_into_git),
    ]
}

/// Variables a test process may inherit (from a git hook running the
/// suite, or a shell) that would point git or the hook elsewhere.
const INHERITED: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_COMMON_DIR",
    "GIT_PREFIX",
    "CLEANROOM",
];

/// `program` in `dir`, blind to the user's and the system's git
/// configuration (a global `core.hooksPath` must not move the hook, a
/// global `commit.gpgsign` must not stop a commit), with an identity for
/// commits, and with the runner's cache in `cache` when given (inherited by
/// the hook's `cleanroom run`).
fn command(program: impl AsRef<OsStr>, dir: &Path, cache: Option<&Path>) -> Command {
    let mut command = Command::new(program);
    command
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "attacker")
        .env("GIT_AUTHOR_EMAIL", "attacker@example.com")
        .env("GIT_COMMITTER_NAME", "attacker")
        .env("GIT_COMMITTER_EMAIL", "attacker@example.com");
    for var in INHERITED {
        command.env_remove(var);
    }
    if let Some(cache) = cache {
        command.env("CLEANROOM_CACHE_DIR", cache);
    }
    command
}

/// `git ARGS` in `dir`.
fn git(dir: &Path, cache: Option<&Path>, args: &[&str]) -> Output {
    command("git", dir, cache).args(args).output().expect("run git")
}

/// `git ARGS` in `dir`, which must succeed.
fn git_ok(dir: &Path, cache: Option<&Path>, args: &[&str]) {
    let out = git(dir, cache, args);
    assert!(out.status.success(), "`git {}` failed:\n{}", args.join(" "), text(&out));
}

/// `cleanroom ARGS` in the workspace, with the runner's cache in `cache`.
fn cli(ws: &Workspace, cache: &Path, args: &[&str]) -> Output {
    command(cleanroom_binary(), &ws.root(), Some(cache)).args(args).output().expect("run cleanroom")
}

/// The JSON report `run --format json` printed.
fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("the report is not JSON ({e}):\n{}", text(output)))
}

/// Step `id` of a JSON report, if the run had it.
fn step_json<'r>(report: &'r Value, id: &str) -> Option<&'r Value> {
    report["steps"].as_array()?.iter().find(|s| s["id"] == id)
}

/// What a step of a JSON report printed.
fn stdout_of(step: &Value) -> &str {
    step["stdout"].as_str().unwrap_or_default()
}

/// Whether `git` can be run; says the case was skipped when not.
fn have_git() -> bool {
    let found = Command::new("git").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        println!("           (skipped: no git on PATH)");
    }
    found
}

/// A workspace that is a git repository (`git init`), or `None` (the case
/// is skipped) when there is no git.
fn repository() -> Option<Workspace> {
    if !have_git() {
        return None;
    }
    let ws = Workspace::new();
    git_ok(&ws.root(), None, &["init", "-q"]);
    assert!(ws.root().join(".git/config").is_file(), "control: `git init` made no .git/config");
    Some(ws)
}

/// Adds a `[secret] token = MARKER` section to the repository's config;
/// returns the marker.
fn plant_config_secret(ws: &Workspace) -> String {
    let marker = format!("GIT-CONFIG-MARKER-{}", std::process::id());
    let config = ws.root().join(".git/config");
    let mut planted = fs_err::read_to_string(&config).unwrap();
    planted.push_str(&format!("[secret]\n\ttoken = {marker}\n"));
    fs_err::write(&config, planted).unwrap();
    let read = git(&ws.root(), None, &["config", "secret.token"]);
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), marker, "control: git does not read the planted secret");
    marker
}

/// [`attack`] for a stage that writes the whole workspace (`write =
/// ["."]`): validation refuses a write mount that covers the pipeline file
/// (it defines the judge), so the pipeline lies in a directory of its own
/// and names `ws` as its workspace. A native `true` check is the bystander.
fn root_write_attack(ws: &Workspace, steps: &str, attacker: &str) -> RunReport {
    let beside = tempfile::tempdir().unwrap();
    let pipeline = beside.path().join("pipeline.toml");
    let toml = format!(
        "[pipeline]\nname = \"attack\"\nworkspace = {:?}\n\n{steps}\n[check.bystander]\nrun = [\"true\"]\n",
        ws.root().display().to_string()
    );
    fs_err::write(&pipeline, toml).unwrap();
    let before = ws.snapshot();
    let plan = cleanroom::Plan::load(&pipeline).unwrap_or_else(|d| panic!("pipeline did not validate:\n{d}"));
    let options = RunOptions { jobs: 2, jail_helper: cleanroom_binary(), cache: false, ..RunOptions::default() };
    let report = cleanroom::run(&plan, &options).unwrap_or_else(|d| panic!("pipeline did not load:\n{d}"));
    assert_contained(&report, attacker);
    assert_eq!(before, ws.snapshot(), "the workspace changed");
    report
}

/// `step` was refused at commit, with nothing committed, for making git's
/// directory `shown` (workspace-relative).
fn refused_for_git(step: &StepReport, shown: &str) {
    assert_eq!(step.status, StepStatus::Error, "{step:?}");
    let reason = step.reason.clone().unwrap_or_default();
    assert!(
        reason.contains(&format!("`{shown}` is git's directory")) && reason.contains("nothing was committed"),
        "{reason}"
    );
}

/// The attacker's goal: a stage allowed to write the whole workspace plants
/// `.git/hooks/pre-commit`, which git runs, outside every jail, at the
/// user's next commit; a normal file beside it must not get through either.
fn plant_hook_through_root_write() {
    let Some(ws) = repository() else { return };
    let script = "if [ -e .git ]; then echo git-visible; else echo git-hidden; fi; echo ok > ok.txt; \
        mkdir -p .git/hooks && printf '#!/bin/sh\\necho pwned\\n' > .git/hooks/pre-commit && \
        chmod +x .git/hooks/pre-commit && test -x .git/hooks/pre-commit && echo planted";
    let report = root_write_attack(
        &ws,
        &format!("[stage.plant]\nrun = [\"sh\", \"-c\", {script:?}, \"sh\"]\nwrite = [\".\"]\n"),
        "plant",
    );
    let plant = step(&report, "plant");
    assert!(plant.stdout.contains("planted"), "control: the hook was not written inside the stage: {plant:?}");
    assert!(plant.stdout.contains("git-hidden"), "the stage's copy held the repository's .git: {}", plant.stdout);
    refused_for_git(plant, ".git");
    assert!(!ws.root().join(".git/hooks/pre-commit").exists(), "the hook was planted");
    assert!(!ws.root().join("ok.txt").exists(), "part of the refused commit was applied");
}

/// The attacker's goal: a stage allowed to write the whole workspace
/// appends `core.fsmonitor = PROGRAM` to `.git/config`, a program git runs
/// at the user's next `git status`.
fn append_to_git_config() {
    let Some(ws) = repository() else { return };
    let config = ws.root().join(".git/config");
    let original = fs_err::read(&config).unwrap();
    let append = "printf '[core]\\n\\tfsmonitor = /tmp/cleanroom-evil\\n' >> .git/config";
    // First on the copy as staged (which has no .git), then on one it makes.
    let script = format!(
        "if [ -e .git ]; then echo git-visible; else echo git-hidden; fi; \
         {append} 2>/dev/null || echo append-failed; \
         mkdir -p .git && {append} && grep -q fsmonitor .git/config && echo appended; echo ok > ok.txt"
    );
    let report = root_write_attack(
        &ws,
        &format!("[stage.configure]\nrun = [\"sh\", \"-c\", {script:?}, \"sh\"]\nwrite = [\".\"]\n"),
        "configure",
    );
    let configure = step(&report, "configure");
    assert!(configure.stdout.contains("appended"), "control: the config was not written inside: {configure:?}");
    assert!(
        configure.stdout.contains("git-hidden") && configure.stdout.contains("append-failed"),
        "the stage's copy held the repository's .git: {}",
        configure.stdout
    );
    refused_for_git(configure, ".git");
    assert_eq!(fs_err::read(&config).unwrap(), original, ".git/config changed");
    assert!(!ws.root().join("ok.txt").exists(), "part of the refused commit was applied");
}

/// The attacker's goal: a stage that may write `vendor` (a nested
/// repository) plants `vendor/.git/hooks/post-checkout`, run by git the
/// next time the user checks out in that repository.
fn plant_hook_in_nested_repository() {
    if !have_git() {
        return;
    }
    let ws = Workspace::new();
    ws.file("vendor/lib.txt", "original");
    git_ok(&ws.root().join("vendor"), None, &["init", "-q"]);
    assert!(ws.root().join("vendor/.git/config").is_file(), "control: `git init` made no vendor/.git");
    let script =
        "if [ -e vendor/.git ]; then echo git-visible; else echo git-hidden; fi; echo patched > vendor/lib.txt; \
        mkdir -p vendor/.git/hooks && printf '#!/bin/sh\\necho pwned\\n' > vendor/.git/hooks/post-checkout && \
        chmod +x vendor/.git/hooks/post-checkout && echo planted";
    let report = attack(
        &ws,
        &[],
        &format!("[stage.vendor]\nrun = [\"sh\", \"-c\", {script:?}, \"sh\"]\nwrite = [\"vendor\"]\n"),
        "vendor",
        &[],
    );
    let vendor = step(&report, "vendor");
    assert!(vendor.stdout.contains("planted"), "control: the hook was not written inside the stage: {vendor:?}");
    assert!(vendor.stdout.contains("git-hidden"), "the stage's copy held vendor/.git: {}", vendor.stdout);
    refused_for_git(vendor, "vendor/.git");
    assert!(!ws.root().join("vendor/.git/hooks/post-checkout").exists(), "the hook was planted");
    assert_eq!(ws.read("vendor/lib.txt"), "original", "part of the refused commit was applied");
}

/// The attacker's goal: no `.git` directory at all, but a `.git` file
/// (`gitdir: PATH`, as a submodule has) or a `.git` symlink, which points
/// git run in that directory at a repository the attacker controls, with
/// its hooks and config.
fn plant_git_pointer() {
    // A `.git` file deep under a root write mount.
    let ws = Workspace::new();
    ws.file("src/main.rs", "fn main() {}");
    let script = "mkdir -p src/deep && printf 'gitdir: /tmp/cleanroom-evil-gitdir\\n' > src/deep/.git && \
        test -f src/deep/.git && echo planted; echo ok > ok.txt";
    let report = root_write_attack(
        &ws,
        &format!("[stage.point]\nrun = [\"sh\", \"-c\", {script:?}, \"sh\"]\nwrite = [\".\"]\n"),
        "point",
    );
    let point = step(&report, "point");
    assert!(point.stdout.contains("planted"), "control: the .git file was not written inside: {point:?}");
    refused_for_git(point, "src/deep/.git");
    assert!(!ws.root().join("ok.txt").exists(), "part of the refused commit was applied");
    // A `.git` symlink in a directory write mount.
    let ws = Workspace::new();
    ws.file("lib/x.txt", "x");
    let script = "ln -s /tmp/cleanroom-evil-gitdir lib/.git && test -L lib/.git && echo planted; echo ok > lib/ok.txt";
    let report = attack(
        &ws,
        &[],
        &format!("[stage.point]\nrun = [\"sh\", \"-c\", {script:?}, \"sh\"]\nwrite = [\"lib\"]\n"),
        "point",
        &[],
    );
    let point = step(&report, "point");
    assert!(point.stdout.contains("planted"), "control: the .git symlink was not made inside: {point:?}");
    refused_for_git(point, "lib/.git");
    assert!(fs_err::symlink_metadata(ws.root().join("lib/.git")).is_err(), "the symlink reached the workspace");
}

/// The attacker's goal: a native check granted the workspace root reads
/// the repository's config (remote URLs with tokens, credentials helpers)
/// and its history, by name, by listing, or by unmounting what covers it.
fn read_git_native() {
    let Some(ws) = repository() else { return };
    let marker = plant_config_secret(&ws);
    ws.file("visible.txt", "visible-control");
    let script = "cat visible.txt; echo; cat .git/config; echo listing:; ls -A .git; echo :end; \
        umount .git; umount -l .git; cat .git/config; cat .git/HEAD";
    let report = attack(
        &ws,
        &[],
        &format!("[check.snoop]\nrun = [\"sh\", \"-c\", {script:?}, \"sh\"]\nread = [\".\"]\n"),
        "snoop",
        &[],
    );
    let snoop = step(&report, "snoop");
    assert!(snoop.stdout.contains("visible-control"), "control: the check could not read its mount: {snoop:?}");
    assert!(snoop.stdout.contains("listing:\n:end"), "`ls -A .git` listed git's files: {}", snoop.stdout);
    let serialized = serde_json::to_string(&report).unwrap();
    assert!(!serialized.contains(&marker), "the repository's config reached the report: {snoop:?}");
    assert!(!serialized.contains("ref: refs/heads"), "the repository's HEAD reached the report: {snoop:?}");
    assert!(!format!("{report:?}").contains(&marker), "the repository's config reached the report");
}

/// The attacker's goal: a plugin check granted the workspace root reads the
/// repository's config and HEAD.
fn read_git_plugin() {
    let Some(ws) = repository() else { return };
    let marker = plant_config_secret(&ws);
    ws.file("visible.txt", "visible-control");
    let report = attack(
        &ws,
        &["read_probe"],
        "[check.snoop]\nplugin = \"read_probe\"\nread = [\".\"]\n\
         config = { paths = [\"/visible.txt\", \"/.git/config\", \"/.git/HEAD\", \"/.git/refs/heads\"] }\n",
        "snoop",
        &[],
    );
    let seen = findings(&report, "snoop");
    assert_eq!(seen.len(), 4, "{seen:?}");
    for (rule, message) in &seen {
        if message.contains("`/visible.txt`") {
            assert!(
                rule == "succeeded" && message.contains("visible-control"),
                "control: the probe could not read its mount: {seen:?}"
            );
        } else {
            assert_eq!(rule, "denied", "{message}");
        }
    }
    let serialized = serde_json::to_string(&report).unwrap();
    assert!(!serialized.contains(&marker), "the repository's config reached the report: {seen:?}");
    assert!(!serialized.contains("ref: refs/heads"), "the repository's HEAD reached the report: {seen:?}");
}

/// The attacker's goal: make every cached result useless (each run redoes
/// everything, so a slow gate gets skipped or the cache turned off) just by
/// committing, when a check reads the whole tree. A commit changes only
/// `.git`, which is no step's input.
fn commit_keeps_cached_results() {
    let Some(ws) = repository() else { return };
    let cache = tempfile::tempdir().unwrap();
    ws.file(".gitignore", ".cleanroom/\n").file("data.txt", "first\n").file(
        "pipeline.toml",
        "[pipeline]\nname = \"git-cache\"\n[check.tree]\nrun = [\"sh\", \"-c\", \"cat data.txt; ls -A\"]\nread = [\".\"]\n",
    );
    let tree = |round: &str| -> Value {
        let ran = cli(&ws, cache.path(), &["run", "pipeline.toml", "--format", "json"]);
        assert_eq!(ran.status.code(), Some(0), "{round}:\n{}", text(&ran));
        let report = json(&ran);
        let found = step_json(&report, "tree").unwrap_or_else(|| panic!("{round}: no step `tree`:\n{}", text(&ran)));
        found.clone()
    };
    let first = tree("the first run");
    assert_eq!(first["cached"], false, "the first run was answered from the cache");
    assert!(stdout_of(&first).contains("first"), "control: the check did not run: {first}");
    // Control: unchanged inputs are answered from the cache.
    assert_eq!(tree("the second run")["cached"], true, "control: the result cache is not in use");
    git_ok(&ws.root(), None, &["add", "-A"]);
    git_ok(&ws.root(), None, &["commit", "-qm", "snapshot"]);
    git_ok(&ws.root(), None, &["rev-parse", "--verify", "HEAD"]);
    assert_eq!(tree("the run after a commit")["cached"], true, "a commit invalidated the cached check");
    // Control: a real change to what it reads is noticed.
    ws.file("data.txt", "second\n");
    let changed = tree("the run after an edit");
    assert_eq!(changed["cached"], false, "control: an edited input was answered from the cache");
    assert!(stdout_of(&changed).contains("second"), "control: the check did not see the edit: {changed}");
}

/// The attacker's goal: name a file outside a step's mounts in `run
/// --files` so the narrowed step is granted it (narrowing replaces a
/// step's mounts with the selected files it is about).
fn narrowing_never_widens() {
    let ws = Workspace::new();
    let cache = tempfile::tempdir().unwrap();
    let secret = format!("NARROW-SECRET-{}", std::process::id());
    let unselected = format!("NARROW-UNSELECTED-{}", std::process::id());
    ws.file("secret.txt", &secret).file("src/a.txt", "selected-content").file("src/b.txt", &unselected);
    ws.file(
        "pipeline.toml",
        "[pipeline]\nname = \"narrow\"\n[check.lint]\n\
         run = [\"sh\", \"-c\", \"cat src/a.txt; echo; cat secret.txt; cat src/b.txt; ls -R .; exit 0\"]\n\
         read = [\"src\"]\ninclude = [\"*\"]\n",
    );
    let ran = cli(
        &ws,
        cache.path(),
        &["run", "pipeline.toml", "--format", "json", "--no-cache", "--files", "secret.txt", "src/a.txt"],
    );
    let out = text(&ran);
    assert_eq!(ran.status.code(), Some(0), "{out}");
    assert!(!out.contains(&secret), "a selected file outside the step's mounts reached it:\n{out}");
    assert!(!out.contains(&unselected), "a file that was not selected reached the narrowed step:\n{out}");
    let report = json(&ran);
    let lint = step_json(&report, "lint").unwrap_or_else(|| panic!("no step `lint`:\n{out}"));
    assert!(stdout_of(lint).contains("selected-content"), "control: the step did not see the selected file:\n{out}");
    // Control: without a selection the step sees its whole mount (so the
    // unselected file was really hidden above), and never the secret.
    let whole = cli(&ws, cache.path(), &["run", "pipeline.toml", "--format", "json", "--no-cache"]);
    let whole_out = text(&whole);
    assert_eq!(whole.status.code(), Some(0), "{whole_out}");
    assert!(whole_out.contains(&unselected), "control: the step does not see its whole mount:\n{whole_out}");
    assert!(!whole_out.contains(&secret), "the step read outside its mounts:\n{whole_out}");
}

/// The attacker's goal: select only files a gate is not about (`run
/// --files README.md`), so the gate is left out and the step that needs it
/// runs, and passes, without it.
fn narrowing_keeps_gates() {
    let ws = Workspace::new();
    let cache = tempfile::tempdir().unwrap();
    ws.file("README.md", "# readme\n").file("src/main.rs", "fn main() {}\n");
    ws.file(
        "pipeline.toml",
        "[pipeline]\nname = \"narrow\"\n\
         [check.gate]\nrun = [\"sh\", \"-c\", \"echo gate-ran; exit 1\"]\nread = [\"src\"]\ninclude = [\"*.rs\"]\n\
         [check.after]\nrun = [\"sh\", \"-c\", \"echo after-ran\"]\nneeds = [\"gate\"]\n\
         [check.loner]\nrun = [\"sh\", \"-c\", \"echo loner-ran\"]\nread = [\"src\"]\ninclude = [\"*.rs\"]\n",
    );
    let ran =
        cli(&ws, cache.path(), &["run", "pipeline.toml", "--format", "json", "--no-cache", "--files", "README.md"]);
    let out = text(&ran);
    let report = json(&ran);
    // Control: narrowing is live: the step nothing needs was left out.
    assert!(
        step_json(&report, "loner").is_none_or(|s| s["status"] == "skipped") && !out.contains("loner-ran"),
        "control: the selection left every step in:\n{out}"
    );
    let gate = step_json(&report, "gate").unwrap_or_else(|| panic!("the gate was left out of the run:\n{out}"));
    assert_eq!(gate["status"], "failed", "{out}");
    assert!(stdout_of(gate).contains("gate-ran"), "the gate did not run:\n{out}");
    let after = step_json(&report, "after").unwrap_or_else(|| panic!("no step `after`:\n{out}"));
    assert_eq!(after["status"], "skipped", "a step ran without the gate it needs:\n{out}");
    assert_eq!(report["status"], "failed", "{out}");
    assert_eq!(ran.status.code(), Some(1), "{out}");
}

/// The attacker's goal: commit a secret although the installed pre-commit
/// hook runs a check that refuses it (on the staged files, as narrowed).
fn hook_refuses_a_failing_commit() {
    let Some(ws) = repository() else { return };
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Some(cache_dir.path());
    let root = ws.root();
    // `SECRET-""MARKER` is `SECRET-MARKER` to the shell, but not in the
    // pipeline file, which the check may see too. With `-q` a match exits 0
    // even when another entry could not be read (`! grep` would then pass).
    // The files it is about come as arguments (`include`), as pre-commit passes them.
    let script = "grep -qs SECRET-\"\"MARKER \"$@\" && { echo found-secret; exit 1; }; exit 0";
    ws.file(".gitignore", ".cleanroom/\n").file(
        "pipeline.toml",
        &format!(
            "[pipeline]\nname = \"hook\"\n[check.no-secrets]\nrun = [\"sh\", \"-c\", {script:?}, \"sh\"]\nread = [\".\"]\ninclude = [\"*\"]\n"
        ),
    );
    assert!(!ws.read("pipeline.toml").contains("SECRET-MARKER"), "the pipeline holds the marker itself");
    git_ok(&root, cache, &["add", "pipeline.toml", ".gitignore"]);
    git_ok(&root, cache, &["commit", "-qm", "init"]);
    let installed = cli(&ws, cache_dir.path(), &["install", "pipeline.toml"]);
    assert!(installed.status.success(), "{}", text(&installed));
    let hook = fs_err::read_to_string(root.join(".git/hooks/pre-commit")).unwrap();
    assert!(hook.contains("run --staged"), "{hook}");
    // The attack.
    ws.file("leak.txt", "token = SECRET-MARKER\n");
    git_ok(&root, cache, &["add", "leak.txt"]);
    let commit = git(&root, cache, &["commit", "-qm", "leak-commit"]);
    assert!(!commit.status.success(), "the hook let a commit with the secret through:\n{}", text(&commit));
    assert!(
        text(&commit).contains("no-secrets"),
        "control: the commit was refused, but not by the hook:\n{}",
        text(&commit)
    );
    let log = String::from_utf8_lossy(&git(&root, cache, &["log", "--format=%s"]).stdout).into_owned();
    assert!(log.contains("init") && !log.contains("leak-commit"), "{log}");
    // Control: once clean, the same commit goes through the hook.
    ws.file("leak.txt", "token = none\n");
    git_ok(&root, cache, &["add", "leak.txt"]);
    let commit = git(&root, cache, &["commit", "-qm", "clean-commit"]);
    assert!(commit.status.success(), "control: the hook refused a clean commit:\n{}", text(&commit));
    let log = String::from_utf8_lossy(&git(&root, cache, &["log", "--format=%s"]).stdout).into_owned();
    assert!(log.contains("clean-commit") && !log.contains("leak-commit"), "{log}");
}

/// The attacker's goal: commit `innocent.txt -> .git/config` and have the
/// hook run on it, so a narrowed check reads the repository's config
/// (through the file mount the selection makes), where a whole mount shows
/// an empty stand-in.
fn selected_symlink_into_git() {
    let Some(ws) = repository() else { return };
    let marker = plant_config_secret(&ws);
    let cache = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(ws.root().join(".git/config"), ws.root().join("innocent.txt")).unwrap();
    ws.file("plain.txt", "plain-content");
    ws.file(
        "pipeline.toml",
        "[pipeline]\nname = \"narrow\"\n[check.lint]\nrun = [\"sh\", \"-c\", \"cat \\\"$@\\\"; exit 0\", \"sh\"]\n\
         read = [\".\"]\ninclude = [\"*.txt\"]\n",
    );
    for selection in [&["innocent.txt", "plain.txt"][..], &[".git/config", "plain.txt"][..]] {
        let mut args = vec!["run", "pipeline.toml", "--format", "json", "--no-cache", "--files"];
        args.extend(selection);
        let ran = cli(&ws, cache.path(), &args);
        let out = text(&ran);
        assert!(!out.contains(&marker), "the selection handed the step git's config:\n{out}");
        let report = json(&ran);
        let lint = step_json(&report, "lint").unwrap_or_else(|| panic!("no step `lint`:\n{out}"));
        assert!(stdout_of(lint).contains("plain-content"), "control: the step did not see the selected file:\n{out}");
    }
}

/// The attacker's goal: a write mount whose path is a symlink into `.git`
/// (`hooks -> .git/hooks`, committed by an earlier change), so a stage's
/// ordinary-looking writes land in git's hooks and run outside every jail.
fn write_mount_through_symlink_into_git() {
    let Some(ws) = repository() else { return };
    std::os::unix::fs::symlink(ws.root().join(".git/hooks"), ws.root().join("hooks")).unwrap();
    let plan = ws.plan(
        &[],
        "[stage.plant]\nrun = [\"sh\", \"-c\", \"echo 'curl evil' > hooks/pre-commit\"]\nwrite = [\"hooks\"]\n",
    );
    let Err(diags) = plan else { panic!("a write mount into .git through a symlink was planned") };
    let text = diags.to_string();
    assert!(text.contains("git's directory"), "refused, but not for git's directory: {text}");
    assert!(!ws.root().join(".git/hooks/pre-commit").exists());
}
