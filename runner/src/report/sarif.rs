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
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::plan::{Action, Plan};
use crate::report::{RunReport, StepStatus};

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
    /// The host file, to read the line's text for the fingerprint.
    file: PathBuf,
}

/// Renders `report` of a run of `plan` as one SARIF 2.1.0 document.
pub fn render(report: &RunReport, plan: &Plan) -> String {
    let root = repository_root(&plan.workspace);
    let relative = |host: &Path| -> String {
        host.strip_prefix(&root).map_or_else(|_| host.display().to_string(), |p| p.to_string_lossy().into_owned())
    };
    let pipeline_file = fs_err::canonicalize(&plan.pipeline_file).unwrap_or_else(|_| plan.pipeline_file.clone());
    let pipeline_uri = relative(&pipeline_file);
    let mut rules: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut found: Vec<Finding> = Vec::new();
    for step in &report.steps {
        let Some(planned) = plan.steps.iter().find(|s| s.id == step.id) else { continue };
        let doer = match &planned.action {
            Action::Plugin(name) => format!("the `{name}` plugin"),
            Action::Command { display, .. } => format!("the command `{display}`"),
        };
        let at_step = |rule: String, level, message: String| Finding {
            rule,
            level,
            message,
            uri: pipeline_uri.clone(),
            line: u32::try_from(planned.line).ok().filter(|&l| l > 0),
            column: None,
            file: pipeline_file.clone(),
        };
        for f in &step.findings {
            let rule = format!("{}/{}", step.id, f.rule);
            rules.entry(rule.clone()).or_insert_with(|| {
                (
                    format!("`{}` findings of step `{}`", f.rule, step.id),
                    format!(
                        "Rule `{}` as reported by {doer} in step `{}` of pipeline `{}`; \
                         its meaning comes from the step's config.",
                        f.rule, step.id, plan.name
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
                    uri: relative(&plan.workspace.join(path)),
                    line: f.line,
                    column: f.column,
                    file: plan.workspace.join(path),
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
            "automationDetails": { "id": format!("cleanroom/{}/", plan.name) },
            "originalUriBaseIds": { "%SRCROOT%": { "uri": root_uri } },
            "invocations": [{
                "executionSuccessful": report.status != "interrupted",
                "exitCode": if report.passed() { 0 } else { 1 },
            }],
            "results": results,
        }],
    });
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}

/// The nearest directory at or above `workspace` that holds `.git`, else
/// the workspace itself.
fn repository_root(workspace: &Path) -> PathBuf {
    workspace.ancestors().find(|dir| dir.join(".git").exists()).unwrap_or(workspace).to_path_buf()
}

/// A fingerprint that survives the finding's line moving: rule, file and
/// the text of the line (or the message when there is no line to read).
fn line_hash(f: &Finding) -> String {
    let text = f
        .line
        .and_then(|line| {
            let content = fs_err::read(&f.file).ok()?;
            let line = String::from_utf8_lossy(&content).lines().nth((line as usize).checked_sub(1)?)?.to_string();
            Some(line.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| f.message.clone());
    let digest = Sha256::digest(format!("{}\0{}\0{text}", f.rule, f.uri).as_bytes());
    crate::plugin::hex(&digest[..8])
}
