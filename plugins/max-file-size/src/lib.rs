//! `max-file-size`: reports files larger than a limit (large binaries and
//! generated blobs that should not be committed).
//!
//! Config (the step's `config` table):
//! - `max` (required): a size such as `500KiB`, `1MiB` or `1000000` (bytes);
//!   `KiB`/`MiB`/`GiB` are powers of 1024, `KB`/`MB`/`GB` powers of 1000.
//! - `include` / `exclude`: globs over workspace-relative paths; default: every file.
//! - `rule`: the rule id findings carry; default `max-file-size`.

use cleanroom_plugin_sdk::check::{Finding, Guest, Invocation};
use cleanroom_plugin_sdk::Files;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    max: String,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    rule: Option<String>,
}

struct MaxFileSize;

impl Guest for MaxFileSize {
    fn check(invocation: Invocation) -> Result<Vec<Finding>, String> {
        let config: Config = invocation.parse_config()?;
        let max = parse_size(&config.max)?;
        let rule = config.rule.unwrap_or_else(|| "max-file-size".to_string());
        let files = Files::new(&config.include, &config.exclude)?;
        let mut findings = Vec::new();
        for file in files.walk(&invocation.mount_paths()) {
            let Ok(meta) = std::fs::metadata(&file.guest) else { continue };
            if meta.len() > max {
                let message = format!("{} bytes, over the limit of {} ({max} bytes)", meta.len(), config.max);
                findings.push(Finding::error(&rule, message).at_file(file.guest));
            }
        }
        Ok(findings)
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 =
        digits.parse().map_err(|_| format!("invalid size `{text}`: write a whole number and a unit, e.g. `1MiB`"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("invalid size unit `{other}` in `{text}`: use B, KB, MB, GB, KiB, MiB or GiB")),
    };
    number.checked_mul(scale).ok_or_else(|| format!("size `{text}` is too large"))
}

cleanroom_plugin_sdk::export_check!(MaxFileSize);
