//! Plugins shared through a real OCI registry: Debian's `docker-registry`
//! on loopback (started by `scripts/registry`), and `wkg` (crates.io,
//! installed by `scripts/registry install`) on the other side.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{cleanroom_with_env, component, files_under, repo, Ran, Workspace};

/// A registry of its own, stopped when dropped.
struct Registry {
    _dir: tempfile::TempDir,
    state: PathBuf,
    address: String,
}

impl Registry {
    fn start(account: Option<&str>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("registry");
        let mut command = Command::new(repo().join("scripts/registry"));
        command.arg("start").arg(&state);
        if let Some(account) = account {
            command.args(["--htpasswd", account]);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "scripts/registry start failed (run `scripts/registry install`): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let address = String::from_utf8(out.stdout).unwrap().trim().to_string();
        Registry { _dir: dir, state, address }
    }

    fn stop(&self) {
        let _ = Command::new(repo().join("scripts/registry")).arg("stop").arg(&self.state).status();
    }

    /// The blob file the registry keeps for `digest` (`sha256:<hex>`).
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.state.join("data/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `wkg`, as `scripts/registry install` put it.
fn wkg() -> PathBuf {
    let path = repo().join(".tools/wkg/bin/wkg");
    assert!(path.is_file(), "{} is missing: run scripts/registry install", path.display());
    path
}

fn wkg_run(args: &[&str]) {
    let out = Command::new(wkg()).args(args).env("DOCKER_CONFIG", "/nonexistent").output().unwrap();
    assert!(out.status.success(), "wkg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs cleanroom with a cache of its own (`cache`).
fn cr(cwd: &Path, cache: &Path, args: &[&str]) -> Ran {
    cleanroom_with_env(
        cwd,
        args,
        &[("CLEANROOM_CACHE_DIR", cache.as_os_str()), ("DOCKER_CONFIG", OsStr::new("/nonexistent"))],
    )
}

fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{text}"))
}

/// The project directory [`pipeline`] writes.
fn project(ws: &Workspace) -> PathBuf {
    ws.path().join("p")
}

/// A workspace with one file with a `FIXME` and a pipeline whose checks use
/// `plugins` (`[plugins]` lines).
/// The project lives in `p/`, so the caches beside it are outside its workspace.
fn pipeline(ws: &Workspace, plugins: &str, extra: &str) {
    ws.file("p/src/a.txt", "fine\nFIXME here\n");
    ws.file(
        "p/pipeline.toml",
        &format!(
            "[pipeline]\nname = \"shared\"\n[plugins]\n{plugins}\n\
             [check.fixme]\nplugin = \"forbid\"\nread = [\"src\"]\nconfig = {{ patterns = ['FIXME'], message = \"no FIXME\" }}\n{extra}"
        ),
    );
}

#[test]
fn what_cleanroom_pushes_wkg_pulls_byte_identical_and_what_wkg_pushes_cleanroom_runs() {
    let registry = Registry::start(None);
    let ws = Workspace::new();
    let cache = ws.path().join("cache");
    let a = &registry.address;
    let forbid = component("forbid_pattern");
    let reference = format!("{a}/tools/forbid-pattern:1.0.0");
    let pushed = cr(
        ws.path(),
        &cache,
        &[
            "plugin",
            "push",
            &forbid,
            &reference,
            "--description",
            "Forbids patterns",
            "--source",
            "https://example.org/src",
        ],
    );
    assert_eq!(pushed.code, 0, "{pushed:?}");
    let manifest = field(&pushed.stdout, "manifest").to_string();

    // wkg pulls it, byte for byte.
    let out = ws.path().join("pulled.wasm");
    wkg_run(&["oci", "pull", "--insecure", a, &reference, "-o", out.to_str().unwrap()]);
    assert_eq!(fs_err::read(&out).unwrap(), fs_err::read(&forbid).unwrap(), "wkg pulled other bytes");

    // A reviewer reads it without running it.
    let inspected = cr(ws.path(), &cache, &["plugin", "inspect", &reference]);
    assert_eq!(inspected.code, 0, "{inspected:?}");
    for expected in [
        "world     check",
        "contract  cleanroom:plugin@",
        "sdk       0.1.0",
        "org.opencontainers.image.description = Forbids patterns",
        "org.opencontainers.image.source = https://example.org/src",
        "dev.cleanroom.world = check",
        "dev.cleanroom.sdk = 0.1.0",
        &format!("manifest  {manifest}"),
    ] {
        assert!(inspected.stdout.contains(expected), "`{expected}` missing:\n{}", inspected.stdout);
    }
    let json = cr(ws.path(), &cache, &["plugin", "inspect", &reference, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["origin"]["manifest"], manifest.as_str());

    // wkg pushes another plugin; a pipeline runs both from the registry.
    let maxsize = format!("{a}/tools/max-file-size:2.0.0");
    wkg_run(&["oci", "push", "--insecure", a, &maxsize, &component("max_file_size")]);
    pipeline(
        &ws,
        &format!("forbid = {{ oci = \"{a}/tools/forbid-pattern@{manifest}\" }}\nsize = {{ oci = \"{maxsize}\" }}"),
        "[check.size]\nplugin = \"size\"\nread = [\"src\"]\nconfig = { max = \"1KiB\" }\n",
    );
    let ran = cr(&project(&ws), &cache, &["run", "--format", "json", "pipeline.toml"]);
    assert_eq!(ran.code, 1, "the FIXME is found: {ran:?}");
    let report = ran.json();
    let steps = report["steps"].as_array().unwrap();
    let status = |id: &str| steps.iter().find(|s| s["id"] == id).unwrap()["status"].as_str().unwrap().to_string();
    assert_eq!((status("fixme").as_str(), status("size").as_str()), ("failed", "passed"));
}

#[test]
fn a_tag_moved_after_locking_is_refused_under_locked_with_both_digests() {
    let registry = Registry::start(None);
    let ws = Workspace::new();
    let a = &registry.address;
    let reference = format!("{a}/evals/forbid:stable");
    let first = cr(ws.path(), &ws.path().join("c0"), &["plugin", "push", &component("forbid_pattern"), &reference]);
    assert_eq!(first.code, 0, "{first:?}");
    let locked_manifest = field(&first.stdout, "manifest").to_string();
    pipeline(&ws, &format!("forbid = {{ oci = \"{reference}\" }}"), "");
    let warm = ws.path().join("warm");
    let lock = cr(&project(&ws), &warm, &["lock", "pipeline.toml"]);
    assert_eq!(lock.code, 0, "{lock:?}");
    let lock_text = fs_err::read_to_string(project(&ws).join("cleanroom.lock")).unwrap();
    assert!(lock_text.contains(&locked_manifest), "{lock_text}");
    assert_eq!(
        cr(&project(&ws), &warm, &["run", "--locked", "pipeline.toml"]).code,
        1,
        "control: the locked plugin runs"
    );

    // Someone publishes other bytes under the same tag.
    let moved = cr(ws.path(), &ws.path().join("c0"), &["plugin", "push", &component("required_files"), &reference]);
    let new_manifest = field(&moved.stdout, "manifest").to_string();
    assert_ne!(new_manifest, locked_manifest);

    // A fresh machine asks the registry, sees the tag moved, refuses.
    let cold = cr(&project(&ws), &ws.path().join("cold"), &["run", "--locked", "pipeline.toml"]);
    assert_eq!(cold.code, 2, "{cold:?}");
    for expected in [locked_manifest.as_str(), new_manifest.as_str(), "cleanroom lock", "CR025", "moved"] {
        assert!(cold.stderr.contains(expected), "`{expected}` missing:\n{}", cold.stderr);
    }
    // A warm cache that has been told (`plugin pull`) refuses too.
    assert_eq!(cr(ws.path(), &warm, &["plugin", "pull", &reference]).code, 0);
    let told = cr(&project(&ws), &warm, &["run", "--locked", "pipeline.toml"]);
    assert_eq!(told.code, 2, "{told:?}");
    assert!(told.stderr.contains(&new_manifest) && told.stderr.contains(&locked_manifest), "{}", told.stderr);
    // Accepting the change is one command.
    assert_eq!(cr(&project(&ws), &warm, &["lock", "pipeline.toml"]).code, 0);
    let relocked = cr(&project(&ws), &warm, &["run", "--locked", "pipeline.toml"]);
    assert_ne!(relocked.code, 2, "{relocked:?}");
}

#[test]
fn a_registry_that_serves_other_bytes_is_refused_and_nothing_is_cached() {
    let registry = Registry::start(None);
    let ws = Workspace::new();
    let a = &registry.address;
    let reference = format!("{a}/evals/forbid:1");
    let pushed = cr(ws.path(), &ws.path().join("c0"), &["plugin", "push", &component("forbid_pattern"), &reference]);
    let digest = field(&pushed.stdout, "component").to_string();
    // The registry's storage is tampered with: one byte of the component.
    let blob = registry.blob_file(&digest);
    let mut bytes = fs_err::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs_err::write(&blob, &bytes).unwrap();

    pipeline(&ws, &format!("forbid = {{ oci = \"{reference}\" }}"), "");
    let cache = ws.path().join("cache");
    let ran = cr(&project(&ws), &cache, &["run", "pipeline.toml"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("CR038") && ran.stderr.contains("other bytes"), "{}", ran.stderr);
    assert!(ran.stderr.contains("pipeline.toml:4:"), "points at the entry: {}", ran.stderr);
    let cached = files_under(&cache.join("oci/blobs"));
    assert!(cached.is_empty(), "tampered bytes were cached: {cached:?}");
    let inspected = cr(ws.path(), &cache, &["plugin", "pull", &reference]);
    assert_eq!(inspected.code, 2, "{inspected:?}");
}

#[test]
fn with_a_warm_cache_a_run_needs_no_registry_and_no_network() {
    let registry = Registry::start(None);
    let ws = Workspace::new();
    let cache = ws.path().join("cache");
    let a = registry.address.clone();
    let reference = format!("{a}/evals/forbid:1");
    assert_eq!(cr(ws.path(), &cache, &["plugin", "push", &component("forbid_pattern"), &reference]).code, 0);
    pipeline(&ws, &format!("forbid = {{ oci = \"{reference}\" }}"), "");
    assert_eq!(cr(&project(&ws), &cache, &["lock", "pipeline.toml"]).code, 0);
    assert_eq!(cr(&project(&ws), &cache, &["run", "pipeline.toml"]).code, 1, "control: runs, finds the FIXME");
    registry.stop();
    for args in [&["run", "pipeline.toml"][..], &["run", "--locked", "pipeline.toml"]] {
        let ran = cr(&project(&ws), &cache, args);
        assert_eq!(ran.code, 1, "{args:?} with the registry down: {ran:?}");
    }
    // No network at all: a network namespace with nothing in it.
    let unshare = Command::new("unshare").args(["-rn", "true"]).status().is_ok_and(|s| s.success());
    if unshare {
        let out = Command::new("unshare")
            .args(["-rn", env!("CARGO_BIN_EXE_cleanroom"), "run", "--locked", "pipeline.toml"])
            .current_dir(project(&ws))
            .env("CLEANROOM_CACHE_DIR", &cache)
            .env("DOCKER_CONFIG", "/nonexistent")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "offline: {}", String::from_utf8_lossy(&out.stderr));
    }
    // A cold cache with the registry down says what is wrong, exit 2.
    let cold = cr(&project(&ws), &ws.path().join("cold"), &["run", "pipeline.toml"]);
    assert_eq!(cold.code, 2, "{cold:?}");
    assert!(cold.stderr.contains("CR038") && cold.stderr.contains("cannot connect"), "{}", cold.stderr);
}

#[test]
fn a_private_registry_takes_its_password_from_secrets_and_no_byte_of_it_is_shown() {
    let password = format!("pw-{}", uuid_like());
    let registry = Registry::start(Some(&format!("ci:{password}")));
    let ws = Workspace::new();
    let cache = ws.path().join("cache");
    let a = &registry.address;
    let reference = format!("{a}/private/forbid:1");
    let mut outputs: Vec<String> = Vec::new();

    // Anonymous push is refused with a hint; with the account it works.
    let anonymous = cr(ws.path(), &cache, &["plugin", "push", &component("forbid_pattern"), &reference]);
    assert_eq!(anonymous.code, 2, "{anonymous:?}");
    assert!(anonymous.stderr.contains("401"), "{}", anonymous.stderr);
    let push = Command::new(env!("CARGO_BIN_EXE_cleanroom"))
        .args(["plugin", "push", &component("forbid_pattern"), &reference, "--username", "ci", "--password-stdin"])
        .env("CLEANROOM_CACHE_DIR", &cache)
        .env("DOCKER_CONFIG", "/nonexistent")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(push.status.success(), "{}", String::from_utf8_lossy(&push.stderr));
    outputs.push(String::from_utf8_lossy(&push.stdout).into_owned() + &String::from_utf8_lossy(&push.stderr));

    let registries = format!(
        "[registries.\"{a}\"]\nusername = \"ci\"\npassword_secret = \"REGISTRY_PASSWORD\"\n\
         [secrets]\nREGISTRY_PASSWORD = {{ env = \"CI_REGISTRY_PASSWORD\" }}\n"
    );
    pipeline(&ws, &format!("forbid = {{ oci = \"{reference}\" }}"), &registries);
    let with = |value: &str, args: &[&str]| {
        cleanroom_with_env(
            &project(&ws),
            args,
            &[
                ("CLEANROOM_CACHE_DIR", cache.as_os_str()),
                ("DOCKER_CONFIG", OsStr::new("/nonexistent")),
                ("CI_REGISTRY_PASSWORD", OsStr::new(value)),
            ],
        )
    };
    // A wrong password is refused, and neither password is shown.
    let wrong = with("not-the-password-at-all", &["run", "pipeline.toml"]);
    assert_eq!(wrong.code, 2, "{wrong:?}");
    assert!(wrong.stderr.contains("refused the credentials"), "{}", wrong.stderr);
    assert!(!wrong.stderr.contains("not-the-password-at-all"), "{}", wrong.stderr);
    for args in
        [&["lock", "pipeline.toml"][..], &["run", "pipeline.toml"], &["run", "--format", "json", "pipeline.toml"]]
    {
        let ran = with(&password, args);
        assert_ne!(ran.code, 2, "{args:?}: {ran:?}");
        outputs.push(ran.stdout + &ran.stderr);
    }
    // Docker's config.json is read too, as `docker login` writes it.
    let docker = ws.path().join("docker");
    fs_err::create_dir_all(&docker).unwrap();
    fs_err::write(
        docker.join("config.json"),
        format!("{{\"auths\":{{\"{a}\":{{\"auth\":\"{}\"}}}}}}", base64_of(&format!("ci:{password}"))),
    )
    .unwrap();
    let fresh = ws.path().join("fresh-cache");
    let pulled = cleanroom_with_env(
        ws.path(),
        &["plugin", "pull", &reference],
        &[("CLEANROOM_CACHE_DIR", fresh.as_os_str()), ("DOCKER_CONFIG", docker.as_os_str())],
    );
    assert_eq!(pulled.code, 0, "{pulled:?}");
    outputs.push(pulled.stdout + &pulled.stderr);
    let ran = with(&password, &["report", "--format", "html"]);
    outputs.push(ran.stdout + &ran.stderr);
    for file in files_under(&project(&ws)) {
        outputs.push(String::from_utf8_lossy(&fs_err::read(&file).unwrap()).into_owned());
    }
    let encoded = base64_of(&format!("ci:{password}"));
    for (i, text) in outputs.iter().enumerate() {
        assert!(!text.contains(&password), "output {i} holds the password");
        assert!(!text.contains(&encoded), "output {i} holds the encoded password");
    }
}

/// A random-enough suffix (the test's own process id and time).
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}-{nanos}-Zq7", std::process::id())
}

fn base64_of(text: &str) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn oci_entries_that_cannot_be_used_are_refused_with_where_and_what_to_do() {
    let ws = Workspace::new();
    let cache = ws.path().join("cache");
    for (entry, code, words) in [
        ("forbid = { oci = \"forbid:1.0\" }", "CR038", "names no registry"),
        ("forbid = { oci = \"localhost:5000/../etc:1\" }", "CR038", "repository"),
        ("forbid = { oci = \"localhost:5000/a\" }", "CR038", "neither a tag nor a digest"),
        ("forbid = { oci = \"localhost:5000/a:1\", path = \"x.wasm\" }", "CR002", "no other keys"),
        ("forbid = { oci = \"127.0.0.1:9/a:1\" }", "CR038", "cannot connect"),
    ] {
        pipeline(&ws, entry, "");
        let ran = cr(&project(&ws), &cache, &["run", "pipeline.toml"]);
        assert_eq!(ran.code, 2, "{entry}: {ran:?}");
        assert!(ran.stderr.contains(code) && ran.stderr.contains(words), "{entry}: {}", ran.stderr);
        assert!(ran.stderr.contains("pipeline.toml:4:"), "{entry}: {}", ran.stderr);
    }
    let registries = "[registries.\"localhost:5000\"]\nusername = \"ci\"\npassword_secret = \"NOPE\"\n";
    pipeline(&ws, "forbid = { oci = \"localhost:5000/a:1\" }", registries);
    let ran = cr(&project(&ws), &cache, &["run", "pipeline.toml"]);
    assert!(ran.code == 2 && ran.stderr.contains("names no [secrets] entry"), "{ran:?}");
}

#[test]
fn a_sha256_pin_that_the_registry_does_not_match_is_refused() {
    let registry = Registry::start(None);
    let ws = Workspace::new();
    let cache = ws.path().join("cache");
    let reference = format!("{}/evals/forbid:1", registry.address);
    assert_eq!(cr(ws.path(), &cache, &["plugin", "push", &component("forbid_pattern"), &reference]).code, 0);
    let wrong = "0".repeat(64);
    pipeline(&ws, &format!("forbid = {{ oci = \"{reference}\", sha256 = \"{wrong}\" }}"), "");
    let ran = cr(&project(&ws), &cache, &["run", "pipeline.toml"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("CR013") && ran.stderr.contains(&wrong), "{}", ran.stderr);
}

#[test]
fn the_first_party_plugins_are_published_by_a_script_and_a_scaffold_says_how_to_publish() {
    let registry = Registry::start(None);
    let ws = Workspace::new();
    let cache = ws.path().join("cache");
    let prefix = format!("{}/cleanroom", registry.address);
    let out = Command::new(repo().join("scripts/publish-plugins"))
        .args([&prefix, "9.9.9"])
        .env("CLEANROOM", env!("CARGO_BIN_EXE_cleanroom"))
        .env("CLEANROOM_CACHE_DIR", &cache)
        .env("DOCKER_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pins = String::from_utf8(out.stdout).unwrap();
    let dist = fs_err::read_dir(repo().join("plugins/dist")).unwrap().count();
    assert_eq!(pins.lines().count(), dist, "one pin per plugin:\n{pins}");
    let inspected = cr(ws.path(), &cache, &["plugin", "inspect", &format!("{prefix}/scenario-runner:9.9.9")]);
    assert!(inspected.stdout.contains("world     evaluator"), "{inspected:?}");
    assert!(inspected.stdout.contains("runs the subject program"), "its description: {inspected:?}");

    let new = cr(ws.path(), &cache, &["plugin", "new", "no-todo", "--kind", "check", "--lang", "python"]);
    assert!(new.stdout.contains("cleanroom plugin push no-todo.wasm"), "{new:?}");
    let note = fs_err::read_to_string(ws.path().join("no-todo/PUBLISH.md")).unwrap();
    assert!(note.contains("cleanroom plugin push no-todo.wasm") && note.contains("check plugin"), "{note}");
}
