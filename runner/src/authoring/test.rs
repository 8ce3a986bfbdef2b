//! `cleanroom plugin test PLUGIN.wasm [CASES]`: a plugin's tests, as data.
//!
//! Each directory below CASES (default `tests/`) that holds a `case.toml`
//! is one case: `files/` is the workspace the step sees, `case.toml` gives
//! the step's config and mounts and what must come out (status, exact
//! findings for checks, scenarios for evaluators, an `expected/` tree for
//! stages). A case runs as a one-step pipeline through the same plan,
//! sandbox and executor as `cleanroom run`, on a copy of `files/`, so the
//! fixtures are never touched. The format is in docs/authoring.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Code, Diagnostic, Diagnostics, Location, SourceMap};
use crate::exec::RunOptions;
use crate::plan::StepKind;
use crate::plugin::World;
use crate::report::{FindingReport, StepReport, StepStatus};

/// `case.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    config: Option<toml::Table>,
    #[serde(default)]
    read: Option<Vec<String>>,
    #[serde(default)]
    write: Option<Vec<String>>,
    #[serde(default)]
    subject: Option<Spanned<String>>,
    status: Spanned<String>,
    #[serde(default)]
    findings: Option<Vec<ExpectedFinding>>,
    #[serde(default)]
    scenarios: Option<Vec<ExpectedScenario>>,
}

/// A finding a case expects; unset fields match anything.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedFinding {
    rule: String,
    path: Option<String>,
    line: Option<u32>,
    severity: Option<String>,
    message: Option<String>,
}

/// A scenario a case expects.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedScenario {
    name: String,
    passed: bool,
}

/// How one case went.
#[derive(Debug)]
pub struct CaseResult {
    /// The case directory's name.
    pub name: String,
    /// Empty when the case passed; else one line per difference.
    pub problems: Vec<String>,
    /// The step's report (for `-v`).
    pub report: StepReport,
}

