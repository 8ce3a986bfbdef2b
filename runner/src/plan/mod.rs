//! The plan: a pipeline validated and resolved into plain data the executor runs.
//!
//! [`Plan::resolve`] turns a [`Manifest`] into a [`Plan`]: the workspace is
//! canonical, every mount is checked and resolved ([`mounts`]), every plugin
//! is read, hashed, pinned and matched against its step's world, defaults are
//! filled in, and steps are in an order that respects `needs` ([`dag`]). All
//! problems are collected before returning. The executor only ever sees a
//! `Plan`; it never reads TOML.

pub mod dag;
pub mod grant;
pub mod mounts;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::Spanned;

use crate::diag::{suggest, Code, Diagnostic, Diagnostics, Location, SourceMap};
use crate::manifest::{Id, Manifest, StepTable};
use crate::plugin::{self, PluginInfo, World};
pub use grant::{Grant, Limits, Mount};

/// What a step is for; decides which world its plugin must implement and
/// which capabilities it may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// Reads and reports findings.
    Check,
    /// Writes files.
    Stage,
    /// Judges a subject against scenarios.
    Evaluator,
}

impl StepKind {
    /// The TOML table name: `check`, `stage`, `evaluator`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Check => "check",
            StepKind::Stage => "stage",
            StepKind::Evaluator => "evaluator",
        }
    }

    /// `a check`, `a stage`, `an evaluator`.
    pub fn with_article(self) -> &'static str {
        match self {
            StepKind::Check => "a check",
            StepKind::Stage => "a stage",
            StepKind::Evaluator => "an evaluator",
        }
    }

    fn world(self) -> World {
        match self {
            StepKind::Check => World::Check,
            StepKind::Stage => World::Stage,
            StepKind::Evaluator => World::Evaluator,
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated, resolved pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// `[pipeline] name`.
    pub name: String,
    /// The pipeline file it came from.
    pub pipeline_file: PathBuf,
    /// Canonical workspace root; every mount lies inside it.
    pub workspace: PathBuf,
    /// Every `[plugins]` entry, inspected and hashed.
    pub plugins: BTreeMap<String, PluginInfo>,
    /// Steps in an order where each comes after everything it needs.
    pub steps: Vec<Step>,
}

/// One step, ready to run.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Unique id across all kinds.
    pub id: String,
    /// What it is for.
    pub kind: StepKind,
    /// Key into [`Plan::plugins`].
    pub plugin: String,
    /// Ids of steps that must pass first (each appears earlier in `steps`).
    pub needs: Vec<String>,
    /// Everything it may touch.
    pub grant: Grant,
    /// The step's `config` table as JSON text (`{}` when absent).
    pub config: String,
}

/// A step as declared, before resolution.
struct Declared<'m> {
    kind: StepKind,
    id: &'m Spanned<Id>,
    table: &'m StepTable,
}

impl Plan {
    /// Validates `manifest` (read from the file `source` describes) and
    /// resolves it into a plan.
    ///
    /// # Errors
    /// Every problem found, each with a code, a location and a hint.
    pub fn resolve(manifest: &Manifest, source: &SourceMap) -> Result<Plan, Diagnostics> {
        let mut diags = Diagnostics::default();
        let here = |span: std::ops::Range<usize>| source.locate(span.start);
        let base_dir = match source.path().parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };

        let workspace = resolve_workspace(manifest, &base_dir, source).map_err(Diagnostics::from)?;
        let plugins = inspect_plugins(manifest, &base_dir, source, &mut diags);

        let mut declared: Vec<Declared> = [
            (StepKind::Check, &manifest.check),
            (StepKind::Stage, &manifest.stage),
            (StepKind::Evaluator, &manifest.evaluator),
        ]
        .into_iter()
        .flat_map(|(kind, tables)| tables.iter().map(move |(id, table)| Declared { kind, id, table }))
        .collect();
        declared.sort_by_key(|d| d.id.span().start);

        let mut first_kind: BTreeMap<&str, StepKind> = BTreeMap::new();
        for d in &declared {
            if let Some(kind) = first_kind.insert(&d.id.get_ref().0, d.kind) {
                diags.push(
                    Diagnostic::new(
                        Code::CR006,
                        format!("step id `{}` is used by both {} and {}", d.id.get_ref(), kind.with_article(), d.kind.with_article()),
                    )
                    .at(here(d.id.span()))
                    .hint("step ids are unique across [check.*], [stage.*] and [evaluator.*]; rename one"),
                );
            }
        }
        let index_of: BTreeMap<&str, usize> =
            declared.iter().enumerate().map(|(i, d)| (d.id.get_ref().0.as_str(), i)).collect();

