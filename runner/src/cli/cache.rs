//! `cleanroom cache dir | size | clean`.

use super::{err, out, CacheAction, EXIT_BAD_INPUT, EXIT_OK};

pub(super) fn cache(action: CacheAction) -> i32 {
    use crate::cache::{default_dir, usage, CACHE_DIR_VAR};
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
        CacheAction::Size => {
            let (plugins, plugin_bytes) = compiled.size();
            let (result_files, result_bytes) = usage(&dir.join("results"));
            let (blobs, blob_bytes) = usage(&dir.join("blobs"));
            out(&format!(
                "{plugins} precompiled plugins ({}), {result_files} step results and {blobs} stage files ({}) in {}\n",
                crate::manifest::units::human_size(plugin_bytes),
                crate::manifest::units::human_size(result_bytes + blob_bytes),
                dir.display()
            ));
        }
        CacheAction::Clean => out(&format!(
            "removed {} precompiled plugins and {} cached results and files from {}\n",
            compiled.clean(),
            results.clean(),
            dir.display()
        )),
        CacheAction::Dir => {}
    }
    EXIT_OK
}
