//! `cleanroom report [RUN]`: a past run's report, printed again.
//!
//! The report is the `report.json` the run wrote, accepted only when the
//! run's authenticated journal records its sha256 ([`crate::journal::past_report`]);
//! every format renders from it alone, so the output is what the run printed.

use std::path::{Path, PathBuf};

use super::{fail, Output, ReportFormat};

/// The nearest directory at or above `start` with run records in it.
fn nearest_workspace(start: &Path) -> Option<PathBuf> {
    start.ancestors().find(|dir| crate::journal::runs_dir(dir).is_dir()).map(Path::to_path_buf)
}

pub(super) fn report(workspace: Option<PathBuf>, run: Option<&str>, format: ReportFormat, output: Output) -> i32 {
    let workspace = workspace
        .or_else(|| std::env::current_dir().ok().and_then(|cwd| nearest_workspace(&cwd)))
        .unwrap_or_else(|| PathBuf::from("."));
    let key = match crate::key::Key::load() {
        Ok(key) => key,
        Err(reason) => {
            let diagnostic = crate::diag::Diagnostic::new(crate::diag::Code::CR029, reason)
                .hint("a report is read with the key of the user who ran it; run as that user");
            return fail(&diagnostic.into(), output);
        }
    };
    match crate::journal::past_report(&workspace, &key, run) {
        Ok(report) => super::run::print_report(&report, format.into(), output),
        Err(diagnostic) => fail(&diagnostic.into(), output),
    }
}
