//! The plan: a pipeline validated and resolved into plain data the executor runs.
//!
//! [`Plan::resolve`] turns a [`Manifest`] into a [`Plan`]: the workspace is
//! canonical, every mount is checked and resolved ([`mounts`]), every plugin
//! is read, hashed, pinned and matched against its step's world, defaults are
//! filled in, and steps are in an order that respects `needs` ([`dag`]). All
//! problems are collected before returning. The executor only ever sees a
//! `Plan`; it never reads TOML.

pub mod approvals;
pub mod barrier;
pub mod command;
pub mod dag;
pub mod files;
pub mod gates;
pub mod grant;
pub mod keys;
pub mod limits;
pub mod mounts;
pub mod network;
pub mod plugins;
pub mod remote;
pub mod secrets;
pub mod select;
pub mod services;
pub mod show;
pub mod subjects;
pub mod taint;
pub mod toolchain;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::Spanned;

use crate::diag::{suggest, Code, Diagnostic, Diagnostics, Location, SourceMap};
use crate::manifest::{Id, Manifest, StepTable};
use crate::plugin::{PluginInfo, World};
pub use grant::{Grant, Limits, Mount, NativeGrant, Reach, WasmGrant};
pub use plugins::Fetching;

/// What a step is for; decides which world its plugin must implement and
/// which capabilities it may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
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
    /// sha256 of the pipeline text the plan was made from (a run records
    /// it; `--resume` compares it).
    #[serde(skip)]
    pub pipeline_sha256: String,
    /// Canonical workspace root; every mount lies inside it.
    pub workspace: PathBuf,
    /// Every `[plugins]` entry, inspected and hashed.
    pub plugins: BTreeMap<String, PluginInfo>,
    /// Steps in an order where each comes after everything it needs.
    pub steps: Vec<Step>,
    /// Canonical `[barrier] holdout` paths: retry feedback may not quote
    /// their contents.
    pub holdout: Vec<PathBuf>,
    /// `[barrier] feedback`: how much retry feedback may say about failing
    /// holdout scenarios.
    pub feedback: crate::manifest::FeedbackLevel,
    /// `[secrets]`: where each named secret is read from when a run starts.
    pub secrets: BTreeMap<String, secrets::SecretSpec>,
    /// `[pipeline] max_duration`: the longest the whole run may take.
    pub max_duration: Option<crate::manifest::DurationSpec>,
    /// `[remote]` (or `run --remote`): the REAPI service the run uses.
    pub remote: Option<remote::RemoteSettings>,
    /// The steps' `needs` as indices, their dependents and ids: what the
    /// scheduler walks. Derived from `steps`; not part of the plan's digest.
    #[serde(skip)]
    pub graph: dag::Graph,
    /// Steps a file selection left out: none of the selected files is one
    /// they are about, and no step left in needs them ([`files::apply`]).
    #[serde(skip)]
    pub not_selected: Vec<String>,
    /// `[approval.*]` gates, in name order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<approvals::ApprovalGate>,
    /// `[pipeline] auto_merge_*`: what `cleanroom stats` holds evaluators to.
    #[serde(skip)]
    pub thresholds: approvals::Thresholds,
}

/// What a step executes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A WebAssembly plugin: the key into [`Plan::plugins`].
    Plugin(String),
    /// A native program run in the kernel jail.
    Command {
        /// The program, resolved on the step's `PATH`.
        program: PathBuf,
        /// Its arguments (without the program name).
        args: Vec<String>,
        /// The `run` list as written, for messages.
        display: String,
    },
}

