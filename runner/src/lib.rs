//! Cleanroom: runs declarative TOML pipelines whose steps are sandboxed
//! WebAssembly components, each seeing only the files the pipeline grants.
//!
//! Data flows one way: pipeline file -> [`manifest`] (pure data, spans) ->
//! [`plan`] (validated, resolved, one [`plan::Grant`] per step, the step
//! graph; [`Plan::load`] is the entry point) -> [`exec`] (schedules the DAG
//! and runs each step through an [`exec::Backend`]; the local one calls
//! [`sandbox`]) -> [`report`] (the run's [`report::events`], the report and
//! its renderers) and [`journal`] (the durable, authenticated record).
//! [`writes`] is the workspace transaction; [`diag`] carries every
//! user-facing error; [`findings`] parses native tools' output into
//! findings; [`plugin`] inspects component files; [`cache`] holds
//! the cache directories and input digests; [`key`] authenticates what the
//! runner reads back; [`lock`] pins plugins in `cleanroom.lock`; [`oci`] shares them
//! through OCI registries;
//! [`authoring`] scaffolds and tests plugins and starter pipelines; [`cli`]
//! is the command line. No module imports one that imports it back.

pub mod authoring;
pub mod cache;
pub mod cli;
pub mod diag;
pub mod exec;
pub mod findings;
pub mod git;
pub mod governance;
pub mod journal;
pub mod key;
pub mod lock;
pub mod manifest;
pub mod oci;
pub mod plan;
pub mod plugin;
pub mod remote;
pub mod report;
pub mod sandbox;
pub mod scratch;
pub mod secrets;
pub mod tls;
pub mod writes;

pub use exec::RunOptions;
pub use plan::Plan;
pub use remote::run;
pub use report::{RunReport, StepReport, StepStatus, Termination};
