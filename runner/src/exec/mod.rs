//! The executor: loads a plan's plugins and runs its steps as a DAG.
//!
//! Steps whose `needs` all passed run concurrently, at most `jobs` at a time,
//! each in its own sandboxed invocation; a step whose `needs` did not pass is
//! `skipped`. One step's failure never aborts its siblings. The executor
//! takes a [`Plan`] and never reads TOML or builds a sandbox by hand.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;

use crate::diag::{Code, Diagnostic, Diagnostics, Location};
use crate::plan::{Plan, Step};
use crate::report::{FindingReport, RunReport, StepReport, StepStatus};
use crate::sandbox::{Finding, GuestMount, Invocation, LoadedPlugin, Outcome, Sandbox, Severity};

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Steps running at once; at least 1.
    pub jobs: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { jobs: std::thread::available_parallelism().map_or(1, |n| n.get()) }
    }
}

/// Compiles and links every plugin a step of `plan` uses.
///
/// # Errors
/// A `CR011` diagnostic per plugin wasmtime rejects.
pub fn load_plugins(plan: &Plan, sandbox: &Sandbox) -> Result<BTreeMap<String, LoadedPlugin>, Diagnostics> {
    let mut loaded = BTreeMap::new();
    let mut diags = Diagnostics::default();
    for step in &plan.steps {
        if loaded.contains_key(&step.plugin) {
            continue;
        }
        let Some(info) = plan.plugins.get(&step.plugin) else { continue };
        match sandbox.load(&step.plugin, info) {
            Ok(plugin) => {
                loaded.insert(step.plugin.clone(), plugin);
            }
            Err(e) => diags.push(
                Diagnostic::new(Code::CR011, e.to_string())
                    .at(Location::Path(info.path.clone()))
                    .hint("rebuild the plugin against wit/plugin.wit for the wasm32-wasip2 target"),
            ),
        }
    }
    diags.into_result(loaded)
}

/// Loads `plan`'s plugins and runs every step.
///
/// # Errors
/// Diagnostics when the engine cannot start or a plugin cannot be loaded;
/// nothing has run then. Step failures are not errors: they are in the report.
pub fn run(plan: &Plan, options: &RunOptions) -> Result<RunReport, Diagnostics> {
    let sandbox = Sandbox::new().map_err(|e| Diagnostics::from(Diagnostic::new(Code::CR011, e.to_string())))?;
    let plugins = load_plugins(plan, &sandbox)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.jobs.max(1))
        .enable_all()
        .build()
        .map_err(|e| Diagnostics::from(Diagnostic::new(Code::CR011, format!("cannot start the scheduler: {e}"))))?;
    Ok(runtime.block_on(execute(plan, Arc::new(sandbox), plugins, options.jobs.max(1))))
}

/// Runs the DAG to completion on the current tokio runtime.
async fn execute(plan: &Plan, sandbox: Arc<Sandbox>, plugins: BTreeMap<String, LoadedPlugin>, jobs: usize) -> RunReport {
    let started = Instant::now();
    let index: BTreeMap<&str, usize> = plan.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    let mut reports: Vec<Option<StepReport>> = vec![None; plan.steps.len()];
    let mut launched = vec![false; plan.steps.len()];
    let mut running = JoinSet::new();

    loop {
        for (i, step) in plan.steps.iter().enumerate() {
            if launched[i] {
                continue;
            }
            let blocker = step.needs.iter().find_map(|need| {
                reports[index[need.as_str()]].as_ref().filter(|r| r.status != StepStatus::Passed).map(|r| (need, r.status))
            });
            if let Some((need, status)) = blocker {
                launched[i] = true;
                let reason = format!("needs `{need}`, which {}", if status == StepStatus::Skipped { "was skipped" } else { "did not pass" });
                reports[i] = Some(StepReport::skipped(&step.id, step.kind, reason));
                continue;
            }
            let ready = step.needs.iter().all(|need| reports[index[need.as_str()]].is_some());
            if ready && running.len() < jobs {
                launched[i] = true;
                let sandbox = Arc::clone(&sandbox);
                let plugin = plugins.get(&step.plugin).cloned();
                let step = step.clone();
                running.spawn(async move { (i, run_step(&sandbox, plugin, &step).await) });
            }
        }
        // Plan order is topological, so one pass has skipped every step whose
        // needs failed and launched every ready one: with nothing running,
        // nothing is left.
        if running.is_empty() {
            break;
        }
        match running.join_next().await {
            Some(Ok((i, report))) => reports[i] = Some(report),
            Some(Err(join_error)) => {
                // A panic inside a step task is a bug in the runner; record it
                // against no step rather than losing the others.
                tracing::error!("a step task failed: {join_error}");
            }
            None => {}
        }
    }

    let steps = reports
        .into_iter()
        .zip(&plan.steps)
        .map(|(report, step)| {
            report.unwrap_or_else(|| StepReport {
                status: StepStatus::Error,
                reason: Some("the runner lost this step's result (internal error)".into()),
                ..StepReport::skipped(&step.id, step.kind, String::new())
            })
        })
        .collect();
    RunReport::new(plan.name.clone(), started.elapsed(), steps)
}

/// Runs one check step and turns its outcome into a report.
async fn run_step(sandbox: &Sandbox, plugin: Option<LoadedPlugin>, step: &Step) -> StepReport {
    let invocation = Invocation {
        step: step.id.clone(),
        config: step.config.clone(),
        mounts: step.grant.mounts.iter().map(|m| GuestMount { path: m.guest.clone(), writable: m.writable }).collect(),
        attempt: 1,
        feedback: Vec::new(),
    };
    let Some(plugin) = plugin else {
        let mut report = StepReport::skipped(&step.id, step.kind, String::new());
        report.status = StepStatus::Error;
        report.reason = Some(format!("plugin `{}` was not loaded (internal error)", step.plugin));
        return report;
    };
    let outcome: Outcome<Vec<Finding>> = sandbox.run_check(&plugin, &step.grant, &invocation).await;
    let (status, reason, findings) = match outcome.result {
        Ok(findings) => {
            let findings: Vec<FindingReport> = findings.into_iter().map(finding_report).collect();
            let failed = findings.iter().any(|f| f.severity == "error");
            (if failed { StepStatus::Failed } else { StepStatus::Passed }, None, findings)
        }
        Err(failure) => (StepStatus::Error, Some(failure.to_string()), Vec::new()),
    };
    StepReport {
        id: step.id.clone(),
        kind: step.kind,
        status,
        duration: outcome.duration,
        reason,
        findings,
        stdout: String::from_utf8_lossy(&outcome.stdout.bytes).into_owned(),
        stderr: String::from_utf8_lossy(&outcome.stderr.bytes).into_owned(),
        output_dropped_bytes: outcome.stdout.dropped + outcome.stderr.dropped,
    }
}

/// A guest finding as reported: guest paths (`/src/a.rs`) become
/// workspace-relative (`src/a.rs`).
fn finding_report(f: Finding) -> FindingReport {
    FindingReport {
        rule: f.rule,
        severity: match f.severity {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        },
        message: f.message,
        path: f.path.map(|p| p.trim_start_matches('/').to_string()),
        line: f.line,
        column: f.column,
    }
}