/// One step, ready to run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Step {
    /// Unique id across all kinds.
    pub id: String,
    /// What it is for.
    pub kind: StepKind,
    /// What it executes.
    pub action: Action,
    /// Ids of steps that must pass first (each appears earlier in `steps`).
    pub needs: Vec<String>,
    /// Everything it may touch.
    pub grant: Grant,
    /// The step's `config` table as JSON text (`{}` when absent).
    pub config: String,
    /// Checks and evaluators: the stage to re-run when this gate fails.
    pub retry: Option<gates::Retry>,
    /// Evaluators: k-of-n settings and the subject.
    pub evaluation: Option<gates::Evaluation>,
    /// Whether the result cache may answer for this step (`cache`, default
    /// on except for evaluators with `repeat > 1`).
    pub cache: bool,
    /// 1-based line of the step's table header (`[check.id]`) in the
    /// pipeline file, for reports that point at the pipeline (SARIF).
    pub line: usize,
    /// Set when the run must report this step as skipped, with this reason,
    /// without running it (`run --skip`, see [`select`]; a selection of
    /// files none of which it is about, see [`files`]).
    pub excluded: Option<String>,
    /// `include`, `exclude` and `whole_tree`: the files the step is about,
    /// when it says (see [`files`]).
    #[serde(default)]
    pub files: Option<files::FileFilter>,
    /// Whether a mount or tool path overlaps a `[barrier] holdout` path: such
    /// a step never runs while a stage runs, never reads what stages write,
    /// and its output reaches a stage only in bounded form.
    pub reads_holdout: bool,
    /// Stages: how many attempts the run may make, the first included: the
    /// largest `max_iterations` written on a gate that retries it, the
    /// default 3 when none writes one, 1 when no gate retries it; capped by
    /// `run --max-iterations` ([`gates::resolve_budgets`]). Decided here,
    /// once; the executor only compares with it. 1 for checks and evaluators.
    pub attempts: u32,
}

impl Step {
    /// Every workspace path the program under evaluation touches, with a
    /// word for messages: an evaluator's subject's and its service's.
    pub fn judged_paths(&self) -> Vec<(String, &Mount)> {
        let Some(evaluation) = &self.evaluation else { return Vec::new() };
        let mut paths = evaluation.subject.as_ref().map(subjects::Subject::paths).unwrap_or_default();
        if let Some(service) = &evaluation.service {
            paths.extend(services::paths(service));
        }
        paths
    }

    /// The mounts whose contents the step reads: its own and the program
    /// under evaluation's, once each, by workspace path.
    pub fn inputs(&self) -> Vec<&Mount> {
        let judged = self.judged_paths().into_iter().map(|(_, m)| m);
        let mut mounts: Vec<&Mount> = self.grant.mounts.iter().chain(judged).collect();
        mounts.sort_by(|a, b| a.rel.cmp(&b.rel));
        mounts.dedup_by(|a, b| a.rel == b.rel);
        mounts
    }

    /// The host tools of the program under evaluation (an evaluator's
    /// subject's and its service's).
    pub fn judged_tools(&self) -> Vec<&PathBuf> {
        let Some(evaluation) = &self.evaluation else { return Vec::new() };
        let subject = evaluation.subject.iter().flat_map(|s| s.grant.tools());
        let service = evaluation.service.iter().flat_map(|s| s.grant.tools());
        let twins = evaluation.service.iter().flat_map(|s| s.twins.iter().flat_map(|t| t.server.grant.tools()));
        subject.chain(service).chain(twins).collect()
    }

    /// The attempt number the step's plugin or program is told: a stage's
    /// own attempt; always 1 for a check (its verdict must not depend on
    /// how often the stage before it was retried); the round for an evaluator.
    pub fn told_attempt(&self, attempt: u32) -> u32 {
        if self.kind == StepKind::Check {
            1
        } else {
            attempt
        }
    }
}

/// A step as declared, before resolution.
pub(crate) struct Declared<'m> {
    pub(crate) kind: StepKind,
    pub(crate) id: &'m Spanned<Id>,
    pub(crate) table: &'m StepTable,
}

impl Plan {
    /// Reads, parses, validates and resolves the pipeline file `pipeline`:
    /// the library's entry point.
    ///
    /// # Errors
    /// Every problem found, each with a code, a location and a hint.
    pub fn load(pipeline: &Path) -> Result<Plan, Diagnostics> {
        Plan::load_with(pipeline, &Fetching::default())
    }

    /// [`Plan::load`], getting plugins shared through registries as
    /// `fetching` says (`run --locked`, `cleanroom lock`).
    ///
    /// # Errors
    /// Every problem found, each with a code, a location and a hint.
    pub fn load_with(pipeline: &Path, fetching: &Fetching) -> Result<Plan, Diagnostics> {
        let (manifest, source) = Manifest::load(pipeline)?;
        Plan::resolve_with(&manifest, &source, fetching)
    }

