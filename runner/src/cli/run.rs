//! `cleanroom run`: prepare the plan, run it, print the report.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{err, fail, out, Format, Output, EXIT_AWAITING, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK};
use crate::exec::{self, RunOptions, Selection};
use crate::report::{self, RunReport, RunStatus};

/// How long a run may take to stop cleanly after Ctrl-C before it is ended
/// anyway (a step stuck where it cannot be cancelled must not hold it).
const CTRL_C_GRACE: Duration = Duration::from_secs(10);

/// Ctrl-C must always end a run: the first stops it cleanly (the
/// executor's own handler); a second one, or the first once
/// [`CTRL_C_GRACE`] has passed, exits at once with [`EXIT_INTERRUPTED`].
/// A thread with a runtime of its own watches, so a scheduler whose workers
/// are all busy cannot delay it; commits replace each file whole, so an exit
/// mid-commit leaves no half-written file.
pub(super) fn exit_on_second_ctrl_c() {
    let watcher = std::thread::Builder::new().name("ctrl-c".into()).spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async {
            let kind = tokio::signal::unix::SignalKind::interrupt();
            let Ok(mut interrupts) = tokio::signal::unix::signal(kind) else { return };
            if interrupts.recv().await.is_none() {
                return;
            }
            tokio::select! {
                _ = interrupts.recv() => {}
                () = tokio::time::sleep(CTRL_C_GRACE) => {}
            }
            let _ = std::io::stderr().write_all(b"\ninterrupted: exiting now\n");
            #[expect(clippy::exit, reason = "a second Ctrl-C ends the process, whatever the run is doing")]
            std::process::exit(EXIT_INTERRUPTED);
        });
    });
    if let Err(e) = watcher {
        tracing::warn!("cannot watch for a second Ctrl-C: {e}");
    }
}

/// `cleanroom run`, once its flags are parsed.
pub(super) struct RunCommand {
    pub(super) pipeline: PathBuf,
    pub(super) format: Format,
    pub(super) selection: Selection,
    pub(super) dry_run: bool,
    pub(super) remote: super::worker::RemoteFlags,
    pub(super) fail_on_override: bool,
}

impl RunCommand {
    pub(super) fn execute(self, mut options: RunOptions, output: Output) -> i32 {
        let mut plan = match exec::prepare(&self.pipeline, &self.selection) {
            Ok(plan) => plan,
            Err(diags) => return fail(&diags, output),
        };
        plan.remote = match self.remote.apply(plan.remote.take()) {
            Ok(remote) => remote,
            Err(diags) => return fail(&diags, output),
        };
        if self.selection.files == Some(crate::git::FileSelection::Staged) {
            let staged = crate::git::FileSelection::Staged.files(&plan.workspace).unwrap_or_default();
            for file in crate::git::unstaged_among(&plan.workspace, &staged) {
                err(&format!("note: `{file}` also has unstaged changes; it is checked as it is in the working tree\n"));
            }
        }
        if !plan.not_selected.is_empty() && !output.quiet {
            err(&format!("not run (no file matches their `include`): {}\n", plan.not_selected.join(", ")));
        }
        if self.dry_run {
            out(&crate::plan::show::dry_run(&plan));
            return EXIT_OK;
        }
        options.ctrl_c = true;
        exit_on_second_ctrl_c();
        options.observer = match self.format {
            Format::Jsonl => Some(Arc::new(report::live::EventStream)),
            _ if std::io::stderr().is_terminal() && !output.quiet => Some(Arc::new(report::live::Progress::new())),
            _ => None,
        };
        let report = match crate::remote::run(&plan, &options) {
            Ok(report) => report,
            Err(diags) => return fail(&diags, output),
        };
        print_report(&report, self.format, output, self.fail_on_override)
    }
}

/// Prints `report` in `format` (nothing for `jsonl`, which streamed it),
/// warns about unjailed steps, and returns the exit code: what `run` and
/// `report` both do, so a past run prints as it did live.
pub(super) fn print_report(report: &RunReport, format: Format, output: Output, fail_on_override: bool) -> i32 {
    let style = report::human::Style { color: output.color, quiet: output.quiet, verbose: output.verbose > 0 };
    let text = match format {
        Format::Human => report::human::render(report, style),
        Format::Json => report::json::render(report),
        // Already streamed, `run_finished` last.
        Format::Jsonl => String::new(),
        Format::Junit => report::junit::render(report),
        Format::Sarif => report::sarif::render(report),
        Format::Html => report::html::render(report, &[]),
    };
    out(&text);
    for step in report.steps.iter().filter(|s| s.unjailed.is_some()) {
        err(&format!(
            "warning: step `{}` ran WITHOUT the kernel jail (--allow-unjailed): {}\n",
            step.id,
            step.unjailed.as_deref().unwrap_or_default()
        ));
    }
    if report.status == RunStatus::Interrupted && format != Format::Human {
        err("interrupted (Ctrl-C): nothing half-written; `cleanroom run --resume` continues the run\n");
    }
    if report.status == RunStatus::AwaitingApproval {
        err(&awaiting(report));
    }
    exit_code(report, fail_on_override)
}

/// What a run waiting for approvals waits for, and the commands to decide.
fn awaiting(report: &RunReport) -> String {
    let mut text = String::from("awaiting approval:\n");
    for gate in report.approvals.iter().filter(|a| a.status == crate::governance::ApprovalStatus::Awaiting) {
        let who = if gate.approvers.is_empty() { "anyone".to_string() } else { gate.approvers.join(", ") };
        let deadline = gate.deadline.as_ref().map(|d| format!("; fails closed at {d}")).unwrap_or_default();
        text.push_str(&format!(
            "  `{}` on the results of {} (approvers: {who}{deadline})\n",
            gate.name,
            gate.needs.join(", ")
        ));
        text.push_str(&format!(
            "  decide: cleanroom approve {run} {name} --as NAME --reason \"...\"   (or: cleanroom reject {run} {name} ...)\n",
            run = report.run_id,
            name = gate.name
        ));
    }
    text.push_str("  then:   cleanroom run --resume\n");
    text
}

/// The exit code a run's report stands for.
pub(super) fn exit_code(report: &RunReport, fail_on_override: bool) -> i32 {
    match report.status {
        RunStatus::Passed => EXIT_OK,
        RunStatus::Overridden if fail_on_override => EXIT_FAILED,
        RunStatus::Overridden => EXIT_OK,
        RunStatus::AwaitingApproval => EXIT_AWAITING,
        RunStatus::Interrupted => EXIT_INTERRUPTED,
        RunStatus::Failed => EXIT_FAILED,
    }
}
