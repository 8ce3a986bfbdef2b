//! The subject capability: an evaluator runs the program under evaluation.
//!
//! The subject is a `wasi:cli` command component built by an earlier step.
//! Each `subject.run(args, stdin)` call from an evaluator starts it in a
//! sandbox of its own, built from the subject's grant (its `subject_read`
//! mounts only, no environment, no network, its own deadline, memory and
//! output caps), on a separate task so the evaluator's Store is never
//! re-entered. The evaluator sees only the exit code and output; the subject
//! sees none of the evaluator's mounts, so it never sees the scenarios.
//!
//! When a run fails, the evaluator is told one of the fixed, host-authored
//! [`SubjectFailure`] categories and nothing else: wasmtime's message (which
//! can hold numbers the guest chose, such as a resource index) goes to the
//! step's human-only log ([`SubjectRunner::take_log`]), never to the
//! evaluator, whose summaries reach the stage. A run is bounded by the
//! subject's own deadline and by the evaluator step's; a run whose caller
//! goes away (the evaluator timed out) is stopped, freeing its instance.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::I32Exit;

use super::bindings::evaluator::cleanroom::plugin::subject::{Host, Output};
use super::output::CappedPipe;
use super::{classify_trap, limits, new_store, StepState, StoreIo};
use crate::plan::Grant;

/// What one run of the subject produced (the WIT `output` record).
pub type SubjectOutput = Output;

/// Why a subject run produced no output, as the evaluator is told it: a
/// fixed word chosen by the host, never text the subject could influence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectFailure {
    /// Its sandbox could not be built or it could not be instantiated.
    CouldNotStart,
    /// It trapped (a panic, an out-of-bounds access, a host-call limit).
    Trapped,
    /// It ran past its deadline (or the evaluator step's).
    TimedOut,
    /// It tried to grow its memory or a table past the cap.
    OutOfMemory,
    /// It printed more than the output cap; what it printed is not judged.
    OutputCut,
}

impl SubjectFailure {
    /// The error string the evaluator receives (the WIT documents the set).
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectFailure::CouldNotStart => "could not start",
            SubjectFailure::Trapped => "trapped",
            SubjectFailure::TimedOut => "timed out",
            SubjectFailure::OutOfMemory => "out of memory",
            SubjectFailure::OutputCut => "output cut",
        }
    }
}

/// A compiled subject and the grant each of its runs gets.
pub struct SubjectRunner {
    pub(super) engine: Engine,
    pub(super) command: CommandPre<StepState>,
    pub(super) grant: Grant,
    /// sha256 of the component, for the journal.
    pub sha256: String,
    /// No run may go past this instant: the evaluator step's deadline.
    step_deadline: Instant,
    /// Human-only lines about failed runs (category and wasmtime's text).
    log: Mutex<Vec<String>>,
}

/// Most lines of [`SubjectRunner::take_log`] kept per step.
const MAX_LOG_LINES: usize = 100;

impl SubjectRunner {
    pub(super) fn new(
        engine: Engine,
        command: CommandPre<StepState>,
        grant: Grant,
        sha256: String,
        step_deadline: Instant,
    ) -> SubjectRunner {
        SubjectRunner { engine, command, grant, sha256, step_deadline, log: Mutex::new(Vec::new()) }
    }

    /// The human-only lines about failed runs so far, emptied.
    pub fn take_log(&self) -> Vec<String> {
        self.log.lock().map(|mut log| std::mem::take(&mut *log)).unwrap_or_default()
    }

    fn note(&self, failure: SubjectFailure, detail: &str) {
        if let Ok(mut log) = self.log.lock() {
            if log.len() < MAX_LOG_LINES {
                log.push(format!("subject run {}: {}", failure.as_str(), detail.lines().next().unwrap_or_default()));
            }
        }
    }

