//! The subject capability, sandbox half: an evaluator runs the program
//! under evaluation (the plan half is [`crate::plan::subjects`]).
//!
//! The subject is a `wasi:cli` command component or a native program, built
//! or written by earlier steps. Each `subject.run(args, stdin)` call from an
//! evaluator starts it in a sandbox of its own, built from the subject's
//! grant and nothing else, on a separate task so the evaluator's Store is
//! never re-entered:
//!
//! * a component gets a fresh Store: its `read` mounts only, no
//!   environment, no network, its own deadline, memory and output caps;
//! * a native program gets a fresh kernel jail ([`super::jail`]): its
//!   `read` mounts and tools read-only, a private temporary directory, no
//!   network (a namespace of its own), its granted environment, a PID
//!   namespace that takes everything it started down with it, a pids
//!   cgroup, a memory cgroup when it has a cap, and the call's stdin. It is
//!   never run unjailed, whatever `--allow-unjailed` says.
//!
//! The evaluator sees only the exit code (all of it) and output; the
//! subject sees none of the evaluator's mounts, so it never sees the
//! scenarios, and nothing it writes outlives the call.
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

use std::path::PathBuf;

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

/// A subject ready to run, and the grant each of its runs gets.
pub struct SubjectRunner {
    program: Program,
    grant: Grant,
    /// No run may go past this instant: the evaluator step's deadline.
    step_deadline: Instant,
    /// Human-only lines about failed runs (category and wasmtime's text).
    log: Mutex<Vec<String>>,
}

/// What a subject runs.
enum Program {
    /// A compiled `wasi:cli` command.
    Component { engine: Engine, command: CommandPre<StepState> },
    /// A native program, run in a fresh jail per call.
    Native(NativeProgram),
}

/// A native subject program and what starting it in the jail needs.
#[derive(Debug, Clone)]
pub struct NativeProgram {
    /// The jail helper (the `cleanroom` binary).
    pub helper: PathBuf,
    /// The program (absolute).
    pub program: PathBuf,
    /// Arguments before each call's own.
    pub args: Vec<String>,
    /// The canonical workspace: its working directory.
    pub workspace: PathBuf,
}

/// Most lines of [`SubjectRunner::take_log`] kept per step.
const MAX_LOG_LINES: usize = 100;

impl SubjectRunner {
    pub(super) fn component(
        engine: Engine,
        command: CommandPre<StepState>,
        grant: Grant,
        step_deadline: Instant,
    ) -> SubjectRunner {
        SubjectRunner::with(Program::Component { engine, command }, grant, step_deadline)
    }

    /// A native subject run with `grant` (a native grant: its reads, tools,
    /// environment and limits), no run going past `step_deadline`.
    pub fn native(program: NativeProgram, grant: Grant, step_deadline: Instant) -> Arc<SubjectRunner> {
        Arc::new(SubjectRunner::with(Program::Native(program), grant, step_deadline))
    }

    fn with(program: Program, grant: Grant, step_deadline: Instant) -> SubjectRunner {
        SubjectRunner { program, grant, step_deadline, log: Mutex::new(Vec::new()) }
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
        match &self.program {
            Program::Component { engine, command } => self.run_component(engine, command, args, stdin).await,
            Program::Native(native) => self.run_native(native, args, stdin).await,
        }
    }

    /// One call of a native subject in a fresh jail.
    async fn run_native(
        &self,
        native: &NativeProgram,
        args: Vec<String>,
        stdin: Vec<u8>,
    ) -> Result<SubjectOutput, (SubjectFailure, String)> {
        let grant = &self.grant;
        let argv: Vec<String> = native.args.iter().cloned().chain(args).collect();
        // A subject gets no secrets and no network: its grant has neither.
        let secrets = crate::secrets::Secrets::default();
        let jail = super::jail::step::StepJail::build(super::jail::step::NativeStep {
            program: &native.program,
            args: &argv,
            grant,
            workspace: &native.workspace,
            staged: Vec::new(),
            stage: None,
            secrets: &secrets,
            allow_unjailed: false,
            stdin: Some(&stdin),
            build_dirs: &[],
        })
        .map_err(|reason| (SubjectFailure::CouldNotStart, reason))?;
        let now = Instant::now();
        let deadline = self.step_deadline.min(now + grant.limits.timeout);
        let limit = deadline.saturating_duration_since(now);
        let outcome = super::jail::run(&native.helper, &jail.spec, limit, grant.limits.output).await;
        let exit = match outcome.result {
            Ok(exit) => exit,
            Err(super::Failure::Timeout(_)) => {
                return Err((
                    SubjectFailure::TimedOut,
                    format!("timed out after {}", crate::manifest::DurationSpec(round_ms(limit))),
                ))
            }
            Err(failure) => return Err((SubjectFailure::CouldNotStart, failure.to_string())),
        };
        if jail.out_of_memory() {
            let cap = grant.native().and_then(|n| n.memory).unwrap_or_default();
            return Err((
                SubjectFailure::OutOfMemory,
                format!("killed past its memory cap of {}", crate::manifest::ByteSize(cap)),
            ));
        }
        let exit_code = match (exit.code, exit.signal) {
            (Some(code), _) => u32::try_from(code).unwrap_or(1),
            (None, signal) => {
                let signal = signal.map_or_else(|| "an unknown signal".to_string(), |s| format!("signal {s}"));
                return Err((SubjectFailure::Trapped, format!("killed by {signal}")));
            }
        };
        let (stdout, stderr) = (outcome.stdout, outcome.stderr);
        if stdout.dropped + stderr.dropped > 0 {
            return Err(output_cut(stdout.dropped + stderr.dropped, grant.limits.output));
        }
        Ok(Output { exit_code, stdout: stdout.bytes, stderr: stderr.bytes })
    }

    /// One call of a component subject in a fresh Store.
    async fn run_component(
        &self,
        engine: &Engine,
        command: &CommandPre<StepState>,
        args: Vec<String>,
        stdin: Vec<u8>,
    ) -> Result<SubjectOutput, (SubjectFailure, String)> {
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
            env: Vec::new(),
        };
        let (mut store, _staging) = new_store(engine, grant, io, super::Judged::default())
            .map_err(|f| (SubjectFailure::CouldNotStart, f.to_string()))?;
        let now = Instant::now();
        let own = now + grant.limits.timeout;
        let deadline = self.step_deadline.min(own);
        limits::arm_deadline(&mut store, deadline);
        let backstop = deadline.saturating_duration_since(now) + 4 * limits::TICK;
        let command = command.clone();
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
            return Err(output_cut(stdout.dropped + stderr.dropped, grant.limits.output));
        }
        Ok(Output { exit_code, stdout: stdout.bytes, stderr: stderr.bytes })
    }
}

/// A run that printed `dropped` bytes past its cap of `cap`.
fn output_cut(dropped: u64, cap: u64) -> (SubjectFailure, String) {
    (
        SubjectFailure::OutputCut,
        format!("printed {dropped} bytes past the output cap of {}", crate::manifest::ByteSize(cap)),
    )
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
