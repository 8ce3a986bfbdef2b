//! The Rust SDK for Cleanroom plugins.
//!
//! A Cleanroom plugin is a WebAssembly component built for `wasm32-wasip2`
//! against one world of the plugin contract (`wit/plugin.wit`): [`check`],
//! [`stage`] or [`evaluator`]. This crate generates the bindings of all three
//! once (with `wit-bindgen`), so a plugin depends on this crate alone, picks
//! its world's module, implements that module's `Guest` trait and exports it
//! with one macro: [`export_check!`], [`export_stage!`] or
//! [`export_evaluator!`].
//!
//! On top of the bindings it holds what every plugin would otherwise write
//! again:
//!
//! * [`Invocation::parse_config`] (or [`parse_config`]): the step's `config`
//!   into your own serde type, with an error that names the bad key.
//! * [`Finding::error`], [`Finding::warning`], [`Finding::info`] and
//!   [`Finding::at`]: findings in one line; [`Severity`] parses from
//!   `"error"`, `"warning"`, `"info"`.
//! * [`Invocation::mount_paths`] and [`Invocation::writable_mounts`]: the
//!   directories the step was granted, as guest paths.
//! * [`Files`]: every regular file below the mounts, filtered by
//!   include/exclude globs written relative to the workspace root.
//! * [`read_text`], [`line_col`], [`one_line`]: text files, positions in them,
//!   and short messages.
//! * [`search`] (checks only): have the host search the mounts for regexes,
//!   natively and in parallel, instead of reading every file yourself.
//! * [`Verdict::pass`] and [`Verdict::fail`] for evaluators.
//!
//! # A whole check
//!
//! Reports every line containing `FIXME` in the mounted files, as errors with
//! the rule `no-fixme`:
//!
//! ```
//! use cleanroom_plugin_sdk::check::{Finding, Guest, Invocation};
//! use cleanroom_plugin_sdk::{line_col, read_text, Files};
//!
//! struct NoFixme;
//!
//! impl Guest for NoFixme {
//!     fn check(invocation: Invocation) -> Result<Vec<Finding>, String> {
//!         let mut findings = Vec::new();
//!         for file in Files::new(&[], &[])?.walk(&invocation.mount_paths()) {
//!             let Some(text) = read_text(&file.guest) else { continue }; // skips binary files
//!             let Ok(text) = String::from_utf8(text) else { continue }; // and non-UTF-8 ones
//!             for (offset, _) in text.match_indices("FIXME") {
//!                 let (line, column) = line_col(text.as_bytes(), offset);
//!                 findings.push(Finding::error("no-fixme", "FIXME left in the code").at(&file.guest, line, column));
//!             }
//!         }
//!         Ok(findings)
//!     }
//! }
//!
//! cleanroom_plugin_sdk::export_check!(NoFixme);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` in a crate
//! with `crate-type = ["cdylib"]`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is the component.
//!
//! # Where the contract comes from
//!
//! The bindings are generated from `wit/plugin.wit` beside this crate's
//! `Cargo.toml` (package `cleanroom:plugin@0.1.3`). The shared
//! `cleanroom:plugin/types` interface is generated once, in [`types`], and
//! every world uses those same types, so a [`Finding`] or an [`Invocation`] is
//! one Rust type whichever world you build.
#![deny(missing_docs)]

mod files;
mod helpers;
pub mod search;
mod text;

pub use files::{read_text, FileEntry, Files};
pub use helpers::parse_config;
pub use text::{line_col, one_line};
pub use types::{Finding, Invocation, Mount, Severity, Verdict};

/// Bindings of the shared `cleanroom:plugin/types` interface, generated once
/// here and reused by every world (through wit-bindgen's `with`).
mod shared {
    wit_bindgen::generate!({
        path: "wit",
        inline: "
            package cleanroom:plugin-sdk;

            /// Every type of the contract, for the worlds to share.
            world types {
                import cleanroom:plugin/types@0.1.3;
            }
        ",
        world: "types",
        with: { "cleanroom:plugin/types@0.1.3": generate },
        generate_unused_types: true,
        additional_derives: [PartialEq, Eq],
    });
}

