//! `cleanroom report [RUN]`: a past run's report, printed again.
//!
//! The report is the `report.json` the run wrote, accepted only when the
//! run's authenticated journal records its sha256 ([`crate::journal::past_run`]);
//! the decisions people recorded since (overrides, verdicts) are applied
//! from the same journal. Every format renders from that alone, so the
//! output is what the run printed, plus what people decided. `--history
//! --format html` renders every recorded run and the evaluators' agreement
//! with people as one page.

use std::path::PathBuf;

use super::{err, fail, out, Output, ReportFormat, EXIT_BAD_INPUT, EXIT_OK};

/// `cleanroom report`, once its flags are parsed.
pub(super) struct ReportCommand {
    pub(super) workspace: Option<PathBuf>,
    pub(super) run: Option<String>,
    pub(super) format: ReportFormat,
    pub(super) history: bool,
    pub(super) fail_on_override: bool,
}

pub(super) fn report(command: ReportCommand, output: Output) -> i32 {
    let workspace = super::governance::workspace(command.workspace);
    let key = match super::governance::key(output) {
        Ok(key) => key,
        Err(code) => return code,
    };
    if command.history {
        if command.format != ReportFormat::Html {
            err("error[CR026]: `--history` renders a page: add `--format html`\n  hint: `cleanroom report --history --format html > history.html`\n");
            return EXIT_BAD_INPUT;
        }
        let thresholds = match super::governance::thresholds(None) {
            Ok(t) => t,
            Err(diags) => return fail(&diags, output),
        };
        let (runs, unreadable) = crate::journal::recorded_runs(&workspace, &key);
        let stats = crate::governance::stats::compute(&runs, unreadable, None, thresholds);
        out(&crate::report::html::history(&runs, &stats));
        return EXIT_OK;
    }
    let run = match crate::journal::past_run(&workspace, &key, command.run.as_deref()) {
        Ok(run) => run,
        Err(diagnostic) => return fail(&diagnostic.into(), output),
    };
    let Some(report) = &run.report else {
        let diagnostic = crate::diag::Diagnostic::new(
            crate::diag::Code::CR033,
            format!("run `{}` has not written its report yet", run.run_id),
        )
        .hint("wait for it to finish, or resume it");
        return fail(&diagnostic.into(), output);
    };
    if command.format == ReportFormat::Html {
        out(&crate::report::html::render(report, &run.events));
        return super::run::exit_code(report, command.fail_on_override);
    }
    super::run::print_report(report, command.format.into(), output, command.fail_on_override)
}
