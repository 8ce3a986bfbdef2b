//! The subject capability: an evaluator runs the program under evaluation.
//!
//! The subject is a `wasi:cli` command component built by an earlier step.
//! Each `subject.run(args, stdin)` call from an evaluator starts it in a
//! sandbox of its own, built from the subject's grant (its `subject_read`
//! mounts only, no environment, no network, its own deadline, memory and
//! output caps), on a separate task so the evaluator's Store is never
//! re-entered. The evaluator sees only the exit code and output; the subject
//! sees none of the evaluator's mounts, so it never sees the scenarios.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::Engine;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::I32Exit;

use super::bindings::evaluator::cleanroom::plugin::subject::{Host, Output};
use super::output::CappedPipe;
use super::{classify_trap, limits, new_store, StepState, StoreIo};
use crate::plan::Grant;

/// What one run of the subject produced (the WIT `output` record).
pub type SubjectOutput = Output;

/// A compiled subject and the grant each of its runs gets.
pub struct SubjectRunner {
    pub(super) engine: Engine,
    pub(super) command: CommandPre<StepState>,
    pub(super) grant: Grant,
    /// sha256 of the component, for the journal.
    pub sha256: String,
}

impl SubjectRunner {
    /// Runs the subject once with `args` (after a program name) and `stdin`.
    ///
    /// # Errors
    /// A one-line reason when it could not run to an exit code: it trapped,
    /// timed out or exceeded its memory cap.
    pub async fn run(self: Arc<Self>, args: Vec<String>, stdin: Vec<u8>) -> Result<SubjectOutput, String> {
        let grant = &self.grant;
        let stdout = CappedPipe::new(grant.limits.output);
        let stderr = CappedPipe::new(grant.limits.output);
        let argv: Vec<String> = std::iter::once("subject".to_string()).chain(args).collect();
        // A subject gets no secrets and no network: its grant has neither.
        let secrets = crate::secrets::Secrets::default();
        let io = StoreIo {
            stdout: &stdout,
            stderr: &stderr,
            stdin,
            args: Some(&argv),
            secrets: &secrets,
            denied: Arc::default(),
        };
        let (mut store, _staging) = new_store(&self.engine, grant, io, None).map_err(|f| f.to_string())?;
        limits::arm_deadline(&mut store, Instant::now() + grant.limits.timeout);
        let backstop = grant.limits.timeout + 4 * limits::TICK;
        let command = self.command.clone();
        let call = async {
            let instance = command.instantiate_async(&mut store).await?;
            instance.wasi_cli_run().call_run(&mut store).await
        };
        let exit_code = match tokio::time::timeout(backstop, call).await {
            Err(_) => {
                return Err(format!(
                    "the subject timed out after {}",
                    crate::manifest::DurationSpec(grant.limits.timeout)
                ))
            }
            Ok(Ok(Ok(()))) => 0,
            Ok(Ok(Err(()))) => 1,
            Ok(Err(error)) => match error.downcast_ref::<I32Exit>() {
                Some(I32Exit(code)) => u32::try_from(*code).unwrap_or(1),
                None => return Err(format!("the subject {}", classify_trap(&error, store.data(), grant))),
            },
        };
        drop(store);
        Ok(Output { exit_code, stdout: stdout.contents().bytes, stderr: stderr.contents().bytes })
    }
}

impl Host for StepState {
    async fn run(&mut self, args: Vec<String>, stdin: Vec<u8>) -> Result<Output, String> {
        let Some(runner) = self.subject.clone() else {
            return Err("this evaluator has no subject: set `subject` on its step in the pipeline".into());
        };
        match tokio::spawn(runner.run(args, stdin)).await {
            Ok(result) => result,
            Err(e) => Err(format!("the subject's task failed: {e}")),
        }
    }
}
