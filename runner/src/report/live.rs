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
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::exec::{Observer, Update};

/// The live status line on stderr.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    state: Mutex<ProgressState>,
}

#[derive(Debug, Default)]
struct ProgressState {
    running: BTreeSet<String>,
    shown: bool,
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
        Progress { bar, started: Instant::now(), state: Mutex::new(ProgressState::default()) }
    }

    fn redraw(&self, state: &mut ProgressState) {
        if !state.shown && self.started.elapsed() >= Self::DELAY {
            state.shown = true;
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.bar.enable_steady_tick(Duration::from_millis(100));
        }
        let running: Vec<&str> = state.running.iter().map(String::as_str).collect();
        self.bar.set_message(if running.is_empty() { "-".to_string() } else { running.join(", ") });
        if state.round > 1 {
            self.bar.set_prefix(format!("round {}  ", state.round));
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Observer for Progress {
    fn update(&self, update: Update<'_>) {
        let Ok(mut state) = self.state.lock() else { return };
        match update {
            Update::RunStarted { .. } => {}
            Update::StepStarted { step, .. } => {
                state.running.insert(step.to_string());
            }
            Update::StepFinished { report, .. } => {
                state.running.remove(&report.id);
                self.bar.inc(1);
            }
            Update::RoundFinished { round, .. } => state.round = round + 1,
            Update::RunFinished { .. } => {
                self.bar.finish_and_clear();
                return;
            }
        }
        self.redraw(&mut state);
    }
}

/// `--format jsonl`: every update as a JSON line on stdout, flushed at once.
#[derive(Debug, Default)]
pub struct EventStream;

impl Observer for EventStream {
    fn update(&self, update: Update<'_>) {
        let line = super::jsonl::line(update);
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (`| head`) is not the run's problem.
        let _ = stdout.write_all(line.as_bytes()).and_then(|()| stdout.flush());
    }
}