/// Runs every case below `cases` against `plugin`.
///
/// # Errors
/// `CR026` when the plugin is unusable, there are no cases, or a
/// `case.toml` is invalid (with file:line:col); nothing ran then.
pub fn run_cases(plugin: &Path, cases: &Path, options: &RunOptions) -> Result<Vec<CaseResult>, Diagnostics> {
    let info = crate::plugin::inspect(plugin).map_err(|e| {
        Diagnostics::from(
            Diagnostic::new(Code::CR026, e.to_string())
                .at(Location::Path(plugin.to_path_buf()))
                .hint("build the plugin first (./build.sh)"),
        )
    })?;
    let kind = match info.world {
        World::Check => StepKind::Check,
        World::Stage => StepKind::Stage,
        World::Evaluator => StepKind::Evaluator,
        other => {
            return Err(Diagnostic::new(Code::CR026, format!("`{}` implements {other}", plugin.display()))
                .hint("`plugin test` takes a check, stage or evaluator plugin")
                .into())
        }
    };
    let plugin = fs_err::canonicalize(plugin).unwrap_or_else(|_| plugin.to_path_buf());
    let mut dirs: Vec<PathBuf> = fs_err::read_dir(cases)
        .map_err(|e| {
            Diagnostics::from(
                Diagnostic::new(Code::CR026, format!("cannot read the test cases: {e}"))
                    .hint("give the directory holding <case>/case.toml as the second argument"),
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.toml").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(Diagnostic::new(Code::CR026, format!("no test cases in `{}`", cases.display()))
            .hint("a case is a directory with case.toml and files/ (see docs/authoring.md)")
            .into());
    }
    let parsed: Vec<(PathBuf, CaseFile, SourceMap)> =
        dirs.into_iter().map(|dir| read_case(&dir).map(|(c, s)| (dir, c, s))).collect::<Result<_, _>>()?;
    let mut results = Vec::new();
    for (dir, case, source) in parsed {
        results.push(run_case(&plugin, kind, &dir, &case, &source, options)?);
    }
    Ok(results)
}

fn read_case(dir: &Path) -> Result<(CaseFile, SourceMap), Diagnostics> {
    let path = dir.join("case.toml");
    let text = fs_err::read_to_string(&path).map_err(|e| {
        Diagnostics::from(Diagnostic::new(Code::CR026, format!("cannot read `{}`: {e}", path.display())))
    })?;
    let source = SourceMap::new(&path, &text);
    let case: CaseFile = toml::from_str(&text).map_err(|e| {
        let mut d = Diagnostic::new(Code::CR026, format!("invalid test case: {}", e.message().trim()));
        d = d.at(e.span().map_or(Location::Path(path.clone()), |s| source.locate(s.start)));
        Diagnostics::from(d.hint("see the case.toml format in docs/authoring.md"))
    })?;
    if !matches!(case.status.get_ref().as_str(), "passed" | "failed" | "error") {
        return Err(Diagnostic::new(Code::CR026, format!("`status = \"{}\"` is not a status", case.status.get_ref()))
            .at(source.locate(case.status.span().start))
            .hint("use \"passed\", \"failed\" or \"error\"")
            .into());
    }
    if !dir.join("files").is_dir() {
        return Err(Diagnostic::new(Code::CR026, format!("`{}` has no files/ directory", dir.display()))
            .at(Location::Path(dir.to_path_buf()))
            .hint("create files/ with the workspace the step should see (it may be empty)")
            .into());
    }
    Ok((case, source))
}

fn run_case(
    plugin: &Path,
    kind: StepKind,
    dir: &Path,
    case: &CaseFile,
    source: &SourceMap,
    options: &RunOptions,
) -> Result<CaseResult, Diagnostics> {
    let name = dir.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let scratch = crate::scratch::dir("plugin-test-").map_err(|e| {
        Diagnostics::from(Diagnostic::new(Code::CR026, format!("cannot make a scratch directory: {e}")))
    })?;
    let workspace = scratch.path().join("workspace");
    copy_tree(&dir.join("files"), &workspace).map_err(|e| {
        Diagnostics::from(Diagnostic::new(Code::CR026, format!("cannot copy `{}`: {e}", dir.join("files").display())))
    })?;

    let mut step = toml::Table::new();
    step.insert("plugin".into(), "plugin".into());
    let (default_read, default_write) =
        if kind == StepKind::Stage { (vec![], vec![".".to_string()]) } else { (vec![".".to_string()], vec![]) };
    let strings = |v: &[String]| toml::Value::Array(v.iter().map(|s| s.as_str().into()).collect());
    step.insert("read".into(), strings(case.read.as_deref().unwrap_or(&default_read)));
    if kind == StepKind::Stage {
        step.insert("write".into(), strings(case.write.as_deref().unwrap_or(&default_write)));
    }
    if let Some(config) = &case.config {
        step.insert("config".into(), toml::Value::Table(config.clone()));
    }
    if let Some(subject) = &case.subject {
        // The subject must lie inside the workspace: copy it in.
        let from = dir.join(subject.get_ref());
        let copy = workspace.join(".plugin-test-subject.wasm");
        if let Err(e) = fs_err::copy(&from, &copy) {
            return Err(Diagnostic::new(Code::CR026, format!("cannot read the subject: {e}"))
                .at(source.locate(subject.span().start))
                .hint("build it first (./build.sh), or fix `subject` (relative to the case directory)")
                .into());
        }
        step.insert("subject".into(), ".plugin-test-subject.wasm".into());
    }
    let mut pipeline = toml::Table::new();
    let mut header = toml::Table::new();
    header.insert("name".into(), "plugin-test".into());
    header.insert("workspace".into(), "workspace".into());
    pipeline.insert("pipeline".into(), toml::Value::Table(header));
    let mut plugins = toml::Table::new();
    plugins.insert("plugin".into(), plugin.display().to_string().into());
    pipeline.insert("plugins".into(), toml::Value::Table(plugins));
    let mut steps = toml::Table::new();
    steps.insert("case".into(), toml::Value::Table(step));
    pipeline.insert(kind.as_str().into(), toml::Value::Table(steps));
    // The case's pipeline is made in memory: nothing is written to be read
    // back. Its path only anchors relative paths (the scratch directory).
    let pipeline_file = scratch.path().join("pipeline.toml");
    let text = toml::to_string(&pipeline).unwrap_or_default();
    let source = SourceMap::new(&pipeline_file, &text);
    // A case whose settings the planner refuses (a mount that is not in
    // files/, say) is reported against case.toml.
    let plan = crate::manifest::Manifest::parse(&text, &source)
        .map_err(Diagnostics::from)
        .and_then(|manifest| crate::plan::Plan::resolve(&manifest, &source))
        .map_err(|diags| {
            let mut out = Diagnostics::default();
            for d in diags.0 {
                out.push(Diagnostic { location: Some(Location::Path(dir.join("case.toml"))), ..d });
            }
            out
        })?;
    let mut options = options.clone();
    options.cache = false;
    options.resume = false;
    options.observer = None;
    let mut report = crate::exec::run(&plan, &options)?;
    let step_report = report.steps.remove(0);
    let mut problems = Vec::new();
    if step_report.status.as_str() != case.status.get_ref() {
        let why = step_report.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        problems.push(format!("status: expected {}, got {}{why}", case.status.get_ref(), step_report.status.as_str()));
    }
    if let Some(expected) = &case.findings {
        problems.extend(compare_findings(expected, &step_report.findings));
    } else if kind == StepKind::Check && step_report.status != StepStatus::Error && !step_report.findings.is_empty() {
        problems.extend(step_report.findings.iter().map(|f| format!("unexpected finding: {}", describe(f))));
    }
    if let Some(expected) = &case.scenarios {
        let got: BTreeMap<&str, bool> =
            step_report.evaluation.iter().flat_map(|e| &e.scenarios).map(|s| (s.name.as_str(), s.passed)).collect();
        for want in expected {
            match got.get(want.name.as_str()) {
                None => problems.push(format!("scenario `{}`: expected, but the plugin did not list it", want.name)),
                Some(&passed) if passed != want.passed => problems.push(format!(
                    "scenario `{}`: expected {}, got {}",
                    want.name,
                    if want.passed { "passed" } else { "failed" },
                    if passed { "passed" } else { "failed" }
                )),
                Some(_) => {}
            }
        }
        for extra in got.keys().filter(|name| !expected.iter().any(|w| &w.name == *name)) {
            problems.push(format!("scenario `{extra}`: not expected"));
        }
    }
    let expected_tree = dir.join("expected");
    if expected_tree.is_dir() {
        let write = case.write.clone().unwrap_or(default_write);
        problems.extend(compare_trees(&expected_tree, &workspace, &write));
    }
    // The plugin chose much of this text: nothing in it may redraw the terminal.
    let problems = problems.iter().map(|p| crate::report::escape_controls(p, false).into_owned()).collect();
    Ok(CaseResult { name, problems, report: step_report })
}

/// Each expected finding must match a distinct actual one, and there must
/// be no actual finding left over.
fn compare_findings(expected: &[ExpectedFinding], actual: &[FindingReport]) -> Vec<String> {
    let mut left: Vec<&FindingReport> = actual.iter().collect();
    let mut problems = Vec::new();
    for want in expected {
        let matches = |f: &&FindingReport| {
            f.rule == want.rule
                && want.path.as_ref().is_none_or(|p| f.path.as_deref() == Some(p.trim_start_matches('/')))
                && want.line.is_none_or(|l| f.line == Some(l))
                && want.severity.as_ref().is_none_or(|s| &f.severity == s)
                && want.message.as_ref().is_none_or(|m| f.message.contains(m.as_str()))
        };
        match left.iter().position(matches) {
            Some(i) => {
                left.remove(i);
            }
            None => {
                let place =
                    [want.path.clone(), want.line.map(|l| l.to_string())].into_iter().flatten().collect::<Vec<_>>();
                problems.push(format!(
                    "missing finding: {} at {}",
                    want.rule,
                    if place.is_empty() { "-".into() } else { place.join(":") }
                ));
            }
        }
    }
    problems.extend(left.iter().map(|f| format!("unexpected finding: {}", describe(f))));
    problems
}

fn describe(f: &FindingReport) -> String {
    let place = [f.path.clone(), f.line.map(|l| l.to_string()), f.column.map(|c| c.to_string())]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(":");
    format!("{} {} at {} ({})", f.severity, f.rule, if place.is_empty() { "-" } else { &place }, f.message)
}

/// Files below each write mount of `workspace` against the same paths below `expected`.
fn compare_trees(expected: &Path, workspace: &Path, write: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    for mount in write {
        let (want, got) = (files_below(&expected.join(mount)), files_below(&workspace.join(mount)));
        for (path, bytes) in &want {
            match got.get(path) {
                None => problems.push(format!("expected file `{}` was not written", path.display())),
                Some(actual) if actual != bytes => {
                    problems.push(format!("file `{}` differs from expected/", path.display()))
                }
                Some(_) => {}
            }
        }
        for path in got.keys().filter(|p| !want.contains_key(*p)) {
            problems.push(format!("file `{}` is not in expected/", path.display()));
        }
    }
    problems
}

/// Every regular file below `dir` (paths relative to the case root, run state left out).
fn files_below(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs_err::read_dir(&d) else { continue };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry.file_name();
            if name == crate::plan::mounts::RUN_DIR || name == ".plugin-test-subject.wasm" {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = fs_err::read(&path) {
                out.insert(path.strip_prefix(dir).unwrap_or(&path).to_path_buf(), bytes);
            }
        }
    }
    out
}

/// Copies the tree `from` to `to` (regular files and directories; symlinks are copied as links).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs_err::create_dir_all(to)?;
    for entry in fs_err::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs_err::read_link(&src)?, &dst)?;
        } else {
            fs_err::copy(&src, &dst)?;
        }
    }
    Ok(())
}