        let mut steps = Vec::with_capacity(declared.len());
        let mut needs_index = Vec::with_capacity(declared.len());
        for d in &declared {
            let id = &d.id.get_ref().0;
            let at_step = here(d.id.span());
            let plugin = resolve_step_plugin(d, &plugins, manifest, &at_step, &here, &mut diags);
            if d.kind != StepKind::Check {
                diags.push(
                    Diagnostic::new(Code::CR016, format!("step `{id}` is {}, which this version of cleanroom cannot run yet", d.kind.with_article()))
                        .at(at_step.clone())
                        .hint("only [check.*] steps run in this version; see docs/pipeline.md"),
                );
            }
            if d.kind == StepKind::Check {
                if let Some(first) = d.table.write.first() {
                    diags.push(
                        Diagnostic::new(Code::CR009, format!("check `{id}` asks for `write`, but checks are read-only"))
                            .at(here(first.span()))
                            .hint("move the paths to `read`, or make the step a [stage.*] if it must change files"),
                    );
                }
            }
            let mut mounts: Vec<Mount> = Vec::new();
            let requested = d.table.read.iter().map(|r| (r, false)).chain(d.table.write.iter().map(|w| (w, true)));
            for (raw, writable) in requested {
                match mounts::resolve(&workspace, raw.get_ref(), writable) {
                    Ok(mount) => {
                        if !mounts.iter().any(|m| m.rel == mount.rel && m.writable == mount.writable) {
                            mounts.push(mount);
                        }
                    }
                    Err(e) => diags.push(
                        Diagnostic::new(e.code, format!("step `{id}`: {}", e.message)).at(here(raw.span())).hint(e.hint),
                    ),
                }
            }
            let mut needs = Vec::new();
            let mut seen = BTreeSet::new();
            for need in &d.table.needs {
                let name = need.get_ref().as_str();
                match index_of.get(name) {
                    Some(&i) => {
                        if seen.insert(i) {
                            needs.push(i);
                        }
                    }
                    None => {
                        let hint = match suggest(name, index_of.keys().copied()) {
                            Some(best) => format!("did you mean `{best}`?"),
                            None => format!("steps in this pipeline: {}", index_of.keys().copied().collect::<Vec<_>>().join(", ")),
                        };
                        diags.push(
                            Diagnostic::new(Code::CR004, format!("step `{id}` needs `{name}`, which is not a step"))
                                .at(here(need.span()))
                                .hint(hint),
                        );
                    }
                }
            }
            let limits = Limits {
                timeout: d.table.timeout.map_or(grant::DEFAULT_TIMEOUT, |t| t.0),
                memory: d.table.memory.map_or(grant::DEFAULT_MEMORY, |m| m.0),
                output: grant::DEFAULT_OUTPUT_CAP,
            };
            let config = match &d.table.config {
                Some(table) => toml_to_json(&toml::Value::Table(table.get_ref().clone())).to_string(),
                None => "{}".to_string(),
            };
            needs_index.push(needs);
            steps.push(Step {
                id: id.clone(),
                kind: d.kind,
                plugin: plugin.unwrap_or_default(),
                needs: Vec::new(),
                grant: Grant { mounts, limits },
                config,
            });
        }

        let order = match dag::topological_order(&needs_index) {
            Ok(order) => order,
            Err(cycle) => {
                let path: Vec<&str> = cycle.iter().map(|&i| steps[i].id.as_str()).collect();
                diags.push(
                    Diagnostic::new(Code::CR005, format!("the steps' `needs` form a cycle: {}", path.join(" -> ")))
                        .at(here(declared[cycle[0]].id.span()))
                        .hint("remove one of these `needs` so every step can run after the ones it needs"),
                );
                (0..steps.len()).collect()
            }
        };
        for (step, needs) in steps.iter_mut().zip(&needs_index) {
            step.needs = needs.iter().map(|&i| declared[i].id.get_ref().0.clone()).collect();
        }
        let mut slots: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
        let steps = order.into_iter().filter_map(|i| slots[i].take()).collect();

        diags.into_result(Plan {
            name: manifest.pipeline.name.clone(),
            pipeline_file: source.path().to_path_buf(),
            workspace,
            plugins,
            steps,
        })
    }

    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }
}

fn resolve_workspace(manifest: &Manifest, base_dir: &Path, source: &SourceMap) -> Result<PathBuf, Diagnostic> {
    let (joined, location) = match &manifest.pipeline.workspace {
        Some(ws) => (base_dir.join(ws.get_ref()), source.locate(ws.span().start)),
        None => (base_dir.to_path_buf(), Location::Path(source.path().to_path_buf())),
    };
    match fs_err::canonicalize(&joined) {
        Ok(path) if path.is_dir() => Ok(path),
        Ok(path) => Err(Diagnostic::new(Code::CR015, format!("workspace `{}` is not a directory", path.display()))
            .at(location)
            .hint("`workspace` in [pipeline] names a directory, relative to the pipeline file")),
        Err(e) => Err(Diagnostic::new(Code::CR015, format!("workspace `{}` cannot be used: {}", joined.display(), io_reason(&e)))
            .at(location)
            .hint("`workspace` in [pipeline] names a directory, relative to the pipeline file")),
    }
}