    /// Keeps `steps` (a subset of this plan's, in plan order) and what
    /// derives from them: the graph, the plugins they use, and each stage's
    /// attempt budget (a dropped gate no longer retries anything; a cap
    /// from [`Plan::cap_attempts`] is applied after selecting, as
    /// `exec::prepare` does).
    pub fn retain_steps(&mut self, keep: impl Fn(&Step) -> bool) {
        self.steps.retain(|s| keep(s));
        let steps = &self.steps;
        // An approval decides on results; without all of them it has nothing to decide.
        self.approvals.retain(|a| a.needs.iter().all(|n| steps.iter().any(|s| s.id == *n)));
        self.plugins.retain(|name, _| steps.iter().any(|s| matches!(&s.action, Action::Plugin(p) if p == name)));
        gates::resolve_budgets(&mut self.steps, None);
        self.graph = dag::Graph::of(&self.steps);
    }

    /// Caps every stage's attempts at `max` (`run --max-iterations`), for
    /// debugging a loop without editing the pipeline.
    pub fn cap_attempts(&mut self, max: u32) {
        gates::resolve_budgets(&mut self.steps, Some(max));
    }

    /// Validates `manifest` (read from the file `source` describes) and
    /// resolves it into a plan.
    ///
    /// # Errors
    /// Every problem found, each with a code, a location and a hint.
    pub fn resolve(manifest: &Manifest, source: &SourceMap) -> Result<Plan, Diagnostics> {
        Plan::resolve_with(manifest, source, &Fetching::default())
    }

    /// [`Plan::resolve`] with a [`Fetching`] policy for OCI plugins.
    ///
    /// # Errors
    /// Every problem found, each with a code, a location and a hint.
    pub fn resolve_with(manifest: &Manifest, source: &SourceMap, fetching: &Fetching) -> Result<Plan, Diagnostics> {
        let mut diags = Diagnostics::default();
        let here = |span: std::ops::Range<usize>| source.locate(span.start);
        let base_dir = match source.path().parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };

