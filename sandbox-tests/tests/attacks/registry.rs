//! Attacks through the registry a plugin is pulled from: a hostile server
//! on loopback that speaks the distribution API and lies. A plugin must be
//! exactly the bytes its digests name or nothing; credentials must reach
//! only the registry they are for; what a registry says must not take over
//! a reviewer's terminal.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use cleanroom::oci::artifact::{self, digest_of};
use sandbox_tests::{cleanroom_binary, guest, Workspace};

use super::{case, output_text as text, Case};

/// One request as the hostile registry saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
}

/// What the hostile registry answers.
enum Answer {
    /// Status, headers, body.
    Bytes(u16, Vec<(String, String)>, Vec<u8>),
    /// 200 with `declared` as the length, then bytes until the client hangs up (at most 256 MiB).
    Endless(u64),
    /// 200 with the length of the whole body, then only `sent` of it; the
    /// connection stays open, silent, until the client hangs up.
    Stall { whole: usize, sent: Vec<u8> },
    /// Nothing at all: the request is read and the connection held open,
    /// silent, until the client hangs up.
    Silent,
}

fn ok(body: Vec<u8>) -> Answer {
    Answer::Bytes(200, vec![], body)
}

/// A registry on loopback whose every answer `answer` decides.
struct Hostile {
    address: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Hostile {
    fn start(answer: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, answer) = (log.clone(), answer.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let (method, path) =
                        (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
                    let (mut authorization, mut length) = (None, 0usize);
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                            break;
                        }
                        let (key, value) = header.split_once(':').unwrap_or((&header, ""));
                        match key.trim().to_ascii_lowercase().as_str() {
                            "authorization" => authorization = Some(value.trim().to_string()),
                            "content-length" => length = value.trim().parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    let request = Seen { method, path, authorization };
                    log.lock().unwrap().push(request.clone());
                    let mut stream = stream;
                    match answer(&request) {
                        Answer::Bytes(status, headers, body) => {
                            let mut head = format!(
                                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                                body.len()
                            );
                            for (k, v) in headers {
                                head.push_str(&format!("{k}: {v}\r\n"));
                            }
                            head.push_str("\r\n");
                            let _ = stream.write_all(head.as_bytes());
                            if request.method != "HEAD" {
                                let _ = stream.write_all(&body);
                            }
                        }
                        Answer::Stall { whole, sent } => {
                            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {whole}\r\n\r\n");
                            let _ = stream.write_all(head.as_bytes());
                            let _ = stream.write_all(&sent);
                            let _ = stream.flush();
                            // Blocks until the client hangs up.
                            let _ = stream.read(&mut [0u8; 1]);
                        }
                        Answer::Silent => {
                            let _ = stream.read(&mut [0u8; 1]);
                        }
                        Answer::Endless(declared) => {
                            let head =
                                format!("HTTP/1.1 200 OK\r\ncontent-length: {declared}\r\nconnection: close\r\n\r\n");
                            let _ = stream.write_all(head.as_bytes());
                            let chunk = vec![b'A'; 1 << 16];
                            for _ in 0..4096 {
                                if stream.write_all(&chunk).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        Hostile { address, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A real artifact for guest `name`: (manifest bytes, component bytes).
fn artifact_of(name: &str, annotate: &[(&str, &str)]) -> (Vec<u8>, Vec<u8>) {
    let path = guest(name);
    let info = cleanroom::plugin::inspect(&path).unwrap();
    let built = artifact::build(&info, &format!("{name}.wasm"), &artifact::Metadata::default(), "2026-11-28T00:00:00Z");
    let mut manifest: serde_json::Value = serde_json::from_slice(&built.manifest).unwrap();
    for (key, value) in annotate {
        manifest["annotations"][*key] = serde_json::Value::String((*value).to_string());
    }
    (serde_json::to_vec(&manifest).unwrap(), fs_err::read(path).unwrap())
}

/// A registry that serves `manifest` for every manifest request and
/// `blob` for every blob request.
fn serving(manifest: Vec<u8>, blob: Vec<u8>) -> Hostile {
    Hostile::start(move |request| {
        if request.path.contains("/manifests/") {
            ok(manifest.clone())
        } else if request.path.contains("/blobs/") {
            ok(blob.clone())
        } else {
            Answer::Bytes(404, vec![], vec![])
        }
    })
}

/// `[registries]` for `address`: user `ci`, the password from `REG_PASSWORD`.
fn login(address: &str) -> String {
    format!(
        "[registries.\"{address}\"]\nusername = \"ci\"\npassword_secret = \"REG\"\n\
         [secrets]\nREG = {{ env = \"REG_PASSWORD\" }}\n"
    )
}

/// A workspace whose check `c` runs plugin `p` from `reference`, and a
/// cache directory outside it.
fn pipeline(reference: &str, extra: &str) -> (Workspace, tempfile::TempDir) {
    let ws = Workspace::new();
    ws.file("src/a.txt", "x\n").file(
        "pipeline.toml",
        &format!("[pipeline]\nname = \"pulled\"\n[plugins]\np = {{ oci = \"{reference}\" }}\n[check.c]\nplugin = \"p\"\nread = [\"src\"]\n{extra}"),
    );
    (ws, tempfile::tempdir().unwrap())
}

/// `cleanroom ARGS` in `ws` with `cache`, no Docker credentials, and `env`.
fn command(ws: &Workspace, cache: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(cleanroom_binary());
    command
        .args(args)
        .current_dir(ws.root())
        .env("CLEANROOM_CACHE_DIR", cache)
        .env("DOCKER_CONFIG", "/nonexistent")
        .envs(env.iter().copied());
    command
}

fn cleanroom(ws: &Workspace, cache: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(ws, cache, args, env).output().unwrap()
}

/// `cleanroom run pipeline.toml`, killed (and the case failed) if it is
/// still going after four minutes: a run a registry can hold never ends on
/// its own, and the suite must say so rather than hang.
fn cleanroom_or_held(ws: &Workspace, cache: &Path) -> Output {
    let child = command(ws, cache, &["run", "pipeline.toml"], &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(std::time::Duration::from_secs(240)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("the registry held the run for four minutes");
        }
    }
}

/// Every file the cache holds under `oci/blobs`.
fn cached_components(cache: &Path) -> Vec<PathBuf> {
    let dir = cache.join("oci/blobs/sha256");
    fs_err::read_dir(&dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}

/// The run was refused before any step ran: exit 2 with `words`, nothing
/// cached, no run recorded.
fn refused(ws: &Workspace, cache: &Path, out: &Output, words: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{}", text(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for word in words {
        assert!(stderr.contains(word), "`{word}` missing: {}", text(out));
    }
    assert!(cached_components(cache).is_empty(), "bytes were cached: {:?}", cached_components(cache));
    assert!(!ws.root().join(".cleanroom/runs").exists(), "a run started");
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        case("a registry answers a digest-pinned reference with another manifest", || {
            let (pinned, _) = artifact_of("noop", &[]);
            let (other, blob) = artifact_of("write_probe", &[]);
            let registry = serving(other, blob);
            let reference = format!("{}/evals/noop@{}", registry.address, digest_of(&pinned));
            let (ws, cache) = pipeline(&reference, "");
            let out = cleanroom(&ws, cache.path(), &["run", "pipeline.toml"], &[]);
            refused(&ws, cache.path(), &out, &["CR038", "other bytes", &digest_of(&pinned)]);
            assert!(!registry.seen().iter().any(|s| s.path.contains("/blobs/")), "it went on to fetch the component");
        }),
        case("a registry serves a hostile component under an honest manifest", || {
            let (manifest, honest) = artifact_of("noop", &[]);
            // Another component's bytes, cut or padded to the declared size.
            let (_, mut hostile) = artifact_of("write_probe", &[]);
            hostile.resize(honest.len(), 0);
            let registry = serving(manifest, hostile);
            let (ws, cache) = pipeline(&format!("{}/evals/noop:1", registry.address), "");
            let out = cleanroom(&ws, cache.path(), &["run", "pipeline.toml"], &[]);
            refused(&ws, cache.path(), &out, &["CR038", "other bytes", "nothing cached"]);
            let temporaries = fs_err::read_dir(cache.path().join("oci/blobs/sha256")).unwrap().count();
            assert_eq!(temporaries, 0, "a download was left behind");
        }),
        case("a registry streams a component past the size its manifest declares", || {
            let (manifest, _) = artifact_of("noop", &[]);
            let registry = Hostile::start(move |request| {
                if request.path.contains("/manifests/") {
                    ok(manifest.clone())
                } else {
                    Answer::Endless(1 << 40)
                }
            });
            let (ws, cache) = pipeline(&format!("{}/evals/noop:1", registry.address), "");
            let out = cleanroom(&ws, cache.path(), &["run", "pipeline.toml"], &[]);
            refused(&ws, cache.path(), &out, &["CR038", "more than"]);
        }),
        case("a registry goes silent before or in the middle of an answer, to hold the run forever", || {
            let (manifest, blob) = artifact_of("noop", &[]);
            for silent_on in ["manifest", "component"] {
                let (manifest, blob) = (manifest.clone(), blob.clone());
                let registry = Hostile::start(move |request| match (silent_on, request.path.contains("/manifests/")) {
                    ("manifest", true) => Answer::Silent,
                    (_, true) => ok(manifest.clone()),
                    _ => Answer::Stall { whole: blob.len(), sent: blob[..blob.len() / 2].to_vec() },
                });
                let (ws, cache) = pipeline(&format!("{}/evals/noop:1", registry.address), "");
                let out = cleanroom_or_held(&ws, cache.path());
                let says = if silent_on == "manifest" { "did not answer within 30s" } else { "sent nothing for 30s" };
                refused(&ws, cache.path(), &out, &["CR038", says]);
                let temporaries = fs_err::read_dir(cache.path().join("oci/blobs/sha256")).map_or(0, |d| d.count());
                assert_eq!(temporaries, 0, "{silent_on}: a half download was left behind");
            }
        }),
        case("a registry declares a component too large to hold", || {
            let (manifest, blob) = artifact_of("noop", &[]);
            let mut manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
            manifest["layers"][0]["size"] = serde_json::json!(1u64 << 40);
            let registry = serving(serde_json::to_vec(&manifest).unwrap(), blob);
            let (ws, cache) = pipeline(&format!("{}/evals/noop:1", registry.address), "");
            let out = cleanroom(&ws, cache.path(), &["run", "pipeline.toml"], &[]);
            refused(&ws, cache.path(), &out, &["CR038", "limit"]);
            assert!(!registry.seen().iter().any(|s| s.path.contains("/blobs/")), "it asked for the blob anyway");
        }),
        case("a registry serves an image index, a container image or two layers as a plugin", || {
            let (manifest, blob) = artifact_of("noop", &[]);
            let good: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
            let mut index = good.clone();
            index["mediaType"] = "application/vnd.oci.image.index.v1+json".into();
            let mut image = good.clone();
            image["config"]["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
            image["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip".into();
            let mut two = good.clone();
            two["layers"] = serde_json::json!([good["layers"][0], good["layers"][0]]);
            for bad in [index, image, two] {
                let registry = serving(serde_json::to_vec(&bad).unwrap(), blob.clone());
                let (ws, cache) = pipeline(&format!("{}/evals/noop:1", registry.address), "");
                let out = cleanroom(&ws, cache.path(), &["run", "pipeline.toml"], &[]);
                refused(&ws, cache.path(), &out, &["CR038"]);
            }
        }),
        case("a registry redirects the component to another host to collect the credentials", || {
            let (manifest, blob) = artifact_of("noop", &[]);
            let collector = serving(vec![], blob);
            let target = collector.address.clone();
            let registry = Hostile::start(move |request| {
                if request.authorization.is_none() {
                    return Answer::Bytes(401, vec![("www-authenticate".into(), "Basic realm=\"r\"".into())], vec![]);
                }
                if request.path.contains("/manifests/") {
                    ok(manifest.clone())
                } else {
                    let to = format!("http://{target}/storage{}", request.path);
                    Answer::Bytes(307, vec![("location".into(), to)], vec![])
                }
            });
            let password = "s3cret-registry-password";
            let extra = login(&registry.address);
            let (ws, cache) = pipeline(&format!("{}/evals/noop:1", registry.address), &extra);
            let out = cleanroom(&ws, cache.path(), &["run", "pipeline.toml"], &[("REG_PASSWORD", password)]);
            assert!(registry.seen().iter().any(|s| s.authorization.is_some()), "control: the registry got the login");
            let stolen: Vec<Seen> = collector.seen().into_iter().filter(|s| s.authorization.is_some()).collect();
            assert!(stolen.is_empty(), "the other host got credentials: {stolen:?}");
            assert!(!collector.seen().is_empty(), "control: the redirect was followed");
            assert_eq!(out.status.code(), Some(0), "the honest bytes still run: {}", text(&out));
            assert!(!text(&out).contains(password));
        }),
        case("annotations carry terminal escapes and fake lines into the reviewer's terminal", || {
            let (manifest, blob) = artifact_of(
                "noop",
                &[
                    ("org.opencontainers.image.description", "fine\u{1b}]0;owned\u{7}\u{1b}[2J\nworld     evaluator"),
                    ("x\u{1b}[31mkey", "v"),
                ],
            );
            let registry = serving(manifest, blob);
            let (ws, cache) = pipeline("unused/x:1", "");
            let out = cleanroom(
                &ws,
                cache.path(),
                &["plugin", "inspect", &format!("{}/evals/noop:1", registry.address)],
                &[],
            );
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
            assert!(!out.stdout.contains(&0x1b) && !out.stdout.contains(&0x07), "control bytes reached the terminal");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(stdout.lines().filter(|l| l.starts_with("world")).count(), 1, "a faked line: {stdout}");
            assert!(stdout.contains("world     check"), "{stdout}");
        }),
        case("a cached component is swapped for another after it was pulled", || {
            let (manifest, blob) = artifact_of("noop", &[]);
            let digest = digest_of(&blob);
            let registry = serving(manifest, blob);
            let (ws, cache) = pipeline(&format!("{}/evals/noop:1", registry.address), "");
            let first = cleanroom(&ws, cache.path(), &["run", "pipeline.toml"], &[]);
            assert_eq!(first.status.code(), Some(0), "control: {}", text(&first));
            let file = cache.path().join("oci/blobs/sha256").join(digest.trim_start_matches("sha256:"));
            fs_err::write(&file, fs_err::read(guest("write_probe")).unwrap()).unwrap();
            let second = cleanroom(&ws, cache.path(), &["run", "pipeline.toml"], &[]);
            assert_eq!(second.status.code(), Some(0), "{}", text(&second));
            assert_eq!(digest_of(&fs_err::read(&file).unwrap()), digest, "the swapped bytes stayed in the cache");
            let blob_requests = registry.seen().iter().filter(|s| s.path.contains("/blobs/")).count();
            assert_eq!(blob_requests, 2, "the damaged entry was fetched again, not run");
        }),
        case("a tag record planted in the cache points an unpinned plugin at other bytes", || {
            let (honest_manifest, honest) = artifact_of("noop", &[]);
            let (evil_manifest, evil) = artifact_of("write_probe", &[]);
            let (honest_digest, evil_digest) = (digest_of(&honest), digest_of(&evil));
            let registry = Hostile::start(move |request| {
                let path = &request.path;
                if path.ends_with("/manifests/honest") {
                    ok(honest_manifest.clone())
                } else if path.ends_with("/manifests/evil") {
                    ok(evil_manifest.clone())
                } else if path.ends_with(&honest_digest) {
                    ok(honest.clone())
                } else if path.ends_with(&evil_digest) {
                    ok(evil.clone())
                } else {
                    Answer::Bytes(404, vec![], vec![])
                }
            });
            let (ws, cache) = pipeline(&format!("{}/evals/noop:honest", registry.address), "");
            let pull = |tag: &str| {
                cleanroom(
                    &ws,
                    cache.path(),
                    &["plugin", "pull", &format!("{}/evals/noop:{tag}", registry.address)],
                    &[],
                )
            };
            assert_eq!(pull("honest").status.code(), Some(0));
            assert_eq!(pull("evil").status.code(), Some(0), "the other bytes are in the cache too");
            let tags = cache.path().join("oci/tags");
            let record = |tag: &str| {
                let reference = format!("{}/evals/noop:{tag}", registry.address);
                tags.join(digest_of(reference.as_bytes()).trim_start_matches("sha256:"))
            };
            let (honest_record, evil_record) = (record("honest"), record("evil"));
            assert!(honest_record.is_file() && evil_record.is_file(), "control: both tags are remembered");
            let forgeries = [
                fs_err::read(&evil_record).unwrap(),
                format!(
                    "{{\"reference\":\"{}/evals/noop:honest\",\"manifest\":\"{}\"}}",
                    registry.address,
                    digest_of(&artifact_of("write_probe", &[]).0)
                )
                .into_bytes(),
            ];
            for forged in forgeries {
                fs_err::write(&honest_record, forged).unwrap();
                let before = registry.seen().len();
                let out = cleanroom(&ws, cache.path(), &["run", "--format", "json", "pipeline.toml"], &[]);
                assert_eq!(out.status.code(), Some(0), "the honest plugin ran: {}", text(&out));
                assert!(registry.seen().len() > before, "the forged record was believed without asking the registry");
            }
        }),
        case("a sha256 pin written as a path reaches a file outside the cache", || {
            let registry = serving(vec![], vec![]);
            let victim_dir = tempfile::tempdir().unwrap();
            let victim = victim_dir.path().join("victim");
            fs_err::write(&victim, "keep me\n").unwrap();
            let (ws, cache) = pipeline("localhost:1/x:1", "");
            let climb = format!("../../../../../../../..{}", victim.display());
            let toml = format!(
                "[pipeline]\nname = \"pulled\"\n[plugins]\np = {{ oci = \"{}/evals/noop:1\", sha256 = \"{climb}\" }}\n\
                 [check.c]\nplugin = \"p\"\nread = [\"src\"]\n",
                registry.address
            );
            ws.file("pipeline.toml", &toml);
            let out = cleanroom(&ws, cache.path(), &["run", "pipeline.toml"], &[]);
            refused(&ws, cache.path(), &out, &["CR013"]);
            assert_eq!(fs_err::read_to_string(&victim).unwrap(), "keep me\n", "the file was touched");
            assert!(registry.seen().is_empty(), "the registry was asked: {:?}", registry.seen());
        }),
        case("a plugin reference climbs out of its repository on the registry", || {
            let registry = serving(vec![], vec![]);
            for reference in [
                format!("{}/../../v2/_catalog:1", registry.address),
                format!("{}/evals/noop:1?n=1", registry.address),
                format!("{}/evals/noop:1#x", registry.address),
                format!("{}/evals%2F..%2Fx:1", registry.address),
            ] {
                let (ws, cache) = pipeline(&reference, "");
                let out = cleanroom(&ws, cache.path(), &["run", "pipeline.toml"], &[]);
                refused(&ws, cache.path(), &out, &["CR038"]);
            }
            assert!(registry.seen().is_empty(), "the registry was asked: {:?}", registry.seen());
        }),
        case("a registry that uses a token service gets the token, never the password", || {
            let (manifest, blob) = artifact_of("noop", &[]);
            let realm = Arc::new(Mutex::new(String::new()));
            let at = realm.clone();
            let registry = Hostile::start(move |request| {
                if request.path.starts_with("/token?") {
                    return ok(br#"{"token":"issued-token-123"}"#.to_vec());
                }
                if request.authorization.as_deref() != Some("Bearer issued-token-123") {
                    let challenge = format!(
                        "Bearer realm=\"http://{}/token\",service=\"reg\",scope=\"repository:evals/noop:pull\"",
                        at.lock().unwrap()
                    );
                    return Answer::Bytes(401, vec![("www-authenticate".into(), challenge)], vec![]);
                }
                if request.path.contains("/manifests/") {
                    ok(manifest.clone())
                } else {
                    ok(blob.clone())
                }
            });
            *realm.lock().unwrap() = registry.address.clone();
            let password = "token-service-password";
            let extra = login(&registry.address);
            let (ws, cache) = pipeline(&format!("{}/evals/noop:1", registry.address), &extra);
            let out = cleanroom(&ws, cache.path(), &["run", "pipeline.toml"], &[("REG_PASSWORD", password)]);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
            let seen = registry.seen();
            let token = seen.iter().find(|s| s.path.starts_with("/token?")).expect("the token service was asked");
            assert!(token.path.contains("scope=repository%3Aevals%2Fnoop%3Apull"), "{token:?}");
            assert!(token.authorization.as_deref().is_some_and(|a| a.starts_with("Basic ")), "{token:?}");
            for request in seen.iter().filter(|s| !s.path.starts_with("/token?")) {
                let auth = request.authorization.as_deref().unwrap_or("");
                assert!(!auth.starts_with("Basic"), "the password went to the registry itself: {request:?}");
            }
            assert!(seen.iter().any(|s| s.path.contains("/blobs/") && s.authorization.is_some()), "{seen:?}");
        }),
        case("a registry's error message echoes the password back", || {
            let password = "echo-me-back-password";
            let registry = Hostile::start(move |request| {
                let said = request.authorization.clone().unwrap_or_default();
                let body = format!("{{\"errors\":[{{\"message\":\"denied for {said} and {password}\"}}]}}");
                let challenge = vec![("www-authenticate".into(), "Basic realm=\"r\"".into())];
                Answer::Bytes(401, challenge, body.into_bytes())
            });
            let extra = login(&registry.address);
            let (ws, cache) = pipeline(&format!("{}/evals/noop:1", registry.address), &extra);
            let out = cleanroom(&ws, cache.path(), &["run", "pipeline.toml"], &[("REG_PASSWORD", password)]);
            refused(&ws, cache.path(), &out, &["CR038", "401"]);
            let all = text(&out);
            assert!(!all.contains(password), "{all}");
            assert!(!all.contains("Y2k6"), "the encoded login (base64 of `ci:`) leaked: {all}");
        }),
    ]
}
