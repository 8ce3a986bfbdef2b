//! The result cache: unchanged steps are answered from it with their
//! original result, a stage's writes are replayed exactly, and anything
//! that could change the result makes the step run again.

use std::collections::BTreeMap;
use std::path::Path;

use crate::factory::{factory_copy, run_pipeline};
use crate::{component, Ran, Workspace};

fn step<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()
}

fn stubs_pipeline() -> String {
    format!(
        "[pipeline]\nname = \"t\"\n[plugins]\nfp = {fp:?}\n\
         [check.stubs]\nplugin = \"fp\"\nread = [\"src\"]\nconfig = {{ patterns = ['todo!\\('] }}\n",
        fp = component("forbid_pattern"),
    )
}

fn run(ws: &Workspace, extra: &[&str]) -> Ran {
    let mut args = vec!["run", "--format", "json"];
    args.extend_from_slice(extra);
    ws.run(&stubs_pipeline(), &args)
}

/// A rerun with nothing changed reports the first run's findings and
/// duration, marked `cached`; changing a file or `--no-cache` runs it again.
#[test]
fn an_unchanged_check_is_answered_from_the_cache_and_a_change_runs_it_again() {
    let ws = Workspace::new();
    ws.file("src/a.rs", "fn a() { todo!() }\n").file("src/b.rs", "fn b() {}\n");
    let first = run(&ws, &[]);
    assert_eq!(first.code, 1, "{first:?}");
    let first = first.json();
    assert_eq!(step(&first, "stubs")["cached"], false);

    let second = run(&ws, &[]);
    assert_eq!(second.code, 1, "a cached failure still fails the run: {second:?}");
    let second = second.json();
    let (was, now) = (step(&first, "stubs"), step(&second, "stubs"));
    assert_eq!(now["cached"], true);
    assert_eq!(now["findings"], was["findings"]);
    assert_eq!(now["duration_ms"], was["duration_ms"]);

    let no_cache = run(&ws, &["--no-cache"]).json();
    assert_eq!(step(&no_cache, "stubs")["cached"], false);

    // Same size, one byte different: the content digest tells.
    ws.file("src/b.rs", "fn c() {}\n");
    let changed = run(&ws, &[]).json();
    assert_eq!(step(&changed, "stubs")["cached"], false);
    ws.file("src/a.rs", "fn a() {}\n");
    let fixed = run(&ws, &[]);
    assert_eq!(fixed.code, 0, "a fixed file was answered from the cache: {fixed:?}");

    // Another config is another step; `cache = false` opts out.
    let other = stubs_pipeline().replace("'todo!\\('", "'fn c'");
    assert_eq!(ws.run(&other, &["run"]).code, 1, "a changed config was answered from the cache");
    let opted_out = stubs_pipeline() + "cache = false\n";
    assert_eq!(ws.run(&opted_out, &["run"]).code, 0);
    let again = ws.run(&opted_out, &["run", "--format", "json"]).json();
    assert_eq!(step(&again, "stubs")["cached"], false);
}

/// Every file under `dir`, with its contents and permission bits.
fn tree(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    crate::files_under(dir)
        .into_iter()
        .map(|path| {
            let mode = fs_err::metadata(&path).unwrap().permissions().mode();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            (rel, (fs_err::read(&path).unwrap(), mode))
        })
        .collect()
}

/// After the generated files are deleted, a rerun of the factory restores
/// what the stages wrote (the patched source and the compiled program)
/// from the cache, byte for byte and mode for mode, without running them;
/// the holdout evaluator (`repeat = 3`) is never answered from the cache.
#[test]
fn cached_stages_replay_their_writes_exactly_and_sampled_evaluators_run_again() {
    let ws = factory_copy(|toml| toml);
    let first = run_pipeline(&ws, &[]);
    assert_eq!(first.code, 0, "{first:?}");
    let written = (tree(&ws.path().join("work")), tree(&ws.path().join("build")));
    for generated in ["work", "build"] {
        fs_err::remove_dir_all(ws.path().join(generated)).unwrap();
    }

    let second = run_pipeline(&ws, &[]);
    assert_eq!(second.code, 0, "{second:?}");
    let report = second.json();
    for id in ["implement", "build", "no-stubs"] {
        assert_eq!(step(&report, id)["cached"], true, "{id} ran again: {second:?}");
    }
    assert_eq!(step(&report, "holdout")["cached"], false, "a repeat = 3 evaluator came from the cache");
    assert_eq!(report["attempts"].as_array().unwrap().len(), 2, "the loop did not run both attempts");
    assert_eq!((tree(&ws.path().join("work")), tree(&ws.path().join("build"))), written);
}

/// `cache = true` opts a sampled evaluator in: with its inputs unchanged
/// (same scenarios, same compiled subject), its result is reused.
#[test]
fn a_sampled_evaluator_that_opts_in_is_cached() {
    let ws = factory_copy(|toml| toml.replace("max_iterations = 5", "max_iterations = 5\ncache = true"));
    assert_eq!(run_pipeline(&ws, &[]).code, 0);
    for generated in ["work", "build"] {
        fs_err::remove_dir_all(ws.path().join(generated)).unwrap();
    }
    let again = run_pipeline(&ws, &[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(step(&again.json(), "holdout")["cached"], true, "{again:?}");
}