        let workspace = resolve_workspace(manifest, &base_dir, source).map_err(Diagnostics::from)?;
        let secrets = secrets::resolve_secrets(manifest, &base_dir, &here, &mut diags);
        let plugins = plugins::inspect(manifest, &base_dir, source, &secrets, fetching, &mut diags);

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
                        format!(
                            "step id `{}` is used by both {} and {}",
                            d.id.get_ref(),
                            kind.with_article(),
                            d.kind.with_article()
                        ),
                    )
                    .at(here(d.id.span()))
                    .hint("step ids are unique across [check.*], [stage.*] and [evaluator.*]; rename one"),
                );
            }
        }
        let index_of: BTreeMap<&str, usize> =
            declared.iter().enumerate().map(|(i, d)| (d.id.get_ref().0.as_str(), i)).collect();

        // `needs` first: a read mount may name what an upstream stage writes.
        let mut needs_index: Vec<Vec<usize>> = Vec::with_capacity(declared.len());
        for d in &declared {
            let id = &d.id.get_ref().0;
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
                        if manifest.approval.keys().any(|a| a.get_ref().0 == name) {
                            diags.push(
                                Diagnostic::new(Code::CR036, format!("step `{id}` needs approval `{name}`"))
                                    .at(here(need.span()))
                                    .hint("approvals come last: nothing can wait for one (the run stops there); act on the run's exit code instead, e.g. merge in CI when it exits 0"),
                            );
                            continue;
                        }
                        let hint = match suggest(name, index_of.keys().copied()) {
                            Some(best) => format!("did you mean `{best}`?"),
                            None => format!(
                                "steps in this pipeline: {}",
                                index_of.keys().copied().collect::<Vec<_>>().join(", ")
                            ),
                        };
                        diags.push(
                            Diagnostic::new(Code::CR004, format!("step `{id}` needs `{name}`, which is not a step"))
                                .at(here(need.span()))
                                .hint(hint),
                        );
                    }
                }
            }
            needs_index.push(needs);
        }
        let ancestry = dag::Ancestry::of(&needs_index);
        // Stages writing anything, few even in a large pipeline.
        let writers: Vec<usize> = (0..declared.len()).filter(|&i| !declared[i].table.write.is_empty()).collect();
        let writes_of = |a: usize| declared[a].table.write.iter().filter_map(|w| mounts::normalize(w.get_ref()));
        let upstream_writes: Vec<Vec<String>> = (0..declared.len())
            .map(|i| writers.iter().filter(|&&a| ancestry.has(i, a)).flat_map(|&a| writes_of(a)).collect())
            .collect();
        let all_writes: Vec<String> = writers.iter().flat_map(|&a| writes_of(a)).collect();
        let declared_subjects = subjects::resolve_tables(manifest, &workspace, &all_writes, &here, &mut diags);
        let declared_services = services::resolve_tables(manifest, &workspace, &all_writes, &here, &mut diags);
        let mut steps = Vec::with_capacity(declared.len());
        for (i, d) in declared.iter().enumerate() {
            let id = &d.id.get_ref().0;
            let at_step = here(d.id.span());
            keys::refuse_inapplicable(d, &here, &mut diags);
            let mut mounts: Vec<Mount> = Vec::new();
            let requested = d.table.read.iter().map(|r| (r, false)).chain(d.table.write.iter().map(|w| (w, true)));
            for (raw, writable) in requested {
                match mounts::resolve_or_upstream(&workspace, raw.get_ref(), writable, &upstream_writes[i]) {
                    Ok(mount) => {
                        if !mounts.iter().any(|m| m.rel == mount.rel && m.writable == mount.writable) {
                            mounts.push(mount);
                        }
                    }
                    Err(e) => diags.push(
                        Diagnostic::new(e.code, format!("step `{id}`: {}", e.message))
                            .at(here(raw.span()))
                            .hint(e.hint),
                    ),
                }
            }
            let mut grant = Grant::new(mounts, limits::resolve(d.table));
            let action = match &d.table.run {
                Some(run) => resolve_command(d, run, &workspace, &mut grant, &here, &mut diags),
                None => resolve_step_plugin(d, &plugins, manifest, &at_step, &here, &mut diags).map(Action::Plugin),
            };
            let plugin_info = match &action {
                Some(Action::Plugin(name)) => plugins.get(name),
                _ => None,
            };
            grant.secret_env = secrets::resolve_step(d, &secrets, &here, &mut diags);
            let http = network::resolve_step(d, plugin_info, &secrets, &here, &mut diags);
            if let Reach::Wasm(wasm) = &mut grant.reach {
                wasm.http = http;
            }
            let config = match &d.table.config {
                Some(table) => toml_to_json(&toml::Value::Table(table.get_ref().clone())).to_string(),
                None => "{}".to_string(),
            };
            let retry = gates::resolve_retry(d, &declared, (&ancestry, i), &here, &mut diags);
            let evaluation = gates::resolve_evaluation(
                d,
                (&declared_subjects, &declared_services),
                &workspace,
                &upstream_writes[i],
                &here,
                &mut diags,
            );
            let sampled = evaluation.as_ref().is_some_and(|e| e.repeat > 1);
            let cache = d.table.cache.as_ref().map_or(!sampled, |c| *c.get_ref());
            steps.push(Step {
                id: id.clone(),
                kind: d.kind,
                action: action.unwrap_or(Action::Plugin(String::new())),
                needs: Vec::new(),
                grant,
                config,
                retry,
                evaluation,
                cache,
                line: match here(d.id.span()) {
                    Location::File { line, .. } => line,
                    Location::Path(_) => 0,
                },
                excluded: None,
                files: files::resolve(d, &here, &mut diags),
                reads_holdout: false,
                attempts: 1,
            });
        }

        check_concurrent_writes(&steps, &ancestry, &mut diags);
        let holdout = match &manifest.barrier {
            Some(table) => barrier::check(table, &workspace, &steps, &here, &mut diags),
            None => Vec::new(),
        };
        for step in &mut steps {
            step.reads_holdout = taint::reads_holdout(step, &holdout);
        }
        taint::check_holdout_readers(&steps, source.path(), &mut diags);
        let plugin_files: Vec<(String, PathBuf)> =
            plugins.iter().map(|(name, info)| (name.clone(), info.path.clone())).collect();
        taint::Definition::of(source.path(), &plugin_files).check_stages(&steps, source.path(), &mut diags);
        let feedback =
            manifest.barrier.as_ref().and_then(|b| b.feedback.as_ref()).map_or_else(Default::default, |f| *f.get_ref());

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
        let mut steps: Vec<Step> = order.into_iter().filter_map(|i| slots[i].take()).collect();
        gates::resolve_budgets(&mut steps, None);

        let remote = manifest.remote.as_ref().and_then(|table| remote::resolve(table, &secrets, &here, &mut diags));
        let step_ids: BTreeSet<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        let approvals = approvals::resolve(manifest, &step_ids, &here, &mut diags);
        let thresholds = approvals::thresholds(manifest, &here, &mut diags);
        diags.into_result(Plan {
            approvals,
            thresholds,
            graph: dag::Graph::of(&steps),
            name: manifest.pipeline.name.clone(),
            pipeline_file: source.path().to_path_buf(),
            pipeline_sha256: source.sha256(),
            workspace,
            plugins,
            steps,
            holdout,
            feedback,
            secrets,
            max_duration: manifest.pipeline.max_duration,
            remote,
            not_selected: Vec::new(),
        })
    }

    /// The largest memory cap of any step or subject: what the engine's
    /// instance pool must fit.
    pub fn max_memory(&self) -> u64 {
        let subjects = self
            .steps
            .iter()
            .filter_map(|s| s.evaluation.as_ref()?.subject.as_ref())
            .filter(|s| matches!(s.program, subjects::SubjectProgram::Component(_)))
            .map(|s| &s.grant);
        // Native programs' caps are cgroups, not the engine's business.
        self.steps
            .iter()
            .filter(|s| matches!(s.action, Action::Plugin(_)))
            .map(|s| &s.grant)
            .chain(subjects)
            .map(|g| g.limits.memory)
            .max()
            .unwrap_or(grant::DEFAULT_MEMORY)
    }
}

