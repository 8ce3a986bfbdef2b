//! `required-files`: reports each required path or glob that has no match.
//!
//! Config (the step's `config` table):
//! - `paths` (required): workspace-relative paths (`LICENSE`, `.env.example`)
//!   or globs (`docs/*.md`); a glob is satisfied by at least one matching file.
//! - `rule`: the rule id findings carry; default `missing-file`.
//!
//! A required path can only be seen if it lies inside one of the step's `read`
//! mounts; when it does not, the finding says so instead of calling it missing.

use cleanroom_plugin_sdk::check::{Finding, Guest, Invocation};
use cleanroom_plugin_sdk::Files;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    paths: Vec<String>,
    #[serde(default)]
    rule: Option<String>,
}

struct RequiredFiles;

impl Guest for RequiredFiles {
    fn check(invocation: Invocation) -> Result<Vec<Finding>, String> {
        let config: Config = invocation.parse_config()?;
        if config.paths.is_empty() {
            return Err("config `paths` is empty: list at least one path or glob".into());
        }
        let rule = config.rule.unwrap_or_else(|| "missing-file".to_string());
        let mounts = invocation.mount_paths();
        let mut findings = Vec::new();
        for wanted in &config.paths {
            let rel = wanted.trim_start_matches("./").trim_end_matches('/');
            let is_glob = rel.contains(['*', '?', '[', '{']);
            let present = if is_glob {
                !Files::new(&[rel.to_string()], &[])?.walk(&mounts).is_empty()
            } else {
                std::fs::metadata(format!("/{rel}")).is_ok()
            };
            if present {
                continue;
            }
            let message = if !is_glob && !mounts.iter().any(|m| is_under(rel, m)) {
                format!("`{rel}` is outside this step's read mounts: add its directory to `read`")
            } else if is_glob {
                format!("no file matches `{rel}`")
            } else {
                format!("`{rel}` is missing")
            };
            let finding = Finding::error(&rule, message);
            findings.push(if is_glob { finding } else { finding.at_file(format!("/{rel}")) });
        }
        Ok(findings)
    }
}

/// Whether workspace-relative `rel` lies below the guest mount `mount` (`/`, `/docs`).
fn is_under(rel: &str, mount: &str) -> bool {
    let mount = mount.trim_matches('/');
    mount.is_empty() || rel == mount || rel.starts_with(&format!("{mount}/"))
}

cleanroom_plugin_sdk::export_check!(RequiredFiles);
