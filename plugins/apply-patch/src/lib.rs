//! `apply-patch`: a stage that REPLAYS RECORDED WORK. It does not write code;
//! it applies, on each attempt, the unified diff an agent produced on that
//! attempt in an earlier, recorded session. Use it to demonstrate or test a
//! pipeline's retry loop deterministically, without a live agent.
//!
//! Config (the step's `config` table):
//! - `patches` (required): guest paths of patch files, one per attempt, e.g.
//!   `["/attempts/attempt-1.diff", "/attempts/attempt-2.diff"]`. Attempt N
//!   applies `patches[N-1]`; an attempt past the end of the list is an error.
//! - `target` (required): the guest path of a writable mount the patch
//!   changes, e.g. `/work`. Paths in the diff are relative to it.
//! - `base` (optional): the guest path of a read-only directory, e.g. `/src`.
//!   When set, `target` is first emptied and refilled with a copy of `base`,
//!   so every attempt's patch applies to the same starting point and the
//!   pipeline can be rerun.
//! - `strip` (optional, default 1): leading path components removed from the
//!   names in the diff headers, like `patch -p1` (`a/src/main.rs` becomes
//!   `src/main.rs`). A name that is absolute or contains `..` afterwards is
//!   rejected.
//!
//! Supports what `diff -u` and `git diff` write for text files: several
//! files and hunks per patch, creation (`--- /dev/null`), deletion
//! (`+++ /dev/null`) and `\ No newline at end of file`. Hunks must match
//! exactly; a hunk may sit at an offset from its stated line (the nearest
//! match wins) but context is never fuzzy. The whole patch is applied in
//! memory first and written only if every hunk applies; any failure is an
//! `Err`, so the host discards the stage's writes.

pub mod apply;
pub mod diff;
mod tree;

use cleanroom_plugin_sdk::one_line;
use cleanroom_plugin_sdk::stage::{Guest, Invocation, Mount};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    patches: Vec<String>,
    target: String,
    #[serde(default)]
    base: Option<String>,
    #[serde(default = "default_strip")]
    strip: usize,
}

fn default_strip() -> usize {
    1
}

struct ApplyPatch;

impl Guest for ApplyPatch {
    fn run(invocation: Invocation) -> Result<String, String> {
        let config: Config = invocation.parse_config()?;
        let patch_path = patch_for_attempt(&config.patches, invocation.attempt)?;
        let target = normalize(&config.target);
        check_target(&target, &invocation.mounts)?;
        let base = config.base.as_deref().map(normalize);
        if let Some(base) = &base {
            check_base(base, &target)?;
            if !std::path::Path::new(base).is_dir() {
                let rel = base.trim_start_matches('/');
                return Err(format!("`base` `{base}` is not a readable directory: add `{rel}` to the step's `read`"));
            }
        }
        let name = file_name(patch_path);
        let patch = std::fs::read(patch_path).map_err(|e| {
            format!(
                "cannot read patch `{patch_path}`: {}: add its directory to the step's `read`",
                one_line(&e.to_string(), 80)
            )
        })?;
        let files = diff::parse(&patch).map_err(|e| format!("{name}: {e}"))?;
        let source = base.as_deref().unwrap_or(&target);
        let (plan, stats) = apply::plan(&files, config.strip, &mut |rel| tree::read_optional(source, rel))
            .map_err(|e| format!("{name}: {e}"))?;
        if let Some(base) = &base {
            tree::reset(&target, base)?;
        }
        tree::write(&target, &plan)?;
        Ok(format!("applied {name}: {}", stats.describe()))
    }
}

/// The patch recorded for `attempt` (1-based).
fn patch_for_attempt(patches: &[String], attempt: u32) -> Result<&str, String> {
    if patches.is_empty() {
        return Err("config `patches` is empty: list one patch file per attempt".into());
    }
    let index = usize::try_from(attempt).unwrap_or(usize::MAX).checked_sub(1);
    index
        .and_then(|i| patches.get(i))
        .map(String::as_str)
        .ok_or_else(|| format!("no patch recorded for attempt {attempt} (the config lists {})", patches.len()))
}

/// Checks that `target` is one of the step's writable mounts.
fn check_target(target: &str, mounts: &[Mount]) -> Result<(), String> {
    if mounts.iter().any(|m| m.writable && normalize(&m.path) == target) {
        return Ok(());
    }
    let rel = target.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    Err(format!("`target` `{target}` is not a writable mount of this step: add `{rel}` to the step's `write`"))
}

/// Checks that resetting `target` cannot delete `base`, or copy it into itself.
fn check_base(base: &str, target: &str) -> Result<(), String> {
    if is_within(base, target) || is_within(target, base) {
        return Err(format!("`base` `{base}` and `target` `{target}` overlap: use separate directories"));
    }
    Ok(())
}

/// Whether guest path `inner` is `outer` or below it (both normalized).
fn is_within(inner: &str, outer: &str) -> bool {
    outer == "/" || inner == outer || inner.strip_prefix(outer).is_some_and(|rest| rest.starts_with('/'))
}

/// A guest path without trailing slashes (`/` stays `/`).
fn normalize(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}

/// The last component of a path, for messages (`attempt-2.diff`).
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or(path)
}

cleanroom_plugin_sdk::export_stage!(ApplyPatch);

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(path: &str, writable: bool) -> Mount {
        Mount { path: path.to_string(), writable }
    }

    #[test]
    fn attempt_picks_its_patch() {
        let patches = vec!["/a/1.diff".to_string(), "/a/2.diff".to_string()];
        assert_eq!(patch_for_attempt(&patches, 1), Ok("/a/1.diff"));
        assert_eq!(patch_for_attempt(&patches, 2), Ok("/a/2.diff"));
        assert_eq!(patch_for_attempt(&patches, 3), Err("no patch recorded for attempt 3 (the config lists 2)".into()));
        assert!(patch_for_attempt(&patches, 0).is_err());
        assert!(patch_for_attempt(&[], 1).unwrap_err().contains("is empty"));
    }

    #[test]
    fn target_must_be_a_writable_mount() {
        let mounts = [mount("/src", false), mount("/work/", true)];
        assert!(check_target("/work", &mounts).is_ok());
        let err = check_target("/src", &mounts).unwrap_err();
        assert_eq!(err, "`target` `/src` is not a writable mount of this step: add `src` to the step's `write`");
    }

    #[test]
    fn base_and_target_must_not_overlap() {
        assert!(check_base("/src", "/work").is_ok());
        assert!(check_base("/src", "/srcx").is_ok());
        assert!(check_base("/work/base", "/work").is_err());
        assert!(check_base("/work", "/work/sub").is_err());
        assert!(check_base("/src", "/").is_err());
    }

    #[test]
    fn names_for_messages() {
        assert_eq!(file_name("/attempts/attempt-2.diff"), "attempt-2.diff");
        assert_eq!(normalize("/work//"), "/work");
        assert_eq!(normalize("/"), "/");
    }
}
