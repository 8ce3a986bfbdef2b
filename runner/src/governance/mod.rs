//! Governance: the human side of a run.
//!
//! A pipeline's `[approval.NAME]` gates stop a run until a person decides
//! (`cleanroom approve` / `reject`); `cleanroom override` accepts a failed
//! gate; `cleanroom verdict` records a person's judgement of a finished
//! run's result. Each is a [`Decision`]: who (as they named themselves with
//! `--as`, and the account that ran the command), when, why, and the
//! digests of the results decided on ([`Artifact`]), appended to the run's
//! authenticated journal as a `human_decision` event. Nothing rewrites a
//! run: a decision is a new line, and what it changes (a step shown as
//! `overridden`, an approval passed) is derived from the journal whenever
//! the run is resumed or its report is rendered.
//!
//! A decision holds only for the results it was made on: a resumed run
//! whose needed steps produced other results (their inputs changed) asks
//! again. [`approvals`] decides the gates, [`record`] checks and appends a
//! decision, [`stats`] measures how evaluators agree with people, and
//! [`time`] spells instants the way every decision records them.

pub mod approvals;
pub mod record;
pub mod stats;
pub mod time;

pub use crate::report::decisions::{
    apply, inputs_digest, latest_artifacts, ApprovalReport, ApprovalStatus, Artifact, Decision, DecisionKind,
};

/// The operating-system account running this process, by its real user
/// id (never `$USER`, which the caller sets): its name and uid.
pub fn os_user() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => format!("{} (uid {uid})", user.name),
        _ => format!("uid {uid}"),
    }
}