/// The types every world shares: [`Invocation`] and [`Mount`] (what the host
/// tells a plugin), [`Finding`] and [`Severity`] (what a check reports),
/// [`Verdict`] (what an evaluator decides).
///
/// Each world's module re-exports the ones it uses, so most plugins never
/// name this module.
pub mod types {
    pub use crate::shared::cleanroom::plugin::types::*;
}

/// The `check` world: read files through the mounts, return findings.
///
/// Implement [`check::Guest`] and export it with [`export_check!`]. The step
/// passes when no returned finding has [`Severity::Error`]; return `Err` for
/// bad config or an internal failure (the step is then reported as `error`).
pub mod check {
    /// What wit-bindgen generated for the world; plugins use the items
    /// re-exported beside it and the [`export_check!`](crate::export_check) macro.
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)] // the generated canonical-ABI glue
    pub mod bindings {
        wit_bindgen::generate!({
            path: "wit",
            world: "check",
            with: { "cleanroom:plugin/types@0.1.3": crate::types },
            pub_export_macro: true,
            export_macro_name: "export_check",
            default_bindings_module: "cleanroom_plugin_sdk::check::bindings",
        });
    }

    pub use crate::types::{Finding, Invocation, Mount, Severity};

    /// The trait a check implements; export the implementing type with
    /// [`export_check!`](crate::export_check).
    pub use bindings::Guest;

    /// The host's regex search of the step's files: [`search::search`] a
    /// [`search::Query`] for its [`search::Match`]es (the same module as
    /// [`crate::search`], with its [`Query::new`](crate::search::Query::new)
    /// builder).
    pub use crate::search;
}

/// The `stage` world: change files in the writable mounts.
///
/// Implement [`stage::Guest`] and export it with [`export_stage!`]. Return
/// `Ok(note)` to commit what the stage wrote, `Err(message)` to discard it.
///
/// ```
/// use cleanroom_plugin_sdk::stage::{Guest, Invocation};
///
/// struct Hello;
///
/// impl Guest for Hello {
///     fn run(invocation: Invocation) -> Result<String, String> {
///         let mount = invocation.writable_mounts().next().ok_or("give the step a `write` directory")?;
///         let path = format!("{}/HELLO.txt", mount.path.trim_end_matches('/'));
///         std::fs::write(&path, "hello\n").map_err(|e| format!("cannot write `{path}`: {e}"))?;
///         Ok(format!("wrote {path}"))
///     }
/// }
///
/// cleanroom_plugin_sdk::export_stage!(Hello);
/// ```
pub mod stage {
    /// What wit-bindgen generated for the world; plugins use the items
    /// re-exported beside it and the [`export_stage!`](crate::export_stage) macro.
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)] // the generated canonical-ABI glue
    pub mod bindings {
        wit_bindgen::generate!({
            path: "wit",
            world: "stage",
            with: { "cleanroom:plugin/types@0.1.3": crate::types },
            pub_export_macro: true,
            export_macro_name: "export_stage",
            default_bindings_module: "cleanroom_plugin_sdk::stage::bindings",
        });
    }

    pub use crate::types::{Invocation, Mount};

    /// The trait a stage implements; export the implementing type with
    /// [`export_stage!`](crate::export_stage).
    pub use bindings::Guest;
}