/// Refuses two steps that may run at the same time (neither needs the
/// other) when one writes a path the other reads or writes: the host never
/// mounts one directory into two running steps with different permissions.
fn check_concurrent_writes(steps: &[Step], ancestry: &dag::Ancestry, diags: &mut Diagnostics) {
    let touched = |step: &Step| -> Vec<(PathBuf, bool, String)> {
        step.grant
            .mounts
            .iter()
            .chain(step.judged_paths().into_iter().map(|(_, m)| m))
            .map(|m| (m.host.clone(), m.writable, m.rel.clone()))
            .collect()
    };
    // Only a writer can clash, so pair each writer with every other step
    // (a pipeline of thousands of readers costs one pass per writer).
    let touched: Vec<Vec<(PathBuf, bool, String)>> = steps.iter().map(touched).collect();
    let writes: Vec<bool> = touched.iter().map(|t| t.iter().any(|(_, w, _)| *w)).collect();
    let mut pairs = Vec::new();
    for w in (0..steps.len()).filter(|&w| writes[w]) {
        // Two writers pair once: from the earlier one.
        pairs.extend((0..steps.len()).filter(|&o| o != w && !(writes[o] && o < w)).map(|o| (w.min(o), w.max(o))));
    }
    pairs.sort_unstable();
    for (a, b) in pairs {
        {
            if ancestry.has(a, b) || ancestry.has(b, a) {
                continue;
            }
            let clash = touched[a].iter().find_map(|(pa, wa, ra)| {
                touched[b]
                    .iter()
                    .find(|(pb, wb, _)| (*wa || *wb) && (pa.starts_with(pb) || pb.starts_with(pa)))
                    .map(|(_, wb, rb)| (ra.clone(), *wa, rb.clone(), *wb))
            });
            if let Some((ra, wa, rb, wb)) = clash {
                let how = |w: bool| if w { "writes" } else { "reads" };
                diags.push(
                    Diagnostic::new(
                        Code::CR023,
                        format!(
                            "steps `{}` and `{}` may run at the same time, but `{}` {} `{ra}` and `{}` {} `{rb}`",
                            steps[a].id,
                            steps[b].id,
                            steps[a].id,
                            how(wa),
                            steps[b].id,
                            how(wb)
                        ),
                    )
                    .hint(format!(
                        "add `needs = [\"{}\"]` to `{}` (or the reverse) so they run one after the other",
                        steps[a].id, steps[b].id
                    )),
                );
            }
        }
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
        Err(e) => Err(Diagnostic::new(
            Code::CR015,
            format!("workspace `{}` cannot be used: {}", joined.display(), io_reason(&e)),
        )
        .at(location)
        .hint("`workspace` in [pipeline] names a directory, relative to the pipeline file")),
    }
}

