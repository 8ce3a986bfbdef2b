//! Cleanroom: runs declarative TOML pipelines whose steps are sandboxed
//! WebAssembly components, each seeing only the files the pipeline grants.
//!
//! Data flows one way: pipeline file -> [`manifest`] (pure data, spans) ->
//! [`plan`] (validated, resolved, one [`plan::Grant`] per step) -> [`exec`]
//! (schedules the DAG, one [`sandbox`] invocation per step) -> [`report`].
//! [`diag`] carries every user-facing error; [`plugin`] inspects component
//! files; [`cache`] keeps compiled plugins and step results between runs;
//! [`lock`] pins plugins in `cleanroom.lock`; [`authoring`] scaffolds and
//! tests plugins and starter pipelines; [`cli`] is the command line.

pub mod authoring;
pub mod cache;
pub mod cli;
pub mod diag;
pub mod exec;
pub mod journal;
pub mod key;
pub mod lock;
pub mod manifest;
pub mod plan;
pub mod plugin;
pub mod report;
pub mod sandbox;
pub mod secrets;
pub mod writes;

pub use exec::{run, RunOptions};
pub use plan::Plan;
pub use report::{RunReport, StepReport, StepStatus};
