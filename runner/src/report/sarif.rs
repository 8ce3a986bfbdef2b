//! SARIF 2.1.0 (`--format sarif`), the format GitHub code scanning and
//! other code-review tools import.
//!
//! One run, `tool.driver` = cleanroom with one rule per `<step>/<rule>` pair
//! that reported something (a rule id means what its step's config makes
//! it mean, so the step is part of it), plus `cleanroom/step-error` for steps
//! that could not finish and `<evaluator>/scenario` for failing scenarios.
//! Paths are relative to the repository root (the nearest directory above
//! the workspace holding `.git`, else the workspace) with `%SRCROOT%` as
//! their base. Results without a file point at the step's line in the
//! pipeline file. Every result has a `primaryLocationLineHash` fingerprint
//! (rule, file, and the line's text, so it survives lines moving), which
//! GitHub uses to track alerts across commits.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::report::{RunReport, RunStatus, StepStatus};

/// Where SARIF files say the schema is (GitHub accepts this URI).
pub const SCHEMA_URI: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// A result before it becomes JSON.
struct Finding {
    rule: String,
    level: &'static str,
    message: String,
    /// Root-relative path, 1-based line and column.
    uri: String,
    line: Option<u32>,
    column: Option<u32>,
    /// Digest of the line's text when the run ended ([`super::facts`]).
    line_digest: Option<String>,
}

/// Renders `report` as one SARIF 2.1.0 document. A function of the report
/// alone: the plan facts it needs were recorded when the run ended.
pub fn render(report: &RunReport) -> String {
    let facts = &report.plan;
    let root = facts.repository_root.clone();
    let relative = |host: &Path| -> String {
        host.strip_prefix(&root).map_or_else(|_| host.display().to_string(), |p| p.to_string_lossy().into_owned())
    };
    let pipeline_uri = relative(&facts.pipeline_file);
    let mut rules: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut found: Vec<Finding> = Vec::new();
    for step in &report.steps {
        let doer = facts.doers.get(&step.id).cloned().unwrap_or_else(|| format!("step `{}`", step.id));
        let step_line = u32::try_from(step.line).ok().filter(|&l| l > 0);
        let at_step = |rule: String, level, message: String| Finding {
            rule,
            level,
            message,
            uri: pipeline_uri.clone(),
            line: step_line,
            column: None,
            line_digest: facts.step_line_digests.get(&step.id).cloned(),
        };
        for f in &step.findings {
            let rule = format!("{}/{}", step.id, f.rule);
            rules.entry(rule.clone()).or_insert_with(|| {
                (
                    format!("`{}` findings of step `{}`", f.rule, step.id),
                    format!(
                        "Rule `{}` as reported by {doer} in step `{}` of pipeline `{}`; \
                         its meaning comes from the step's config.",
                        f.rule, step.id, report.pipeline
                    ),
                )
            });
            let level = match f.severity.as_str() {
                "error" => "error",
                "warning" => "warning",
                _ => "note",
            };
            match &f.path {
                Some(path) => found.push(Finding {
                    rule,
                    level,
                    message: f.message.clone(),
                    uri: relative(&facts.workspace.join(path)),
                    line: f.line,
                    column: f.column,
                    line_digest: f.line_digest.clone(),
                }),
                None => found.push(at_step(rule, level, f.message.clone())),
            }
        }
        if step.status == StepStatus::Error {
            let rule = "cleanroom/step-error".to_string();
            rules.entry(rule.clone()).or_insert_with(|| {
                (
                    "A step could not finish".to_string(),
                    "The step timed out, ran out of memory, crashed, or its plugin reported an error.".to_string(),
                )
            });
            let reason = step.reason.clone().unwrap_or_else(|| "it could not finish".to_string());
            found.push(at_step(rule, "error", format!("step `{}` errored: {reason}", step.id)));
        }
        for scenario in step.evaluation.iter().flat_map(|e| &e.scenarios).filter(|s| !s.passed) {
            let rule = format!("{}/scenario", step.id);
            rules.entry(rule.clone()).or_insert_with(|| {
                (
                    format!("A scenario of evaluator `{}` failed", step.id),
                    format!("A scenario of evaluator `{}` passed in fewer runs than it requires.", step.id),
                )
            });
            let message = format!(
                "scenario `{}` passed {}/{} runs: {}",
                scenario.name, scenario.passes, scenario.runs, scenario.summary
            );
            found.push(at_step(rule, "error", message));
        }
    }

    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let results: Vec<Value> = found
        .iter()
        .map(|f| {
            let hash = line_hash(f);
            let occurrence = seen.entry(hash.clone()).or_insert(0);
            *occurrence += 1;
            let mut region = json!({ "startLine": f.line.filter(|&l| l > 0).unwrap_or(1) });
            if let Some(column) = f.column.filter(|&c| c > 0) {
                region["startColumn"] = json!(column);
            }
            json!({
                "ruleId": f.rule,
                "level": f.level,
                "kind": "fail",
                "message": { "text": f.message },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": f.uri, "uriBaseId": "%SRCROOT%" },
                        "region": region,
                    }
                }],
                "partialFingerprints": { "primaryLocationLineHash": format!("{hash}:{occurrence}") },
            })
        })
        .collect();
    let rules: Vec<Value> = rules
        .iter()
        .map(|(id, (short, full))| {
            json!({
                "id": id,
                "name": id.replace(['/', '-'], "_"),
                "shortDescription": { "text": short },
                "fullDescription": { "text": full },
                "help": { "text": format!(
                    "Reproduce with `cleanroom run {} --only {}`; the step's findings and output are in the report.",
                    pipeline_uri,
                    id.split('/').next().unwrap_or(id)
                ) },
            })
        })
        .collect();
    let root_uri = format!("file://{}/", root.display().to_string().trim_end_matches('/'));
    let document = json!({
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "cleanroom",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "automationDetails": { "id": format!("cleanroom/{}/", report.pipeline) },
            "originalUriBaseIds": { "%SRCROOT%": { "uri": root_uri } },
            "invocations": [{
                "executionSuccessful": report.status != RunStatus::Interrupted,
                "exitCode": if report.passed() { 0 } else { 1 },
                "properties": { "termination": report.termination.map(crate::report::Termination::as_str) },
            }],
            "results": results,
        }],
    });
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}

/// A fingerprint that survives the finding's line moving: rule, file and
/// the digest of the line's text (or the message when there is no line).
fn line_hash(f: &Finding) -> String {
    let text = match (f.line, &f.line_digest) {
        (Some(_), Some(digest)) => digest.clone(),
        _ => f.message.clone(),
    };
    let digest = Sha256::digest(format!("{}\0{}\0{text}", f.rule, f.uri).as_bytes());
    crate::plugin::hex(&digest[..8])
}
