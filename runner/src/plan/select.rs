//! Choosing which steps of a plan run: `run --only` and `run --skip`.
//!
//! Both take step ids or globs (`*` any run of characters, `?` one
//! character: `lint-*`). `--only` keeps the matching steps and everything
//! they need, directly or not (a step cannot run without its needs), and
//! drops the rest from the plan. `--skip` keeps the plan whole but marks the
//! matching steps [`Step::excluded`]: they are reported as skipped, and so is
//! everything that needs them. A pattern that matches no step is an error,
//! so a typo never silently runs everything.

use std::collections::BTreeSet;

use crate::diag::{suggest, Code, Diagnostic, Diagnostics};
use crate::plan::Plan;

/// Applies `only` (when not empty) and `skip` to `plan`.
///
/// # Errors
/// A `CR024` diagnostic for each pattern that matches no step.
pub fn select(mut plan: Plan, only: &[String], skip: &[String]) -> Result<Plan, Diagnostics> {
    let mut diags = Diagnostics::default();
    let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
    for (flag, patterns) in [("--only", only), ("--skip", skip)] {
        for pattern in patterns.iter().filter(|p| !ids.iter().any(|id| glob_match(p, id))) {
            let mut diagnostic = Diagnostic::new(Code::CR024, format!("{flag} `{pattern}` matches no step"));
            diagnostic = match suggest(pattern, ids.iter().copied()) {
                Some(near) => diagnostic.hint(format!("did you mean `{near}`? (`cleanroom list` shows every step)")),
                None => diagnostic.hint(format!("the steps are: {}", ids.join(", "))),
            };
            diags.push(diagnostic);
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    if !only.is_empty() {
        // Plan order is topological: walking it backwards, a kept step
        // keeps its needs before they are visited.
        let mut keep: BTreeSet<String> =
            plan.steps.iter().filter(|s| only.iter().any(|p| glob_match(p, &s.id))).map(|s| s.id.clone()).collect();
        for step in plan.steps.iter().rev() {
            if keep.contains(&step.id) {
                keep.extend(step.needs.iter().cloned());
            }
        }
        plan.retain_steps(|s| keep.contains(&s.id));
    }
    for step in plan.steps.iter_mut().filter(|s| skip.iter().any(|p| glob_match(p, &s.id))) {
        step.excluded = Some("skipped by --skip".to_string());
    }
    Ok(plan)
}

/// Whether `text` matches `pattern`, where `*` matches any run of
/// characters (also none) and `?` exactly one; everything else is literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Classic two-pointer match with backtracking to the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_match_ids_with_star_and_question_mark() {
        assert!(glob_match("lint-*", "lint-rust"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(glob_match("no-stub?", "no-stubs"));
        assert!(!glob_match("lint-*", "build"));
        assert!(!glob_match("no-stub?", "no-stub"));
        assert!(glob_match("build", "build"));
        assert!(!glob_match("build", "build-2"));
    }
}
