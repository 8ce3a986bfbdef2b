//! The remote backend: sends a ready step to the service's workers and
//! brings its result back, or runs it on this machine when it must.
//!
//! The executor does not know the difference: it gets a [`StepReport`] as
//! from the local backend, and a stage's writes are already in the
//! workspace. A step runs here, not remotely, when it:
//! - judges a running service (this machine starts the service once per
//!   round and shares it between the evaluators naming it);
//! - is granted secrets (secret values never leave this machine);
//! - runs a program or tool that lies in the workspace outside its mounts
//!   (a worker would not have it);
//! - has an input holding a secret value of the run (found when uploading).
//!
//! A step no worker takes within its deadline, twice over plus 10 s, is an
//! error naming the tools a worker must offer: the run never hangs on an
//! empty pool.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::exec::backend::{Backend, Finishing, Running};
use crate::plan::Step;
use crate::report::StepReport;

use super::{action_name, hit_of, Remote};
use crate::plan::remote::runs_here;

/// Sends steps to the service's workers; `local` runs those that stay here.
pub struct RemoteBackend {
    /// Runs the steps that stay on this machine.
    pub local: Arc<dyn Backend>,
    /// The service.
    pub remote: Arc<Remote>,
}

impl Backend for RemoteBackend {
    fn run<'a>(
        &'a self,
        step: &'a Step,
        attempt: u32,
        feedback: Vec<String>,
        inputs: &'a BTreeMap<String, String>,
    ) -> Running<'a> {
        Box::pin(async move {
            if let Some(why) = runs_here(step, &self.remote.workspace) {
                tracing::info!("step `{}` runs on this machine: {why}", step.id);
                return self.local.run(step, attempt, feedback, inputs).await;
            }
            match self.run_remotely(step, attempt, &feedback).await {
                Ok(Some(report)) => report,
                Ok(None) => {
                    tracing::info!("step `{}` runs on this machine: an input holds a secret value", step.id);
                    self.local.run(step, attempt, feedback, inputs).await
                }
                Err(e) => StepReport::error(
                    &step.id,
                    step.kind,
                    format!("remote execution on `{}` failed: {e}", self.remote.client.endpoint()),
                )
                .infrastructure(),
            }
        })
    }

    fn round_finished(&self) -> Finishing<'_> {
        self.local.round_finished()
    }
}

/// How long the client waits for a remote step's result: its deadline for
/// waiting in the queue, its deadline for running, and 10 s of slack.
fn queue_wait(timeout: std::time::Duration) -> std::time::Duration {
    timeout.saturating_mul(2) + std::time::Duration::from_secs(10)
}

impl RemoteBackend {
    /// The step's report from a worker; `None` when an input holds a secret
    /// value of the run (a file a granted step wrote), which never leaves
    /// this machine: the step then runs here.
    async fn run_remotely(&self, step: &Step, attempt: u32, feedback: &[String]) -> Result<Option<StepReport>, String> {
        let remote = &self.remote;
        let action = remote.action(step, attempt, feedback)?;
        let uploaded = match remote.client.upload_missing(&action.blobs, &remote.secrets).await {
            Ok(uploaded) => uploaded,
            Err(super::client::Upload::Secret) => return Ok(None),
            Err(super::client::Upload::Failed(e)) => return Err(e),
        };
        tracing::debug!("step `{}`: {uploaded} blobs uploaded for {}", step.id, action_name(&action.digest));
        // The executor asked the cache already (and refuses what it must
        // not reuse): the service runs the action afresh. A step no worker
        // takes (none offers its tools, none is up) must not hang the run.
        let wait = queue_wait(step.grant.limits.timeout);
        let response = tokio::time::timeout(wait, remote.client.execute(&action.digest, true))
            .await
            .map_err(|_| {
                let tools: Vec<String> = step.grant.tools().iter().map(|t| t.display().to_string()).collect();
                format!(
                    "no worker returned a result within {} s (its deadline, again, and 10 s to be leased); is a worker up{}?",
                    wait.as_secs(),
                    if tools.is_empty() { String::new() } else { format!(" and offering --tool {}", tools.join(" --tool ")) }
                )
            })??;
        if let Some(status) = response.status.as_ref().filter(|s| s.code != 0) {
            return Err(format!("{} (code {})", status.message, status.code));
        }
        let result = response.result.ok_or("the service returned no result")?;
        let hit = hit_of(&remote.client, &action.digest, result, false, remote.seal.as_deref()).await?;
        let mut report = hit.report;
        report.id = step.id.clone();
        if !hit.files.is_empty() || !hit.removed.is_empty() {
            let scratch = remote.workspace.join(crate::plan::mounts::RUN_DIR).join("tmp");
            let changes = crate::writes::replay(&step.grant.mounts, &hit.files, &hit.removed, &scratch)
                .map_err(|e| format!("the worker's writes could not be applied: {e}"))?;
            report.changes = changes.list();
        }
        Ok(Some(report))
    }
}