/// Checks a `run` step and fills in its grant's tools, environment and network.
fn resolve_command(
    d: &Declared,
    run: &Spanned<Vec<String>>,
    workspace: &Path,
    grant: &mut Grant,
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<Action> {
    let id = d.id.get_ref();
    let at_run = here(run.span());
    let mut native = NativeGrant::default();
    if d.table.plugin.is_some() {
        diags.push(
            Diagnostic::new(Code::CR017, format!("step `{id}` has both `plugin` and `run`"))
                .at(at_run.clone())
                .hint("a step runs either a plugin or a native program; split it into two steps"),
        );
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    for raw in &d.table.tools {
        match command::tool_path(raw.get_ref(), home.as_deref()) {
            Ok(path) => native.tools.push(path),
            Err((code, message, hint)) => {
                diags.push(Diagnostic::new(code, format!("step `{id}`: {message}")).at(here(raw.span())).hint(hint))
            }
        }
    }
    native.network = d.table.network.as_ref().is_some_and(|n| *n.get_ref());
    if let Some(name) = &d.table.toolchain {
        match toolchain::resolve(name.get_ref(), workspace, home.as_deref(), native.network) {
            Ok(found) => {
                for path in &found.paths {
                    if !native.tools.contains(path) {
                        native.tools.push(path.clone());
                    }
                }
                native.toolchain = Some(Box::new(found));
            }
            Err((code, message, hint)) => {
                diags.push(Diagnostic::new(code, format!("step `{id}`: {message}")).at(here(name.span())).hint(hint));
                // Its program is most likely the toolchain's: one error says it.
                grant.reach = Reach::Native(native);
                return None;
            }
        }
    }
    let granted = d.table.env.as_ref().map(|env| env.get_ref().clone()).unwrap_or_default();
    let at_env = d.table.env.as_ref().map_or(at_run.clone(), |env| here(env.span()));
    for name in granted.keys() {
        if let Err(message) = command::check_env_name(name) {
            diags.push(
                Diagnostic::new(Code::CR002, format!("step `{id}`: {message}"))
                    .at(at_env.clone())
                    .hint("use letters, digits and `_`"),
            );
        }
    }
    native.env = command::environment(&native.tools, &granted, home.as_deref(), native.toolchain.as_deref());
    if let Err(message) = command::expand_all(&native.env, "/tmp") {
        diags.push(
            Diagnostic::new(Code::CR002, format!("step `{id}`: {message}"))
                .at(at_env)
                .hint("an `env` value may use `$TMPDIR`, `$HOME`, `$PATH` and the step's other `env` names (`$$` for a `$`); the runner's own environment is never passed"),
        );
    }
    native.cache_dirs = resolve_cache_dirs(d, here, diags);
    native.findings = resolve_findings(d, here, diags);
    // A native program's `memory` caps its whole process tree (a memory
    // cgroup); without it, only its deadline bounds what it takes.
    native.memory = d.table.memory.map(|m| m.0);
    let path = native.env["PATH"].clone();
    grant.reach = Reach::Native(native);
    let Some(name) = run.get_ref().first() else {
        diags.push(
            Diagnostic::new(Code::CR017, format!("step `{id}` has an empty `run`"))
                .at(at_run)
                .hint("write the program and its arguments, e.g. `run = [\"cargo\", \"test\"]`"),
        );
        return None;
    };
    let tools = grant.tools().to_vec();
    match command::find_program(name, &path, workspace)
        .and_then(|program| command::check_runnable(&program, &path, &tools, workspace).map(|()| program))
    {
        Ok(program) => {
            Some(Action::Command { program, args: run.get_ref()[1..].to_vec(), display: run.get_ref().join(" ") })
        }
        Err((code, message, hint)) => {
            diags.push(Diagnostic::new(code, format!("step `{id}`: {message}")).at(at_run).hint(hint));
            None
        }
    }
}

/// A `run` step's `cache_dirs`, normalised: inside the workspace, not the
/// workspace itself, the run directory or `.git`, and not one of its own
/// `write` mounts (whose contents are the work, not a cache).
fn resolve_cache_dirs(
    d: &Declared,
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Vec<String> {
    let id = d.id.get_ref();
    let mut dirs = Vec::new();
    for raw in &d.table.cache_dirs {
        let refuse = |message: String, hint: &str| {
            Diagnostic::new(Code::CR007, format!("step `{id}`: {message}")).at(here(raw.span())).hint(hint)
        };
        let Some(rel) = mounts::normalize(raw.get_ref()).filter(|_| !raw.get_ref().starts_with('~')) else {
            diags.push(refuse(
                format!("cache directory `{}` is not inside the workspace", raw.get_ref()),
                "write a workspace-relative directory such as `target`",
            ));
            continue;
        };
        let first = rel.split('/').next().unwrap_or_default();
        if rel == "." || first == mounts::RUN_DIR || mounts::names_git(Path::new(&rel)) {
            diags.push(refuse(
                format!("cache directory `{}` would hide the workspace, the run directory or git's", raw.get_ref()),
                "name the build directory itself, e.g. `target` or `node_modules/.cache`",
            ));
            continue;
        }
        let overlaps_write = d
            .table
            .write
            .iter()
            .filter_map(|w| mounts::normalize(w.get_ref()))
            .any(|w| mounts::is_within(&rel, &w) || mounts::is_within(&w, &rel));
        if overlaps_write {
            diags.push(refuse(
                format!("cache directory `{}` overlaps one of the step's `write` mounts", raw.get_ref()),
                "a stage's writes are its work and are committed; keep build caches apart from them",
            ));
            continue;
        }
        if !dirs.contains(&rel) {
            dirs.push(rel);
        }
    }
    dirs
}

/// A `run` step's `findings`, checked.
fn resolve_findings(
    d: &Declared,
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<grant::FindingsPlan> {
    use crate::manifest::FindingsSpec;
    let spec = d.table.findings.as_ref()?;
    let id = d.id.get_ref();
    let at = here(spec.span());
    let (format, file) = match spec.get_ref() {
        FindingsSpec::Named(name) => (crate::findings::Format::named(name), None),
        FindingsSpec::Table(table) => {
            let format = match (&table.format, &table.regex) {
                (Some(name), None) => crate::findings::Format::named(name),
                (None, Some(pattern)) => crate::findings::Format::regex(pattern),
                _ => Err("write exactly one of `format` and `regex`".to_string()),
            };
            (format, table.file.clone())
        }
    };
    let format = match format {
        Ok(format) => format,
        Err(message) => {
            diags.push(Diagnostic::new(Code::CR002, format!("step `{id}`: `findings`: {message}")).at(at).hint(
                "e.g. `findings = \"cargo-json\"` or `findings = { format = \"junit\", file = \"$TMPDIR/junit.xml\" }`",
            ));
            return None;
        }
    };
    if let Some(file) = &file {
        let inside = file.strip_prefix("$TMPDIR/").and_then(mounts::normalize).is_some_and(|rel| rel != ".");
        if !inside {
            diags.push(
                Diagnostic::new(Code::CR017, format!("step `{id}`: findings file `{file}` is not under `$TMPDIR/`"))
                    .at(at)
                    .hint("have the program write its report to its private temporary directory, e.g. `pytest --junitxml=$TMPDIR/junit.xml` with `file = \"$TMPDIR/junit.xml\"`"),
            );
            return None;
        }
    }
    Some(grant::FindingsPlan { format, file })
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
            Diagnostic::new(Code::CR017, format!("step `{id}` has neither `plugin` nor `run`"))
                .at(at_step.clone())
                .hint("add `plugin = \"<name>\"` naming an entry of [plugins], or `run = [\"program\", ...]`"),
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
            Diagnostic::new(
                Code::CR003,
                format!("step `{id}` uses plugin `{}`, which [plugins] does not define", name.get_ref()),
            )
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
