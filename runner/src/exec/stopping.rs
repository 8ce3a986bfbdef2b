//! When the retry loop stops before its attempts run out: a plateau of an
//! evaluator's satisfaction, or the same failure fed back again and again.
//!
//! Both look only at what the executor already has: the score each gate
//! measured in each round (an evaluator's satisfaction, a check's error
//! findings), and the feedback lines each stage was
//! sent. [`Progress`] keeps both across rounds (and is rebuilt from the
//! journal on resume); the executor asks it, before sending a stage back,
//! whether it should stop instead. Budgets (`max_duration`,
//! `max_requests`) are checked where they are spent: before a step starts,
//! and before a request leaves.

use std::collections::BTreeMap;

/// Times the same normalised feedback may reach one stage before the loop
/// stops (`termination: repeating-failure`).
pub const REPEATS_BEFORE_STOP: u32 = 3;

/// What a gate's report says about progress, higher being better: an
/// evaluator's satisfaction; for a check, minus its error findings (a
/// passed check scores 0). `None` when it measured nothing: an error, a
/// skip, an evaluator whose service did not start.
pub fn score(report: &crate::report::StepReport) -> Option<f64> {
    use crate::report::StepStatus;
    match (&report.evaluation, report.kind, report.status) {
        (Some(evaluation), _, _) => Some(evaluation.satisfaction),
        (None, crate::plan::StepKind::Check, StepStatus::Passed | StepStatus::Failed) => {
            Some(-(report.error_count() as f64))
        }
        _ => None,
    }
}

/// What the loop remembers about its progress.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    /// Per gate (plan index): its [`score`] in each round it measured one.
    satisfaction: BTreeMap<usize, BTreeMap<u32, f64>>,
    /// Per (stage id, feedback signature): rounds that sent it back with it.
    signatures: BTreeMap<(String, String), u32>,
}

impl Progress {
    /// Records gate `gate`'s [`score`] in `round` (a rerun of the same
    /// round replaces it).
    pub fn measured(&mut self, gate: usize, round: u32, satisfaction: f64) {
        self.satisfaction.entry(gate).or_default().insert(round, satisfaction);
    }

    /// Whether gate `gate` has plateaued: over its measured rounds, the
    /// last `patience` did not rise above the best of those before them.
    /// Rounds in which it measured nothing (it errored, was skipped) do not
    /// count. Returns the best score it is stuck at.
    pub fn plateau(&self, gate: usize, patience: u32) -> Option<f64> {
        let measured: Vec<f64> = self.satisfaction.get(&gate)?.values().copied().collect();
        let patience = patience as usize;
        if measured.len() <= patience {
            return None;
        }
        let (before, recent) = measured.split_at(measured.len() - patience);
        let best_before = before.iter().copied().fold(f64::MIN, f64::max);
        let best_recent = recent.iter().copied().fold(f64::MIN, f64::max);
        // A tiny tolerance: 0.1 + 0.2 is not a rise.
        (best_recent <= best_before + 1e-9).then_some(best_before)
    }

    /// How many times `stage` has now been sent back with feedback whose
    /// signature is `signature`, counting this one. Counts never reset: a
    /// success elsewhere, or other feedback in between, does not make the
    /// same failure new again.
    pub fn count(&mut self, stage: &str, signature: &str) -> u32 {
        let count = self.signatures.entry((stage.to_string(), signature.to_string())).or_insert(0);
        *count += 1;
        *count
    }

    /// How many times `stage` was sent back with `signature` so far.
    pub fn seen(&self, stage: &str, signature: &str) -> u32 {
        self.signatures.get(&(stage.to_string(), signature.to_string())).copied().unwrap_or(0)
    }
}

/// The signature of a stage's feedback: its lines, lowercased, with every
/// hexadecimal run of 6 or more characters that has a digit (a hash, an
/// address, with or without `0x`) collapsed to `<hex>` and every other
/// run of digits to `<n>`.
/// So `failed 2/3` and `failed 3/3`, or two object addresses, are the same
/// failure; a different scenario or message is not.
pub fn signature(lines: &[String]) -> String {
    let text = lines.join("\n").to_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if token.is_empty() {
            return;
        }
        let digits = token.strip_prefix("0x").unwrap_or(token);
        let hex = digits.len() >= 6
            && digits.chars().all(|c| c.is_ascii_hexdigit())
            && digits.chars().any(|c| c.is_ascii_digit());
        if hex {
            out.push_str("<hex>");
        } else {
            let mut in_digits = false;
            for c in token.chars() {
                if c.is_ascii_digit() {
                    if !in_digits {
                        out.push_str("<n>");
                    }
                    in_digits = true;
                } else {
                    out.push(c);
                    in_digits = false;
                }
            }
        }
        token.clear();
    };
    for c in text.chars() {
        if c.is_alphanumeric() {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn signatures_collapse_numbers_and_hashes_only() {
        let a = signature(&lines(&["scenario expired: failed 2/3: expected exit 0, got another"]));
        let b = signature(&lines(&["scenario expired: failed 3/3: expected exit 0, got another"]));
        assert_eq!(a, b);
        let other = signature(&lines(&["scenario valid: failed 3/3: expected exit 0, got another"]));
        assert_ne!(a, other, "another scenario is another failure");
        assert_eq!(
            signature(&lines(&["panic at 0x7ffd3a2b10 in deadbeef42 line 17"])),
            "panic at <hex> in <hex> line <n>"
        );
        // A word made of hex letters only is a word.
        assert_eq!(signature(&lines(&["Facade added"])), "facade added");
        assert_eq!(signature(&lines(&["step build: exited with status 101"])), "step build: exited with status <n>");
    }

    #[test]
    fn counts_never_reset() {
        let mut progress = Progress::default();
        assert_eq!(progress.count("implement", "a"), 1);
        assert_eq!(progress.count("implement", "b"), 1);
        assert_eq!(progress.count("implement", "a"), 2, "other feedback in between does not reset it");
        assert_eq!(progress.count("other", "a"), 1, "counted per stage");
        assert_eq!(progress.count("implement", "a"), REPEATS_BEFORE_STOP);
        assert_eq!(progress.seen("implement", "a"), 3);
    }

    #[test]
    fn a_plateau_needs_patience_rounds_without_a_new_best() {
        let mut progress = Progress::default();
        assert_eq!(progress.plateau(0, 2), None, "nothing measured");
        progress.measured(0, 1, 0.5);
        progress.measured(0, 2, 0.5);
        assert_eq!(progress.plateau(0, 2), None, "two rounds are not two rounds after a first");
        progress.measured(0, 3, 0.25);
        assert_eq!(progress.plateau(0, 2), Some(0.5), "no rise above 0.5 in rounds 2 and 3");
        progress.measured(0, 4, 0.75);
        assert_eq!(progress.plateau(0, 2), None, "round 4 rose");
        // A rerun of a round replaces its measure.
        progress.measured(0, 4, 0.5);
        assert_eq!(progress.plateau(0, 2), Some(0.5));
        assert_eq!(progress.plateau(0, 1), Some(0.5));
        assert_eq!(progress.plateau(1, 1), None, "another gate");
    }
}
