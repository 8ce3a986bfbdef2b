//! Showing a run while it goes: the progress display and the event stream.
//!
//! Both are [`Observer`]s of the executor. [`Progress`] draws one status line
//! on stderr (what is running, how many steps are done, the elapsed time),
//! only on a terminal and only once the run has lasted longer than
//! [`Progress::DELAY`], and erases it before the report is printed, so the
//! report itself is never interleaved with it. [`EventStream`] writes one
//! JSON line per update to stdout (`--format jsonl`) as soon as it happens.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::events::{Event, Observer};

/// The live status line on stderr.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    state: Arc<Mutex<ProgressState>>,
}

#[derive(Debug, Default)]
struct ProgressState {
    running: BTreeSet<String>,
    finished: bool,
    round: u32,
}

impl Progress {
    /// Runs shorter than this never draw anything.
    pub const DELAY: Duration = Duration::from_millis(300);

    /// A hidden progress line; it appears on stderr once the run has lasted
    /// [`Self::DELAY`]. Create it only when stderr is a terminal.
    pub fn new() -> Progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix}{pos} done  running: {wide_msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let state = Arc::new(Mutex::new(ProgressState::default()));
        // Nothing is drawn for a short run; a long one shows the line even
        // while no step starts or ends.
        let (late_bar, late_state) = (bar.clone(), Arc::clone(&state));
        let _ = std::thread::Builder::new().name("cleanroom-progress".into()).spawn(move || {
            std::thread::sleep(Self::DELAY);
            if let Ok(state) = late_state.lock() {
                if !state.finished {
                    late_bar.set_draw_target(ProgressDrawTarget::stderr());
                    late_bar.enable_steady_tick(Duration::from_millis(100));
                    Progress::describe(&late_bar, &state);
                }
            }
        });
        Progress { bar, state }
    }

    /// Puts what is running (and the round, after a retry) on the line.
    fn describe(bar: &ProgressBar, state: &ProgressState) {
        let running: Vec<&str> = state.running.iter().map(String::as_str).collect();
        bar.set_message(if running.is_empty() { "-".to_string() } else { running.join(", ") });
        if state.round > 1 {
            bar.set_prefix(format!("round {}  ", state.round));
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Observer for Progress {
    fn event(&self, event: &Event) {
        let Ok(mut state) = self.state.lock() else { return };
        match event {
            Event::RunStarted { .. }
            | Event::GateDecision { .. }
            | Event::ServiceOutput { .. }
            | Event::ApprovalRequested { .. }
            | Event::HumanDecision(_) => {}
            Event::StepStarted { step, .. } => {
                state.running.insert(step.clone());
            }
            Event::StepFinished { report, .. } => {
                state.running.remove(&report.id);
                self.bar.inc(1);
            }
            Event::RoundFinished { round, .. } => state.round = round + 1,
            Event::RunFinished { .. } | Event::RunInterrupted { .. } | Event::RunAwaiting { .. } => {
                state.finished = true;
                self.bar.finish_and_clear();
                return;
            }
        }
        Progress::describe(&self.bar, &state);
    }
}

/// `--format jsonl`: every update as a JSON line on stdout, flushed at once.
#[derive(Debug, Default)]
pub struct EventStream;

impl Observer for EventStream {
    fn event(&self, event: &Event) {
        let Some(line) = super::jsonl::line(event) else { return };
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (`| head`) is not the run's problem.
        let _ = stdout.write_all(line.as_bytes()).and_then(|()| stdout.flush());
    }
}