    /// Runs the subject once with `args` (after a program name) and `stdin`.
    ///
    /// # Errors
    /// A [`SubjectFailure`] when it could not run to an exit code, or its
    /// output was cut; the details are kept for [`SubjectRunner::take_log`].
    pub async fn run(self: Arc<Self>, args: Vec<String>, stdin: Vec<u8>) -> Result<SubjectOutput, SubjectFailure> {
        let result = self.run_once(args, stdin).await;
        if let Err((failure, detail)) = &result {
            self.note(*failure, detail);
        }
        result.map_err(|(failure, _)| failure)
    }

    async fn run_once(&self, args: Vec<String>, stdin: Vec<u8>) -> Result<SubjectOutput, (SubjectFailure, String)> {
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
        let (mut store, _staging) =
            new_store(&self.engine, grant, io, None).map_err(|f| (SubjectFailure::CouldNotStart, f.to_string()))?;
        let now = Instant::now();
        let own = now + grant.limits.timeout;
        let deadline = self.step_deadline.min(own);
        limits::arm_deadline(&mut store, deadline);
        let backstop = deadline.saturating_duration_since(now) + 4 * limits::TICK;
        let command = self.command.clone();
        let call = async {
            let instance = command.instantiate_async(&mut store).await?;
            instance.wasi_cli_run().call_run(&mut store).await
        };
        let timed_out = || {
            let limit = deadline.saturating_duration_since(now);
            (SubjectFailure::TimedOut, format!("timed out after {}", crate::manifest::DurationSpec(round_ms(limit))))
        };
        let exit_code = match tokio::time::timeout(backstop, call).await {
            Err(_) => return Err(timed_out()),
            Ok(Ok(Ok(()))) => 0,
            Ok(Ok(Err(()))) => 1,
            Ok(Err(error)) => match error.downcast_ref::<I32Exit>() {
                Some(I32Exit(code)) => u32::try_from(*code).unwrap_or(1),
                None => {
                    let failure = classify_trap(&error, store.data(), grant);
                    let category = match failure {
                        super::Failure::Timeout(_) => return Err(timed_out()),
                        super::Failure::Memory(_) | super::Failure::Table => SubjectFailure::OutOfMemory,
                        super::Failure::Host(_) | super::Failure::Jail(_) => SubjectFailure::CouldNotStart,
                        super::Failure::Trap(_) | super::Failure::Plugin(_) => SubjectFailure::Trapped,
                    };
                    return Err((category, failure.to_string()));
                }
            },
        };
        drop(store);
        let (stdout, stderr) = (stdout.contents(), stderr.contents());
        if stdout.dropped + stderr.dropped > 0 {
            return Err((
                SubjectFailure::OutputCut,
                format!(
                    "printed {} bytes past the output cap of {}",
                    stdout.dropped + stderr.dropped,
                    crate::manifest::ByteSize(grant.limits.output)
                ),
            ));
        }
        Ok(Output { exit_code, stdout: stdout.bytes, stderr: stderr.bytes })
    }
}

/// `limit` rounded to whole milliseconds, for messages.
fn round_ms(limit: Duration) -> Duration {
    Duration::from_millis(u64::try_from(limit.as_millis()).unwrap_or(u64::MAX))
}

/// Aborts a spawned subject run when its caller stops waiting for it.
struct AbortOnDrop(tokio::task::JoinHandle<Result<SubjectOutput, SubjectFailure>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Host for StepState {
    async fn run(&mut self, args: Vec<String>, stdin: Vec<u8>) -> Result<Output, String> {
        let Some(runner) = self.subject.clone() else {
            return Err("this evaluator has no subject: set `subject` on its step in the pipeline".into());
        };
        // If the evaluator's call is dropped (its deadline passed), the
        // guard aborts the subject's task, which drops its Store.
        let mut task = AbortOnDrop(tokio::spawn(runner.run(args, stdin)));
        match (&mut task.0).await {
            Ok(result) => result.map_err(|failure| failure.as_str().to_string()),
            Err(_) => Err(SubjectFailure::CouldNotStart.as_str().to_string()),
        }
    }
}
