//! {{name}}: a Cleanroom stage plugin.
//!
//! It writes `GREETING.txt`, one line holding the configured greeting, into
//! the first directory the step may write. Config (the step's `config`
//! table):
//!
//! ```toml
//! config = { greeting = "bonjour" }   # optional; default "hello"
//! ```
//!
//! A stage is how a pipeline changes files: code generators, formatters,
//! coding agents. The host calls `run` with an `Invocation` whose mounts
//! include the step's `write` directories (marked writable) at their guest
//! paths (`write = ["."]` appears as `/`, `write = ["out"]` as `/out`).
//! Writes are transactional: the stage works on a staged copy, and the
//! workspace changes only when `run` returns `Ok`. On a retry (a gate sent
//! the stage back) `invocation.attempt` is 2, 3, ... and
//! `invocation.feedback` holds one line per failure to fix.

use cleanroom_plugin_sdk::stage::{Guest, Invocation};
use serde::Deserialize;

/// The step's `config` table. `deny_unknown_fields` turns a misspelt key
/// into an error the user sees instead of a setting silently ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The line to write.
    #[serde(default = "default_greeting")]
    greeting: String,
}

fn default_greeting() -> String {
    "hello".to_string()
}

/// The plugin: a type implementing the `stage` world's `Guest` trait,
/// exported with `export_stage!` at the bottom of this file.
struct Stage;

impl Guest for Stage {
    /// Returning `Ok(note)` commits what the stage wrote and shows the note
    /// in the report; returning `Err(message)` discards every write and
    /// fails the step with that message.
    fn run(invocation: Invocation) -> Result<String, String> {
        let config: Config = invocation.parse_config()?;
        if config.greeting.contains('\n') {
            return Err("invalid config: `greeting` must be one line".into());
        }
        let Some(mount) = invocation.writable_mounts().next() else {
            return Err("this stage has nowhere to write: give the step a `write` directory".into());
        };
        let path = format!("{}/GREETING.txt", mount.path.trim_end_matches('/'));
        std::fs::write(&path, format!("{}\n", config.greeting)).map_err(|e| format!("cannot write `{path}`: {e}"))?;
        Ok(format!("wrote {path}"))
    }
}

cleanroom_plugin_sdk::export_stage!(Stage);
