//! `cleanroom report [RUN]`: a past run's report, printed again.
//!
//! The report is the `report.json` the run wrote, accepted only when the
//! run's authenticated journal records its sha256 ([`crate::journal::past_report`]);
//! every format renders from it alone, so the output is what the run printed.

use std::path::Path;

use super::{fail, Output, ReportFormat};

pub(super) fn report(workspace: &Path, run: Option<&str>, format: ReportFormat, output: Output) -> i32 {
    let key = match crate::key::Key::load() {
        Ok(key) => key,
        Err(reason) => {
            let diagnostic = crate::diag::Diagnostic::new(crate::diag::Code::CR029, reason)
                .hint("a report is read with the key of the user who ran it; run as that user");
            return fail(&diagnostic.into(), output);
        }
    };
    match crate::journal::past_report(workspace, &key, run) {
        Ok(report) => super::run::print_report(&report, format.into(), output),
        Err(diagnostic) => fail(&diagnostic.into(), output),
    }
}
