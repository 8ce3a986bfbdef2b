//! `cleanroom approve`, `reject`, `override`, `verdict` and `stats`: the
//! human side of runs ([`crate::governance`]).

use std::path::{Path, PathBuf};

use super::{err, fail, out, Output, EXIT_BAD_INPUT, EXIT_OK};
use crate::diag::{Code, Diagnostic};
use crate::governance::record::{self, Request};
use crate::governance::DecisionKind;

/// Who decides and why: the flags every decision takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Person {
    /// Who decides (an approver's name, as the pipeline lists it).
    #[arg(long = "as", value_name = "NAME")]
    pub by: String,
    /// Why: what was checked, and why it was decided so.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// The workspace whose runs to use (the directory holding `.cleanroom/`)
    /// [default: the nearest one at or above the current directory].
    #[arg(long)]
    pub workspace: Option<PathBuf>,
}

/// The workspace named, else the nearest directory at or above the current
/// one with run records, else the current directory.
pub(super) fn workspace(named: Option<PathBuf>) -> PathBuf {
    named
        .or_else(|| {
            let cwd = std::env::current_dir().ok()?;
            cwd.ancestors().find(|dir| crate::journal::runs_dir(dir).is_dir()).map(Path::to_path_buf)
        })
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The per-user key, or the exit code after saying why not.
pub(super) fn key(output: Output) -> Result<crate::key::Key, i32> {
    crate::key::Key::load().map_err(|reason| {
        let diagnostic = Diagnostic::new(Code::CR029, reason)
            .hint("runs are recorded with the key of the user who ran them; run as that user");
        fail(&diagnostic.into(), output)
    })
}

/// `[RUN] TARGET` as given: one argument is the target, two are run and target.
pub(super) fn run_and_target(args: &[String]) -> (Option<String>, String) {
    match args {
        [target] => (None, target.clone()),
        [run, target, ..] => (Some(run.clone()), target.clone()),
        [] => (None, String::new()),
    }
}

/// Records one decision and says what to do next.
pub(super) fn decide(
    kind: DecisionKind,
    run: Option<String>,
    target: String,
    accepted: bool,
    person: Person,
    output: Output,
) -> i32 {
    let workspace = workspace(person.workspace);
    let key = match key(output) {
        Ok(key) => key,
        Err(code) => return code,
    };
    let request = Request { kind, run, target, accepted, by: person.by, reason: person.reason };
    match record::record(&workspace, &key, &request) {
        Ok(recorded) => {
            let d = &recorded.decision;
            let next = match kind {
                DecisionKind::Approval | DecisionKind::Override => {
                    "; `cleanroom run --resume` continues the run".to_string()
                }
                DecisionKind::Verdict => String::new(),
            };
            let what = match kind {
                DecisionKind::Verdict => "the result".to_string(),
                _ => format!("`{}`", d.target),
            };
            if !output.quiet {
                out(&format!("{} {what} of run {} as {} at {}{next}\n", d.word(), recorded.run_id, d.by, d.at));
            }
            EXIT_OK
        }
        Err(diagnostic) => fail(&diagnostic.into(), output),
    }
}

/// `cleanroom stats`.
pub(super) fn stats(
    workspace: Option<PathBuf>,
    pipeline: Option<PathBuf>,
    since: Option<&str>,
    json: bool,
    output: Output,
) -> i32 {
    let since_ms = match since.map(|s| (s, crate::governance::time::parse_ms(s))) {
        None => None,
        Some((_, Some(ms))) => Some(ms),
        Some((text, None)) => {
            err(&format!(
                "error[CR026]: `--since {text}` is not a date\n  hint: write YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)\n"
            ));
            return EXIT_BAD_INPUT;
        }
    };
    let thresholds = match thresholds(pipeline) {
        Ok(t) => t,
        Err(diags) => return fail(&diags, output),
    };
    let workspace = self::workspace(workspace);
    let key = match key(output) {
        Ok(key) => key,
        Err(code) => return code,
    };
    let (runs, unreadable) = crate::journal::recorded_runs(&workspace, &key);
    let stats = crate::governance::stats::compute(&runs, unreadable, since_ms, thresholds);
    out(&if json {
        crate::governance::stats::render_json(&stats)
    } else {
        crate::governance::stats::render_human(&stats)
    });
    EXIT_OK
}

/// The thresholds of the pipeline named (or `cleanroom.toml` found as `run`
/// finds it, when there is one), else the defaults.
pub(super) fn thresholds(
    pipeline: Option<PathBuf>,
) -> Result<crate::governance::stats::Thresholds, crate::diag::Diagnostics> {
    let path = match pipeline {
        Some(path) => path,
        None => {
            let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            let found = crate::authoring::init::find_pipeline(&cwd);
            if !found.is_file() {
                return Ok(crate::governance::stats::Thresholds::default());
            }
            found
        }
    };
    let (manifest, source) = crate::manifest::Manifest::load(&path)?;
    let here = |span: std::ops::Range<usize>| source.locate(span.start);
    let mut diags = crate::diag::Diagnostics::default();
    let thresholds = crate::plan::approvals::thresholds(&manifest, &here, &mut diags);
    diags.into_result(thresholds)
}
