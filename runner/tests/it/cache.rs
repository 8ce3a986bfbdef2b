//! The compile cache: plugins are compiled once and loaded from
//! `CLEANROOM_CACHE_DIR` afterwards; only private files the runner wrote
//! are ever loaded.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::{cleanroom_with_env, repo, Ran};

fn cleanroom_with_cache(cache: &Path, args: &[&str]) -> Ran {
    cleanroom_with_env(&repo(), args, &[("CLEANROOM_CACHE_DIR", cache.as_os_str())])
}

/// The precompiled plugins in the cache (step results live in subdirectories).
fn entries(cache: &Path) -> Vec<std::path::PathBuf> {
    let mut entries: Vec<_> = fs_err::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    entries.sort();
    entries
}

fn mode(path: &Path) -> u32 {
    fs_err::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The first run fills the cache with private entries; later runs give the
/// same result from it; `cache size`, `dir` and `clean` report and empty it.
#[test]
fn plugins_are_compiled_once_into_a_private_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let first = cleanroom_with_cache(&cache, &["run", "pipelines/failing-demo.toml"]);
    assert_eq!(first.code, 1, "{first:?}");
    assert_eq!(mode(&cache), 0o700);
    let cached = entries(&cache);
    assert_eq!(cached.len(), 2, "{cached:?}");
    assert!(cached.iter().all(|p| p.extension().unwrap() == "cwasm" && mode(p) == 0o600));
    let second = cleanroom_with_cache(&cache, &["run", "pipelines/failing-demo.toml"]);
    let without_times =
        |text: &str| text.lines().map(|l| l.split(" (").next().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(without_times(&second.stdout)[..6], without_times(&first.stdout)[..6]);
    assert_eq!(entries(&cache), cached, "the second run compiled again");

    let size = cleanroom_with_cache(&cache, &["cache", "size"]);
    let row = |kind: &str| {
        let line = size.stdout.lines().find(|l| l.starts_with(kind)).unwrap_or_else(|| panic!("{kind}: {size:?}"));
        line.split_whitespace().skip(kind.split(' ').count()).collect::<Vec<_>>().join(" ")
    };
    assert!(row("precompiled plugins").starts_with("2 "), "{size:?}");
    assert!(row("step results").starts_with("2 "), "{size:?}");
    assert_eq!(row("stage files"), "0 0 B", "{size:?}");
    assert!(row("precompiled plugins").ends_with(" MiB") || row("precompiled plugins").ends_with(" KiB"), "{size:?}");
    assert!(size.stdout.contains("of 2.0 GiB (default max-size)"), "{size:?}");
    let capped = cleanroom_with_cache(&cache, &["cache", "max-size", "1KiB"]);
    assert_eq!(capped.code, 0, "{capped:?}");
    assert!(capped.stdout.contains("least recently used"), "{capped:?}");
    let bad = cleanroom_with_cache(&cache, &["cache", "max-size", "lots"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(cleanroom_with_cache(&cache, &["cache", "max-size", "default"]).stdout.contains("2GiB"));
    let second = cleanroom_with_cache(&cache, &["run", "pipelines/failing-demo.toml"]);
    assert_eq!(second.code, 1, "{second:?}");
    let dir = cleanroom_with_cache(&cache, &["cache", "dir"]);
    assert_eq!(dir.stdout.trim(), cache.display().to_string());
    let clean = cleanroom_with_cache(&cache, &["cache", "clean"]);
    assert!(clean.stdout.starts_with("removed 2 precompiled plugins and 2 cached results"), "{clean:?}");
    assert!(entries(&cache).is_empty());
    assert_eq!(fs_err::read_dir(cache.join("results")).unwrap().count(), 0);
}

/// An entry someone else could have written (group- or world-writable), or
/// one that is not a precompiled component, is never loaded: it is
/// replaced by a fresh compile and the run is unaffected.
#[test]
fn loosened_or_corrupted_entries_are_replaced_not_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    assert_eq!(cleanroom_with_cache(&cache, &["run", "pipelines/failing-demo.toml"]).code, 1);
    let cached = entries(&cache);
    fs_err::set_permissions(&cached[0], std::fs::Permissions::from_mode(0o666)).unwrap();
    fs_err::write(&cached[1], b"not a precompiled component").unwrap();
    let ran = cleanroom_with_cache(&cache, &["run", "--format", "json", "pipelines/failing-demo.toml"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_eq!(ran.json()["steps"][0]["status"], "failed");
    assert_eq!(mode(&cached[0]), 0o600, "the loosened entry was not replaced");
    assert!(fs_err::read(&cached[1]).unwrap().len() > 1000, "the corrupted entry was not replaced");
}

/// A cache directory others can write is refused, with the reason.
#[test]
fn a_shared_cache_directory_is_not_used() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("shared");
    fs_err::create_dir(&cache).unwrap();
    fs_err::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let ran = cleanroom_with_cache(&cache, &["cache", "size"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("not a directory owned by this user alone"), "{ran:?}");
    let run = cleanroom_with_cache(&cache, &["run", "pipelines/failing-demo.toml"]);
    assert_eq!(run.code, 1, "the run still works, uncached: {run:?}");
    assert!(entries(&cache).is_empty(), "nothing was written to the shared directory");
}
