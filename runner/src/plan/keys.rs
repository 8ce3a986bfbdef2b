//! Which step keys apply to which steps: one table, one check.
//!
//! A key that does not apply to a step (a `write` on a check, `tools` on a
//! plugin step, `repeat` on a stage, `allow_hosts` on a native program) is
//! refused with `CR009`, never ignored: a setting that silently does
//! nothing is a setting someone relies on. [`RULES`] is the whole story;
//! [`refuse_inapplicable`] applies it before anything else reads the keys,
//! so no other module refuses a key for the kind of step it is on.

use std::ops::Range;

use crate::diag::{Code, Diagnostic, Diagnostics, Location};
use crate::manifest::StepTable;
use crate::plan::{Declared, StepKind};

/// What a step must be for a key to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// A `[stage.*]`.
    Stage,
    /// An `[evaluator.*]`.
    Evaluator,
    /// A native program (`run = [...]`).
    Run,
    /// A WebAssembly plugin (`plugin = ...`).
    Plugin,
}

impl Needs {
    fn met_by(self, kind: StepKind, runs_program: bool) -> bool {
        match self {
            Needs::Stage => kind == StepKind::Stage,
            Needs::Evaluator => kind == StepKind::Evaluator,
            Needs::Run => runs_program,
            Needs::Plugin => !runs_program,
        }
    }
}

/// One key's conditions, checked in order: the first one a step does not
/// meet is refused with its message and hint (`{kind}`, `{id}` and `{key}`
/// are filled in).
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The key as written in a step table.
    pub key: &'static str,
    /// Where the key is written in a table, if it is: its span, or `None`
    /// inside for a key kept without one (the step's header is pointed at).
    pub at: fn(&StepTable) -> Option<Option<Range<usize>>>,
    /// Conditions, each with the refusal when it is not met.
    pub needs: &'static [(Needs, &'static str, &'static str)],
}

/// A span, when the key is written.
fn span(span: Option<Range<usize>>) -> Option<Option<Range<usize>>> {
    span.map(Some)
}

const ONLY_EVALUATORS: (Needs, &str, &str) = (
    Needs::Evaluator,
    "{kind} `{id}` sets `{key}`, which only evaluators have",
    "remove it, or make the step an [evaluator.*]",
);
const SCORING_NOT_NATIVE: (Needs, &str, &str) = (
    Needs::Plugin,
    "evaluator `{id}` runs a native program, which cannot score scenarios, but sets `{key}`",
    "a `run` evaluator passes or fails by its exit status: remove the key, or judge with an evaluator plugin (`plugin = ...`), which can repeat, score and run a `subject`",
);
const ONLY_RUN: (Needs, &str, &str) = (
    Needs::Run,
    "step `{id}` sets `{key}`, which applies only to `run` steps",
    "plugins get no environment, tools or network; remove the key",
);
const ONLY_PLUGINS_NET: (Needs, &str, &str) = (
    Needs::Plugin,
    "step `{id}` sets `{key}`, which applies only to plugin steps",
    "a native program gets the network with `network = true`, and secrets with `secrets = [...]` as environment variables",
);