/// The `evaluator` world: judge a subject program against scenarios.
///
/// Implement [`evaluator::Guest`] and export it with [`export_evaluator!`].
/// Run the program under evaluation with [`evaluator::subject::run`].
///
/// ```
/// use cleanroom_plugin_sdk::evaluator::{subject, Guest, Invocation, Verdict};
///
/// struct ExitsZero;
///
/// impl Guest for ExitsZero {
///     fn scenarios(_: Invocation) -> Result<Vec<String>, String> {
///         Ok(vec!["exit-zero".to_string()])
///     }
///
///     fn evaluate(_scenario: String, _: Invocation) -> Verdict {
///         match subject::run(&[], &[]) {
///             Ok(out) if out.exit_code == 0 => Verdict::pass("exit code 0"),
///             // The summary reaches the stage: nothing the subject chose.
///             Ok(out) => Verdict::fail("expected exit code 0, got another")
///                 .with_detail(format!("exit code {}: {}", out.exit_code, out.stderr_text())),
///             Err(e) => Verdict::fail(format!("the subject {e}")),
///         }
///     }
/// }
///
/// cleanroom_plugin_sdk::export_evaluator!(ExitsZero);
/// ```
pub mod evaluator {
    /// What wit-bindgen generated for the world; plugins use the items
    /// re-exported beside it and the [`export_evaluator!`](crate::export_evaluator) macro.
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)] // the generated canonical-ABI glue
    pub mod bindings {
        wit_bindgen::generate!({
            path: "wit",
            world: "evaluator",
            with: { "cleanroom:plugin/types@0.1.3": crate::types },
            additional_derives: [PartialEq, Eq],
            pub_export_macro: true,
            export_macro_name: "export_evaluator",
            default_bindings_module: "cleanroom_plugin_sdk::evaluator::bindings",
        });
    }

    pub use crate::types::{Invocation, Mount, Verdict};

    /// The trait an evaluator implements; export the implementing type with
    /// [`export_evaluator!`](crate::export_evaluator).
    pub use bindings::Guest;

    /// Runs the program under evaluation: call [`subject::run`] with its
    /// arguments and stdin, once per run of a scenario.
    pub use bindings::cleanroom::plugin::subject;

    /// Talks to the service under evaluation: [`service::send`] an HTTP
    /// request to the step's `service` and get its response.
    pub use bindings::cleanroom::plugin::service;

    /// About the run being judged, for judges that sample (a model):
    /// [`judging::run_index`], a verdict cache ([`judging::recall`],
    /// [`judging::remember`]), a council's [`judging::votes`], and
    /// [`judging::give_up`] when the run cannot be judged at all.
    pub use bindings::cleanroom::plugin::judging;
}

/// Exports a type implementing [`check::Guest`] as the plugin's `check`
/// function. Use it once, at the top level of the plugin crate:
/// `cleanroom_plugin_sdk::export_check!(MyCheck);`
#[macro_export]
macro_rules! export_check {
    ($ty:ident) => {
        $crate::check::bindings::export_check!($ty with_types_in $crate::check::bindings);
    };
}

/// Exports a type implementing [`stage::Guest`] as the plugin's `run`
/// function. Use it once, at the top level of the plugin crate:
/// `cleanroom_plugin_sdk::export_stage!(MyStage);`
#[macro_export]
macro_rules! export_stage {
    ($ty:ident) => {
        $crate::stage::bindings::export_stage!($ty with_types_in $crate::stage::bindings);
    };
}

/// Exports a type implementing [`evaluator::Guest`] as the plugin's
/// `scenarios` and `evaluate` functions. Use it once, at the top level of the
/// plugin crate: `cleanroom_plugin_sdk::export_evaluator!(MyEvaluator);`
#[macro_export]
macro_rules! export_evaluator {
    ($ty:ident) => {
        $crate::evaluator::bindings::export_evaluator!($ty with_types_in $crate::evaluator::bindings);
    };
}

/// This SDK's version, as recorded in every plugin built with it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(target_arch = "wasm32")]
const fn version_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let bytes = VERSION.as_bytes();
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// The SDK version in a `cleanroom-sdk` custom section of the component, so
/// `cleanroom plugin inspect` and `plugin push` (its `dev.cleanroom.sdk`
/// annotation) can say which SDK built a plugin without running it.
#[cfg(target_arch = "wasm32")]
#[used]
#[link_section = "cleanroom-sdk"]
static SDK_VERSION: [u8; VERSION.len()] = version_bytes::<{ VERSION.len() }>();
