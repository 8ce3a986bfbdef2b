//! `cleanroom cache dir | size | clean | max-size [SIZE]`.

use std::path::Path;

use super::{err, out, CacheAction, EXIT_BAD_INPUT, EXIT_OK};
use crate::cache::evict::{self, DEFAULT_MAX_SIZE};
use crate::manifest::units::{human_size, ByteSize};

pub(super) fn cache(action: CacheAction) -> i32 {
    use crate::cache::{clean_dirs, default_dir, CACHE_DIR_VAR};
    use crate::exec::results::ResultCache;
    use crate::sandbox::cache::CompileCache;
    let Some(dir) = default_dir() else {
        err(&format!("error: no cache directory: set {CACHE_DIR_VAR} or HOME\n"));
        return EXIT_BAD_INPUT;
    };
    if let CacheAction::Dir = action {
        out(&format!("{}\n", dir.display()));
        return EXIT_OK;
    }
    let opened = CompileCache::open(&dir).and_then(|compiled| Ok((compiled, ResultCache::open(&dir)?)));
    let (compiled, results) = match opened {
        Ok(caches) => caches,
        Err(reason) => {
            err(&format!("error: {reason}\n"));
            return EXIT_BAD_INPUT;
        }
    };
    match action {
        CacheAction::Size => out(&size(&dir)),
        CacheAction::Clean => {
            let plugins = compiled.clean();
            let files = results.clean();
            let dirs = clean_dirs(&dir);
            let pulled = crate::oci::store::clean(&dir);
            let build = if dirs == 1 { "directory" } else { "directories" };
            out(&format!(
                "removed {plugins} precompiled plugins and {files} cached results and files, {dirs} build {build} \
                 and {pulled} files of pulled plugins, from {}\n",
                dir.display()
            ));
        }
        CacheAction::MaxSize { size: None } => out(&match evict::configured_max_size(&dir) {
            Some(max) => format!("{}\n", shown(max)),
            None => format!("{} (the default)\n", shown(DEFAULT_MAX_SIZE)),
        }),
        CacheAction::MaxSize { size: Some(text) } => return set_max_size(&dir, &text),
        CacheAction::Dir => {}
    }
    EXIT_OK
}

/// Per kind: how many, how big; then the total against the cap.
fn size(dir: &Path) -> String {
    let usage = evict::contents(dir);
    let kinds = [
        ("precompiled plugins", usage.plugins),
        ("step results", usage.results),
        ("stage files", usage.blobs),
        ("build directories", usage.build_dirs),
        ("pulled plugins", usage.pulled),
    ];
    let mut text = String::new();
    for (label, tally) in kinds {
        text.push_str(&format!("{label:<19}{:>5}{:>11}\n", tally.count, human_size(tally.bytes)));
    }
    let (max, which) = match evict::configured_max_size(dir) {
        Some(max) => (max, "max-size"),
        None => (DEFAULT_MAX_SIZE, "default max-size"),
    };
    text.push_str(&format!("{:<24}{:>11} of {} ({which})\n", "total", human_size(usage.total()), human_size(max)));
    text.push_str(&format!("in {}\n", dir.display()));
    text
}

/// `cleanroom cache max-size SIZE|default`: sets the cap, then evicts at
/// once what no longer fits.
fn set_max_size(dir: &Path, size: &str) -> i32 {
    let max = if size.trim() == "default" {
        None
    } else {
        match evict::parse_size(size) {
            Ok(max) => Some(max),
            Err(reason) => {
                err(&format!(
                    "error: {reason}\nhint: for example `cleanroom cache max-size 5GiB`, \
                     or `cleanroom cache max-size default` for {}\n",
                    human_size(DEFAULT_MAX_SIZE)
                ));
                return EXIT_BAD_INPUT;
            }
        }
    };
    if let Err(e) = evict::set_max_size(dir, max) {
        err(&format!("error: cannot set the cache's max-size: {e}; check that the cache directory is writable\n"));
        return EXIT_BAD_INPUT;
    }
    let cap = max.unwrap_or(DEFAULT_MAX_SIZE);
    let evicted = evict::enforce_to(dir, cap);
    let default = if max.is_none() { " (the default)" } else { "" };
    let after = if evicted.files > 0 {
        format!("deleted {} least recently used entries ({}) to fit", evicted.files, human_size(evicted.bytes))
    } else {
        format!("the cache holds {}", human_size(evict::contents(dir).total()))
    };
    out(&format!("max-size is now {}{default}; {after}\n", shown(cap)));
    EXIT_OK
}

/// A cap as it can be given back (`5GiB`), with a size for people when
/// that is not already one (`1000000000B (953.7 MiB)`).
fn shown(max: u64) -> String {
    let exact = ByteSize(max).to_string();
    if exact.ends_with("iB") {
        exact
    } else {
        format!("{exact} ({})", human_size(max))
    }
}