/// Every key that applies to some steps only. Keys not listed (`read`,
/// `needs`, `timeout`, `cache`, `secrets`, `retry`, ...) apply to every step
/// (`retry` has rules of its own: only gates retry, see [`super::gates`]).
pub const RULES: &[Rule] = &[
    Rule {
        key: "write",
        at: |t| span(t.write.first().map(|w| w.span())),
        needs: &[(
            Needs::Stage,
            "{kind} `{id}` asks for `write`, but only stages may write",
            "move the paths to `read`, or make the step a [stage.*] if it must change files",
        )],
    },
    Rule {
        key: "max_write",
        at: |t| span(t.max_write.as_ref().map(|m| m.span())),
        needs: &[(Needs::Stage, "{kind} `{id}` sets `max_write`, but only stages write", "remove `max_write`")],
    },
    Rule {
        key: "pids",
        at: |t| span(t.pids.as_ref().map(|p| p.span())),
        needs: &[(
            Needs::Run,
            "step `{id}` sets `pids`, which applies only to `run` steps",
            "remove `pids`: a plugin is one process",
        )],
    },
    Rule { key: "tools", at: |t| span(t.tools.first().map(|x| x.span())), needs: &[ONLY_RUN] },
    Rule { key: "env", at: |t| span(t.env.as_ref().map(|e| e.span())), needs: &[ONLY_RUN] },
    Rule { key: "network", at: |t| span(t.network.as_ref().map(|n| n.span())), needs: &[ONLY_RUN] },
    Rule { key: "toolchain", at: |t| span(t.toolchain.as_ref().map(|x| x.span())), needs: &[ONLY_RUN] },
    Rule { key: "cache_dirs", at: |t| span(t.cache_dirs.first().map(|x| x.span())), needs: &[ONLY_RUN] },
    Rule {
        key: "findings",
        at: |t| span(t.findings.as_ref().map(|x| x.span())),
        needs: &[(
            Needs::Run,
            "step `{id}` sets `findings`, which applies only to `run` steps",
            "a plugin reports its findings itself; remove the key",
        )],
    },
    Rule {
        key: "config",
        at: |t| span(t.config.as_ref().map(|c| c.span())),
        needs: &[(
            Needs::Plugin,
            "step `{id}` has `config`, but `run` steps take their settings as arguments",
            "pass settings in `run` or `env`",
        )],
    },
    Rule { key: "allow_hosts", at: |t| span(t.allow_hosts.as_ref().map(|a| a.span())), needs: &[ONLY_PLUGINS_NET] },
    Rule { key: "allow_private", at: |t| span(t.allow_private.as_ref().map(|a| a.span())), needs: &[ONLY_PLUGINS_NET] },
    Rule {
        key: "secret_headers",
        at: |t| span(t.secret_headers.first().map(|x| x.span())),
        needs: &[ONLY_PLUGINS_NET],
    },
    Rule { key: "max_requests", at: |t| span(t.max_requests.as_ref().map(|m| m.span())), needs: &[ONLY_PLUGINS_NET] },
    Rule {
        key: "repeat",
        at: |t| span(t.repeat.as_ref().map(|r| r.span())),
        needs: &[ONLY_EVALUATORS, SCORING_NOT_NATIVE],
    },
    Rule {
        key: "require",
        at: |t| span(t.require.as_ref().map(|r| r.span())),
        needs: &[ONLY_EVALUATORS, SCORING_NOT_NATIVE],
    },
    Rule {
        key: "threshold",
        at: |t| span(t.threshold.as_ref().map(|x| x.span())),
        needs: &[ONLY_EVALUATORS, SCORING_NOT_NATIVE],
    },
    Rule {
        key: "subject",
        at: |t| span(t.subject.as_ref().map(|x| x.span())),
        needs: &[ONLY_EVALUATORS, SCORING_NOT_NATIVE],
    },
    Rule {
        key: "service",
        at: |t| span(t.service.as_ref().map(|x| x.span())),
        needs: &[ONLY_EVALUATORS, SCORING_NOT_NATIVE],
    },
    Rule {
        key: "subject_read",
        at: |t| span(t.subject_read.first().map(|x| x.span())),
        needs: &[ONLY_EVALUATORS, SCORING_NOT_NATIVE],
    },
    Rule {
        key: "subject_timeout",
        at: |t| t.subject_timeout.is_some().then_some(None),
        needs: &[
            ONLY_EVALUATORS,
            (
                Needs::Plugin,
                "evaluator `{id}` runs a native program, which has no subject, but sets `subject_timeout`",
                "remove `subject_timeout`; `timeout` bounds the program",
            ),
        ],
    },
];

/// Refuses, with `CR009`, every key of step `d` that does not apply to it.
pub(crate) fn refuse_inapplicable(d: &Declared, here: &dyn Fn(Range<usize>) -> Location, diags: &mut Diagnostics) {
    let runs_program = d.table.run.is_some();
    let id = &d.id.get_ref().0;
    for rule in RULES {
        let Some(span) = (rule.at)(d.table) else { continue };
        let Some((_, message, hint)) = rule.needs.iter().find(|(needs, _, _)| !needs.met_by(d.kind, runs_program))
        else {
            continue;
        };
        let fill = |text: &str| text.replace("{kind}", d.kind.as_str()).replace("{id}", id).replace("{key}", rule.key);
        let at = here(span.unwrap_or_else(|| d.id.span()));
        diags.push(Diagnostic::new(Code::CR009, fill(message)).at(at).hint(fill(hint)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_names_a_key_the_table_can_find() {
        let table: StepTable = toml::from_str(
            "write = ['a']\nmax_write = '1MiB'\npids = 1\ntools = ['t']\nenv = { A = 'b' }\nnetwork = true\n\
             config = {}\nmemory = '1MiB'\nallow_hosts = ['https://a.b']\nallow_private = true\n\
             secret_headers = [{ secret = 's', host = 'h', header = 'x' }]\nrepeat = 1\nrequire = 1\nthreshold = 1.0\n\
             subject = 's'\nsubject_read = ['r']\nsubject_timeout = '1s'\nservice = 'api'\nrun = ['x']\n\
             max_requests = 1\nstop_on_plateau = 1\ntoolchain = 'rust'\ncache_dirs = ['target']\nfindings = 'sarif'\n",
        )
        .unwrap();
        for rule in RULES {
            assert!((rule.at)(&table).is_some(), "rule for `{}` cannot find the key", rule.key);
            assert!(!rule.needs.is_empty());
        }
    }
}