fn inspect_plugins(
    manifest: &Manifest,
    base_dir: &Path,
    source: &SourceMap,
    diags: &mut Diagnostics,
) -> BTreeMap<String, PluginInfo> {
    let mut plugins = BTreeMap::new();
    for (name, entry) in &manifest.plugins {
        let at = source.locate(entry.span().start);
        let name = &name.get_ref().0;
        let path = base_dir.join(entry.get_ref().path());
        let info = match plugin::inspect(&path) {
            Ok(info) => info,
            Err(e) => {
                let hint = match e {
                    plugin::InspectError::Read { .. } => {
                        "paths in [plugins] are relative to the pipeline file; build first-party plugins with `scripts/build-plugins`"
                    }
                    plugin::InspectError::CoreModule(_) => {
                        "build the plugin for the `wasm32-wasip2` target, which produces a component"
                    }
                    plugin::InspectError::NotWasm { .. } => "rebuild the plugin; the file is damaged or not WebAssembly",
                };
                let code = match e {
                    plugin::InspectError::Read { .. } => Code::CR010,
                    _ => Code::CR011,
                };
                diags.push(Diagnostic::new(code, format!("plugin `{name}`: {e}")).at(at).hint(hint));
                continue;
            }
        };
        if let Some(pin) = entry.get_ref().sha256() {
            let pin = pin.trim().to_ascii_lowercase();
            if pin != info.sha256 {
                diags.push(
                    Diagnostic::new(
                        Code::CR013,
                        format!("plugin `{name}` does not match its pin: sha256 is {}, the pipeline expects {pin}", info.sha256),
                    )
                    .at(at.clone())
                    .hint("if the new file is trusted, update `sha256`; otherwise restore the pinned file"),
                );
            }
        }
        let foreign = info.foreign_imports();
        if !foreign.is_empty() {
            diags.push(
                Diagnostic::new(
                    Code::CR014,
                    format!("plugin `{name}` imports interfaces the host does not provide: {}", foreign.join(", ")),
                )
                .at(at)
                .hint("plugins may import only WASI 0.2 and `cleanroom:plugin` interfaces"),
            );
        }
        plugins.insert(name.clone(), info);
    }
    plugins
}

fn resolve_step_plugin(
    d: &Declared,
    plugins: &BTreeMap<String, PluginInfo>,
    manifest: &Manifest,
    at_step: &Location,
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<String> {
    let id = d.id.get_ref();
    let Some(name) = &d.table.plugin else {
        diags.push(
            Diagnostic::new(Code::CR017, format!("step `{id}` has no `plugin`"))
                .at(at_step.clone())
                .hint("add `plugin = \"<name>\"` naming an entry of [plugins]"),
        );
        return None;
    };
    let declared = manifest.plugins.keys().any(|k| k.get_ref().0 == *name.get_ref());
    if !declared {
        let names = manifest.plugins.keys().map(|k| k.get_ref().0.as_str());
        let hint = match suggest(name.get_ref(), names.clone()) {
            Some(best) => format!("did you mean `{best}`?"),
            None => "add it to [plugins] as `name = \"path/to/plugin.wasm\"`".to_string(),
        };
        diags.push(
            Diagnostic::new(Code::CR003, format!("step `{id}` uses plugin `{}`, which [plugins] does not define", name.get_ref()))
                .at(here(name.span()))
                .hint(hint),
        );
        return None;
    }
    if let Some(info) = plugins.get(name.get_ref()) {
        let wanted = d.kind.world();
        if info.world != wanted {
            diags.push(
                Diagnostic::new(
                    Code::CR012,
                    format!(
                        "step `{id}` is {} and needs a plugin exporting {wanted}, but plugin `{}` exports {}",
                        d.kind.with_article(),
                        name.get_ref(),
                        info.world
                    ),
                )
                .at(here(name.span()))
                .hint(format!(
                    "build the plugin against `world {}` in wit/plugin.wit, or use a plugin made for {}s",
                    d.kind, d.kind
                )),
            );
        }
    }
    Some(name.get_ref().clone())
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "it does not exist".to_string(),
        _ => e.to_string(),
    }
}

/// TOML to JSON for plugin config. Datetimes become RFC 3339 strings.
fn toml_to_json(value: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => J::Object(table.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_becomes_json_with_nested_values() {
        let value: toml::Value = toml::from_str("a = [1, 'x']\nb = { c = true }\nd = 1979-05-27").unwrap();
        assert_eq!(toml_to_json(&value).to_string(), r#"{"a":[1,"x"],"b":{"c":true},"d":"1979-05-27"}"#);
    }
}
