//! The step backend: the one seam through which the executor runs a step.
//!
//! The executor decides *what* runs and *when* (rounds, retries, budgets,
//! skips, time separation, caching, journaling); a [`Backend`] decides
//! *how* one planned step runs and reports what happened. The local
//! backend ([`super::local::Local`]) runs plugins in wasmtime and native
//! programs in the kernel jail; the scheduler's unit tests use a scripted
//! one; a remote backend sends the same step to a worker. Whatever the
//! backend, the executor scrubs secrets from the report, journals it and
//! files it in the result cache, so no backend can skip those.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use crate::plan::Step;
use crate::report::StepReport;

/// A step's report, some time later.
pub type Running<'a> = Pin<Box<dyn Future<Output = StepReport> + Send + 'a>>;

/// Work a backend does when a round ends, and what its services printed.
pub type Finishing<'a> = Pin<Box<dyn Future<Output = Vec<crate::report::events::ServiceLog>> + Send + 'a>>;

/// Runs planned steps.
pub trait Backend: Send + Sync {
    /// Runs `step` as attempt `attempt` (a stage's attempt; the round for
    /// other steps), giving a stage its retry `feedback`, and returns its
    /// report: never an `Err`, a step that could not run is a report with
    /// status `error` (marked [`StepReport::infrastructure`] when the cause
    /// is not the work being judged). Dropping the future must stop the step
    /// and commit nothing (Ctrl-C relies on it). `inputs` are the content
    /// digests of the step's inputs by workspace path, as the executor
    /// journals and caches them (its mounts, and what its subject, service
    /// and twins read): a backend uses them instead of hashing again.
    fn run<'a>(
        &'a self,
        step: &'a Step,
        attempt: u32,
        feedback: Vec<String>,
        inputs: &'a BTreeMap<String, String>,
    ) -> Running<'a>;

    /// Called when a round's steps have all finished, before the gates are
    /// judged: a backend stops what it kept up for the round (services) and
    /// returns what they printed, which the executor journals.
    fn round_finished(&self) -> Finishing<'_> {
        Box::pin(async { Vec::new() })
    }
}
