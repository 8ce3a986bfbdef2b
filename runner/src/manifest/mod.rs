//! The pipeline file as written: serde types mirroring the TOML, with spans.
//!
//! This module is pure data. It reads one file and checks its shape (unknown
//! keys, types, durations, sizes, id syntax); everything that needs the
//! filesystem or other steps (paths, plugins, `needs`) is checked by `plan`.
//! The format is documented for users in `docs/pipeline.md`.

pub mod units;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{suggest, Code, Diagnostic, SourceMap};
pub use units::{ByteSize, DurationSpec, WaitSpec};

/// The run directory inside a workspace: journals, run reports and staged
/// writes. Never mountable, never a step's to see or write.
pub const RUN_DIR: &str = ".cleanroom";

/// A git repository's own directory (or, in a submodule or worktree, the
/// file pointing at it). A mount that holds one does not show it to the
/// step, hash it, stage it or take writes to it: a commit must not
/// invalidate every cached step, a check has no business reading history,
/// and a stage that could write `.git/hooks` or `.git/config` would run code
/// outside every jail the next time the user runs git. Only a mount that
/// names it (`read = [".git"]`) sees it.
pub const GIT_DIR: &str = ".git";

/// The lock file beside a pipeline file (`cleanroom lock`).
pub const LOCK_FILE: &str = "cleanroom.lock";

/// The largest pipeline file the runner reads.
pub const MAX_PIPELINE_SIZE: u64 = 64 << 20;

/// A whole pipeline file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `[pipeline]`: name and workspace.
    pub pipeline: PipelineTable,
    /// `[plugins]`: name = path, name = { path, sha256 }, or
    /// name = { oci = "registry/repo:tag", sha256 }.
    #[serde(default)]
    pub plugins: BTreeMap<Spanned<Id>, Spanned<PluginSource>>,
    /// `[registries."host[:port]"]`: credentials for pulling OCI plugins
    /// from a private registry in CI (elsewhere Docker's `config.json`).
    #[serde(default)]
    pub registries: BTreeMap<Spanned<String>, Spanned<RegistryTable>>,
    /// `[check.ID]` tables.
    #[serde(default)]
    pub check: BTreeMap<Spanned<Id>, StepTable>,
    /// `[stage.ID]` tables.
    #[serde(default)]
    pub stage: BTreeMap<Spanned<Id>, StepTable>,
    /// `[evaluator.ID]` tables.
    #[serde(default)]
    pub evaluator: BTreeMap<Spanned<Id>, StepTable>,
    /// `[subject.ID]` tables: programs an evaluator judges, named by its
    /// `subject = "ID"`.
    #[serde(default)]
    pub subject: BTreeMap<Spanned<Id>, SubjectTable>,
    /// `[service.ID]` tables: programs that listen for requests, started
    /// for the evaluators that name them with `service = "ID"`.
    #[serde(default)]
    pub service: BTreeMap<Spanned<Id>, ServiceTable>,
    /// `[twin.ID]` tables: the outside services a service calls, played by
    /// programs the pipeline controls, named by a service's `twins`.
    #[serde(default)]
    pub twin: BTreeMap<Spanned<Id>, TwinTable>,
    /// `[barrier]`: paths that separate the code writers from the judges.
    pub barrier: Option<BarrierTable>,
    /// `[secrets]`: named secrets and where the runner reads them from;
    /// a step sees only those it is granted (`secrets`, `secret_headers`).
    #[serde(default)]
    pub secrets: BTreeMap<Spanned<Id>, Spanned<SecretSource>>,
    /// `[remote]`: an REAPI service for a shared result cache and remote
    /// execution.
    pub remote: Option<RemoteTable>,
    /// `[approval.NAME]` tables: gates a person decides (`cleanroom approve`).
    #[serde(default)]
    pub approval: BTreeMap<Spanned<Id>, ApprovalTable>,
}

/// `[approval.NAME]`: the run stops when the steps it needs have passed,
/// until a permitted person approves or rejects their results.
/// Example: `needs = ["holdout"]`, `approvers = ["alice"]`, `timeout = "72h"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalTable {
    /// The steps whose results are decided on (at least one).
    pub needs: Vec<Spanned<String>>,
    /// Who may decide, as they name themselves with `--as`; empty: anyone.
    #[serde(default)]
    pub approvers: Vec<Spanned<String>>,
    /// `required` (the default: a decision without a reason is refused)
    /// or `optional`.
    pub reason: Option<Spanned<String>>,
    /// How long the run waits for a decision once it asks; past it the
    /// gate fails closed (up to `366d`). Default: no limit.
    pub timeout: Option<WaitSpec>,
}

/// `[remote]`: which REAPI service, and what a run uses it for.
/// Example: `endpoint = "grpc://127.0.0.1:50051"`, `cache = "read"`, `execute = true`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteTable {
    /// `grpc://host:port`, or `grpcs://host:port` for TLS.
    pub endpoint: Spanned<String>,
    /// The service's instance name; `""` (the default) for its default one.
    #[serde(default)]
    pub instance: String,
    /// `read-write` (default), `read` (look up only: untrusted clients) or `off`.
    pub cache: Option<Spanned<String>>,
    /// Run steps on the service's workers.
    #[serde(default)]
    pub execute: bool,
    /// A `[secrets]` name holding a bearer token, when the service needs one.
    pub token: Option<Spanned<String>>,
    /// A `[secrets]` name holding the team's sealing key: results are
    /// sealed with it when filed, and only sealed results are believed.
    pub seal: Option<Spanned<String>>,
}

/// Where a secret's value comes from, read when a run starts.
/// Example: `API_KEY = { env = "OPENAI_API_KEY" }` or `{ file = "~/.config/key" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// An environment variable of the runner.
    pub env: Option<String>,
    /// A file (relative to the pipeline file, or `~/...`); its contents
    /// without a trailing newline.
    pub file: Option<String>,
}

/// `secret_headers` entry: the host adds `header: prefix + secret` to every
/// request the step sends to `host`, so the guest never holds the secret.
/// Example: `{ secret = "API_KEY", host = "https://api.openai.com", header = "Authorization", prefix = "Bearer " }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretHeader {
    /// A `[secrets]` name.
    pub secret: Spanned<String>,
    /// One of the step's `allow_hosts` entries, exactly as written there.
    pub host: Spanned<String>,
    /// The header name, e.g. `Authorization`.
    pub header: Spanned<String>,
    /// Text before the secret in the header's value, e.g. `Bearer `.
    #[serde(default)]
    pub prefix: String,
}

/// A `run` step's `findings`: a format name, or a table.
/// Example: `"cargo-json"`, `{ regex = '^(?P<path>[^:]+):(?P<line>\d+): (?P<message>.*)$' }`,
/// `{ format = "junit", file = "report.xml" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a format name (\"sarif\", \"junit\", \"cargo-json\", \"checkstyle\") or a table { regex = \"...\" } / { format = \"...\", file = \"...\" }"
)]
pub enum FindingsSpec {
    /// `"sarif"`, `"junit"`, `"cargo-json"` or `"checkstyle"`, from stdout.
    Named(String),
    /// A table.
    Table(FindingsTable),
}

/// The table form of [`FindingsSpec`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingsTable {
    /// A format name, as in the string form.
    pub format: Option<String>,
    /// A regular expression applied to each output line (instead of `format`).
    pub regex: Option<String>,
    /// A file the program writes, relative to the workspace, read instead
    /// of stdout (`pytest --junitxml=$TMPDIR/junit.xml` writes
    /// `$TMPDIR/...`: write `file = "$TMPDIR/junit.xml"`).
    pub file: Option<String>,
}

/// `[barrier]`: workspace paths no grant may cross.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BarrierTable {
    /// Never readable or writable by a stage (plugin or `run`), by a subject,
    /// or by a check whose findings feed a retry. Example: `holdout = ["scenarios"]`.
    #[serde(default)]
    pub holdout: Vec<Spanned<String>>,
    /// Never readable by an evaluator. Example: `private = ["src"]`.
    #[serde(default)]
    pub private: Vec<Spanned<String>>,
    /// How much a retried stage is told about the holdout scenarios that
    /// failed: `summary` (default: one line per failing scenario, with the
    /// evaluator's summary), `names` (only which scenarios failed) or
    /// `count` (only how many). Example: `feedback = "names"`.
    pub feedback: Option<Spanned<FeedbackLevel>>,
}

/// What retry feedback may say about failing holdout scenarios; each level
/// carries strictly less holdout-dependent information than the one before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedbackLevel {
    /// One line per failing scenario: its name, failed runs and summary.
    #[default]
    Summary,
    /// One line per failing scenario: its name and failed runs.
    Names,
    /// One line per evaluator: how many scenarios failed.
    Count,
}

impl FeedbackLevel {
    /// `summary`, `names`, `count`.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackLevel::Summary => "summary",
            FeedbackLevel::Names => "names",
            FeedbackLevel::Count => "count",
        }
    }
}

/// `[pipeline]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineTable {
    /// Shown in reports. Example: `name = "self-check"`.
    pub name: String,
    /// The directory steps' paths are relative to, itself relative to the
    /// pipeline file. Default: the pipeline file's directory.
    /// Example: `workspace = ".."`.
    pub workspace: Option<Spanned<String>>,
    /// The longest the whole run may take. Checked before every step
    /// starts (a step that would start after it does not start), and a
    /// step's deadline is cut to the time left, so a run never overshoots
    /// it; a run stopped by it ends with `termination: budget`.
    /// Default: none. Example: `max_duration = "2h"`.
    pub max_duration: Option<DurationSpec>,
    /// `cleanroom stats`: an evaluator may merge on its own word only while
    /// its false-pass rate (of the runs it passed that a person judged,
    /// the share the person rejected) is below this. Default 0.05.
    pub auto_merge_max_false_pass: Option<Spanned<f64>>,
    /// ... and the share of its verdicts people overrode is below this.
    /// Default 0.10.
    pub auto_merge_max_override_rate: Option<Spanned<f64>>,
    /// A rate over fewer decisions than this is "not yet known". Default 10.
    pub auto_merge_min_decisions: Option<Spanned<u32>>,
}

/// Where a plugin's component comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a plugin is a path string, a table { path = \"...\", sha256 = \"...\" } or a table { oci = \"registry/repository:tag\", sha256 = \"...\" }, with no other keys"
)]
pub enum PluginSource {
    /// `name = "plugins/dist/x.wasm"`, relative to the pipeline file.
    Path(String),
    /// `name = { path = "...", sha256 = "<64 hex digits>" }`: the run refuses
    /// a file whose digest differs.
    Pinned(PinnedPlugin),
    /// `name = { oci = "localhost:5000/evals/holdout:1.2.0", sha256 = "..." }`:
    /// a component shared through an OCI registry, pulled once into the
    /// private cache; pinned by `sha256` (the component) or by a manifest
    /// digest in the reference (`...@sha256:...`), or by `cleanroom lock`.
    Oci(OciPlugin),
}

/// `{ path, sha256 }` form of a plugin source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedPlugin {
    /// Path of the `.wasm`, relative to the pipeline file.
    pub path: String,
    /// Expected sha256 of the file, lowercase hex; optional.
    pub sha256: Option<String>,
}

/// `{ oci, sha256 }` form of a plugin source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OciPlugin {
    /// The OCI reference: `host[:port]/repository:tag`, optionally
    /// `@sha256:<manifest digest>`.
    pub oci: String,
    /// Expected sha256 of the component (the layer), lowercase hex; optional.
    pub sha256: Option<String>,
}

/// `[registries."host[:port]"]`.
/// Example: `username = "ci"`, `password_secret = "REGISTRY_PASSWORD"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryTable {
    /// The account to log in as.
    pub username: String,
    /// The `[secrets]` entry holding its password or token.
    pub password_secret: Spanned<String>,
}

impl PluginSource {
    /// The path as written, for a file plugin.
    pub fn path(&self) -> Option<&str> {
        match self {
            PluginSource::Path(path) | PluginSource::Pinned(PinnedPlugin { path, .. }) => Some(path),
            PluginSource::Oci(_) => None,
        }
    }

    /// The pinned digest, if any.
    pub fn sha256(&self) -> Option<&str> {
        match self {
            PluginSource::Path(_) => None,
            PluginSource::Pinned(p) => p.sha256.as_deref(),
            PluginSource::Oci(o) => o.sha256.as_deref(),
        }
    }
}

/// One `[check.ID]`, `[stage.ID]` or `[evaluator.ID]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepTable {
    /// The `[plugins]` entry this step runs. Example: `plugin = "forbid-pattern"`.
    pub plugin: Option<Spanned<String>>,
    /// A native program and its arguments, run in the kernel jail instead of
    /// a plugin. Example: `run = ["cargo", "test", "--offline"]`.
    pub run: Option<Spanned<Vec<String>>>,
    /// Extra read-only host paths a `run` program needs (toolchains), absolute
    /// or starting with `~/`. Example: `tools = ["~/.rustup", "~/.cargo/bin"]`.
    #[serde(default)]
    pub tools: Vec<Spanned<String>>,
    /// The only environment variables a `run` program sees, besides the
    /// documented `PATH`, `HOME` and `TMPDIR` (which these override).
    /// Example: `env = { RUSTUP_TOOLCHAIN = "stable" }`.
    pub env: Option<Spanned<BTreeMap<String, String>>>,
    /// Whether a `run` program may use the network. Default `false`: it gets
    /// a network namespace of its own with only a loopback that is down.
    pub network: Option<Spanned<bool>>,
    /// `run` steps: a language toolchain whose files, variables and cache
    /// key the step gets without plumbing: `rust` (rustup and cargo homes
    /// read-only, `CARGO_HOME`, `RUSTUP_HOME`, offline registry), `python`
    /// (the workspace's virtualenv and its base interpreter, `VIRTUAL_ENV`)
    /// or `node` (the node installation, the workspace's `node_modules`).
    /// Example: `toolchain = "rust"`.
    pub toolchain: Option<Spanned<String>>,
    /// `run` steps: workspace-relative directories kept between runs in a
    /// private per-step directory of the runner's cache, mounted writable
    /// over their workspace path (never the workspace's own copy), so
    /// incremental builds work in the jail. No other step sees them;
    /// `cleanroom cache clean` removes them. Example: `cache_dirs = ["target"]`.
    #[serde(default)]
    pub cache_dirs: Vec<Spanned<String>>,
    /// `run` steps: how the program's output becomes findings with path,
    /// line, column, rule and severity: `"sarif"`, `"junit"`,
    /// `"cargo-json"`, `"checkstyle"` or `{ regex = '...' }` (named groups
    /// `path`, `line`, `column`, `rule`, `severity`, `message`), read from
    /// stdout, or from a file the program writes with `{ format = "junit",
    /// file = "report.xml" }`. Default: one `exit-status` finding when the
    /// program fails.
    pub findings: Option<Spanned<FindingsSpec>>,
    /// The files the step is about, as globs over workspace-relative paths
    /// (`*.rs` matches at any depth; a pattern with `/` matches from the
    /// root: `src/**/*.py`). With `run --files`, `--staged` or `--from-ref`,
    /// the step runs only when a selected file matches, and sees only the
    /// matching files (unless `whole_tree = true`). Default: every file;
    /// a step without `include` is never narrowed.
    #[serde(default)]
    pub include: Vec<Spanned<String>>,
    /// Globs of files `include` leaves out. Example: `exclude = ["vendor/**"]`.
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    /// With `include`: the step still sees its whole mounts when it runs on
    /// a selection (`cargo test` needs the crate, not the changed file);
    /// the selection only decides whether it runs. Default `false`.
    pub whole_tree: Option<Spanned<bool>>,
    /// Workspace-relative files or directories mounted read-only at
    /// `/<same path>`. Example: `read = ["src", "Cargo.toml"]`.
    #[serde(default)]
    pub read: Vec<Spanned<String>>,
    /// Workspace-relative directories mounted read-write (stages only).
    #[serde(default)]
    pub write: Vec<Spanned<String>>,
    /// Ids of steps that must pass before this one runs.
    #[serde(default)]
    pub needs: Vec<Spanned<String>>,
    /// Wall-clock deadline. Default 60s. Example: `timeout = "30s"`.
    pub timeout: Option<DurationSpec>,
    /// Memory cap: a plugin's linear memory (default 512MiB), or a `run`
    /// program's whole process tree, as a memory cgroup (default none).
    /// Example: `memory = "256MiB"`.
    pub memory: Option<ByteSize>,
    /// Free-form settings passed to the plugin as JSON.
    pub config: Option<Spanned<toml::Table>>,
    /// Checks and evaluators: the stage to re-run, with feedback, when this
    /// step fails. Example: `retry = "implement"`.
    pub retry: Option<Spanned<String>>,
    /// With `retry`: attempts of the stage at most, the first included. Default 3.
    pub max_iterations: Option<Spanned<u32>>,
    /// Gates with `retry`: stop the loop (`termination: plateau`) when the
    /// gate's score (an evaluator's satisfaction, a check's error findings)
    /// has not improved on its best for this many rounds in a row, instead
    /// of spending the attempts left. Default: off. Example: `stop_on_plateau = 2`.
    pub stop_on_plateau: Option<Spanned<u32>>,
    /// Plugin steps with `allow_hosts`: outgoing requests the step may make
    /// in one run, all its invocations together (an evaluator's every
    /// scenario run). Checked by the host before each request leaves; the
    /// request past it is refused and the step is an `error` (never a pass),
    /// and the run stops with `termination: budget`. May also be written in
    /// the step's `config` (the first-party agent and judge document it
    /// there); the step key wins. Example: `max_requests = 40`.
    pub max_requests: Option<Spanned<u32>>,
    /// Evaluators: runs of each scenario, each in a fresh instance. Default 1.
    pub repeat: Option<Spanned<u32>>,
    /// Evaluators: passing runs a scenario needs. Default: all of `repeat`.
    pub require: Option<Spanned<u32>>,
    /// Evaluators: the share of scenarios that must pass, 0.0 to 1.0. Default 1.0.
    pub threshold: Option<Spanned<f64>>,
    /// Evaluators: the workspace path of a `wasi:cli` command component,
    /// usually built by an earlier step, that the evaluator runs through the
    /// `subject` interface. Example: `subject = "build/app.wasm"`.
    pub subject: Option<Spanned<String>>,
    /// Evaluators: workspace paths the subject may read. Default: none.
    #[serde(default)]
    pub subject_read: Vec<Spanned<String>>,
    /// Evaluators: the `[service.ID]` its scenarios send requests to
    /// through the `service` interface. Example: `service = "api"`.
    pub service: Option<Spanned<String>>,
    /// Evaluators: deadline of one subject run. Default 10s.
    pub subject_timeout: Option<DurationSpec>,
    /// Stages: bytes they may write (their staged copies, and a native
    /// program's temporary directory) before they are stopped. Default 1GiB.
    pub max_write: Option<Spanned<ByteSize>>,
    /// `run` steps: processes the program may have at once, where the
    /// kernel's pids controller is available. Default 512.
    pub pids: Option<Spanned<u32>>,
    /// Whether a result may be reused from the result cache when none of
    /// the step's inputs changed. Default `true`, except for evaluators with
    /// `repeat > 1`, whose repeated runs exist to sample a nondeterministic
    /// subject. Set `false` for a step whose result depends on more than its
    /// inputs (the time, the network).
    pub cache: Option<Spanned<bool>>,
    /// Plugin steps: the only origins outgoing `wasi:http` requests may go
    /// to, `scheme://host[:port]` (`*.example.com` matches subdomains).
    /// Without it a step gets no `wasi:http` at all.
    /// Example: `allow_hosts = ["https://api.openai.com"]`.
    pub allow_hosts: Option<Spanned<Vec<Spanned<String>>>>,
    /// Plugin steps with `allow_hosts`: also allow hosts that resolve to
    /// loopback, private or link-local addresses (local test servers).
    /// Default `false`.
    pub allow_private: Option<Spanned<bool>>,
    /// Plugin steps: `[secrets]` given to the guest as environment
    /// variables of the same name. Example: `secrets = ["API_KEY"]`.
    #[serde(default)]
    pub secrets: Vec<Spanned<String>>,
    /// Plugin steps with `allow_hosts`: secrets the host adds as request
    /// headers for one allowed host, never shown to the guest.
    #[serde(default)]
    pub secret_headers: Vec<Spanned<SecretHeader>>,
}

/// One `[subject.ID]` table: the program an evaluator judges, run in a
/// sandbox of its own once per `subject.run` call. Exactly one of `run` and
/// `component`.
/// Example: `[subject.wc]` with `run = ["python3", "app/wc.py"]` and `read = ["app"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectTable {
    /// A native program and its first arguments, run in the kernel jail;
    /// each call's arguments follow these. Example: `run = ["python3", "app/wc.py"]`.
    pub run: Option<Spanned<Vec<String>>>,
    /// The workspace path of a `wasi:cli` command component.
    /// Example: `component = "build/rpn.wasm"`.
    pub component: Option<Spanned<String>>,
    /// Workspace paths it may read (never the holdout, never `private`
    /// paths). Default: none. Example: `read = ["app"]`.
    #[serde(default)]
    pub read: Vec<Spanned<String>>,
    /// `run` subjects: extra read-only host paths (interpreters, toolchains),
    /// as for `run` steps. Example: `tools = ["~/.local/lib/python3"]`.
    #[serde(default)]
    pub tools: Vec<Spanned<String>>,
    /// `run` subjects: its only environment variables besides `PATH`, `HOME`
    /// and `TMPDIR`. Example: `env = { LANG = "C.UTF-8" }`.
    pub env: Option<Spanned<BTreeMap<String, String>>>,
    /// Deadline of one call. Default 10s (and never past the evaluator
    /// step's own deadline). Example: `timeout = "10s"`.
    pub timeout: Option<DurationSpec>,
    /// Memory cap of one call: a component's linear memory, or a native
    /// program's whole process tree (a memory cgroup; refused with the
    /// reason where the kernel gives none). Default: 512MiB for a
    /// component, none for a native program. Example: `memory = "256MiB"`.
    pub memory: Option<Spanned<ByteSize>>,
    /// `run` subjects: processes one call may have at once. Default 64.
    pub pids: Option<Spanned<u32>>,
    /// Bytes of stdout, and separately of stderr, one call may print before
    /// its output is judged cut. Default 1MiB.
    pub output: Option<Spanned<ByteSize>>,
}

/// One `[service.ID]` table: a native program that listens on a port in a
/// network namespace of its own, started (and waited for) before the
/// evaluators that name it, reached only through the runner.
/// Example: `[service.api]` with `run = ["python3", "app/server.py"]`,
/// `read = ["app"]`, `port = 8080`, `ready = { http = "/health" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTable {
    /// The program and its arguments, run in the kernel jail. Exactly one
    /// of `run` and `component`.
    pub run: Option<Spanned<Vec<String>>>,
    /// Instead of `run`: the workspace path of a `wasi:http/proxy`
    /// component, served in-process (an instance per request, as
    /// `wasi:http` prescribes). Example: `component = "build/api.wasm"`.
    pub component: Option<Spanned<String>>,
    /// Workspace paths it may read (never the holdout, never `private`
    /// paths). Default: none.
    #[serde(default)]
    pub read: Vec<Spanned<String>>,
    /// Extra read-only host paths (interpreters, toolchains), as for `run` steps.
    #[serde(default)]
    pub tools: Vec<Spanned<String>>,
    /// Its only environment variables besides `PATH`, `HOME`, `TMPDIR`
    /// and `PORT`.
    pub env: Option<Spanned<BTreeMap<String, String>>>,
    /// `run` services: the TCP port it listens on, on its own loopback
    /// (also `$PORT`).
    pub port: Option<Spanned<u16>>,
    /// When it counts as started. Default: `{ tcp = true }` within 30s.
    pub ready: Option<Spanned<ReadyTable>>,
    /// `on-change` (default): started once per round and kept up for every
    /// evaluator that names it, restarted when what it reads changed;
    /// `per-scenario`: a fresh one for each scenario run.
    pub restart: Option<Spanned<RestartPolicy>>,
    /// Memory cap of its whole process tree (a memory cgroup). Default: none.
    pub memory: Option<Spanned<ByteSize>>,
    /// Processes it may have at once. Default 64.
    pub pids: Option<Spanned<u32>>,
    /// Bytes of its stdout, and of its stderr, kept per start. Default 1MiB.
    pub output: Option<Spanned<ByteSize>>,
    /// The `[twin.ID]`s it may call: the only outside services it can
    /// reach. Example: `twins = ["mail"]`.
    #[serde(default)]
    pub twins: Vec<Spanned<String>>,
}

/// One `[twin.ID]` table: a stand-in for an outside service, run like a
/// service (its own jail and network namespace), started fresh for every
/// scenario run, every request to it recorded.
/// Example: `[twin.mail]` with `origin = "https://api.mail.example"`,
/// `run = ["python3", "twins/mail.py"]`, `read = ["twins"]`, `port = 9000`,
/// `url_env = "MAIL_API_URL"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwinTable {
    /// What the service believes it calls, `scheme://host[:port]`; shown
    /// in reports, and sent to the twin as `x-cleanroom-origin`.
    pub origin: Spanned<String>,
    /// The program and its arguments, run in the kernel jail. Exactly one
    /// of `run` and `component`.
    pub run: Option<Spanned<Vec<String>>>,
    /// Instead of `run`: the workspace path of a `wasi:http/proxy`
    /// component, served in-process (an instance per request).
    pub component: Option<Spanned<String>>,
    /// Workspace paths it may read. Default: none.
    #[serde(default)]
    pub read: Vec<Spanned<String>>,
    /// Extra read-only host paths, as for `run` steps.
    #[serde(default)]
    pub tools: Vec<Spanned<String>>,
    /// Its only environment variables besides `PATH`, `HOME`, `TMPDIR` and `PORT`.
    pub env: Option<Spanned<BTreeMap<String, String>>>,
    /// The TCP port the service reaches it on, on the service's loopback
    /// (and a `run` twin listens on, on its own; also `$PORT`).
    pub port: Spanned<u16>,
    /// When it counts as started, as for services. Default `{ tcp = true }`.
    pub ready: Option<Spanned<ReadyTable>>,
    /// The environment variable through which the service finds it: set to
    /// `http://127.0.0.1:<port>` in the service's environment.
    pub url_env: Spanned<String>,
    /// Faults injected between the service and the twin, deterministic by
    /// seed. Example: `faults = { error_rate = 0.1, latency = "50ms", seed = 7 }`.
    pub faults: Option<Spanned<FaultsTable>>,
    /// Memory cap of its process tree. Default: none.
    pub memory: Option<Spanned<ByteSize>>,
    /// Processes it may have at once. Default 64.
    pub pids: Option<Spanned<u32>>,
    /// Bytes of its stdout, and of its stderr, kept per start. Default 1MiB.
    pub output: Option<Spanned<ByteSize>>,
}

/// `faults = { ... }` of a twin.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsTable {
    /// Share of requests answered `503` without reaching the twin, 0.0 to 1.0.
    pub error_rate: Option<f64>,
    /// Delay added before each request reaches the twin.
    pub latency: Option<DurationSpec>,
    /// Seed of the fault sequence (the same seed, the same faults, request
    /// by request, in every scenario run). Default 0.
    pub seed: Option<u64>,
}

/// `ready = { ... }`: exactly one way to tell that a service is up, and
/// how long to wait for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadyTable {
    /// Ready when `GET` of this path answers 2xx or 3xx. Example: `http = "/health"`.
    pub http: Option<String>,
    /// Ready when its port accepts a connection.
    pub tcp: Option<bool>,
    /// Ready when its stdout contains this text. Example: `stdout = "listening on"`.
    pub stdout: Option<String>,
    /// How long to wait. Default 30s.
    pub timeout: Option<DurationSpec>,
}

/// When a service is restarted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Once per round, shared by the evaluators that name it; again when
    /// what it reads changed.
    #[default]
    OnChange,
    /// A fresh service for each scenario run.
    PerScenario,
}

/// A step or plugin id: ASCII letters, digits, `-` and `_`, starting with a
/// letter or digit, at most 64 characters. Example: `no-stubs`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Id(pub String);

impl TryFrom<String> for Id {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let valid_start = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        let valid_rest = s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if valid_start && valid_rest && s.len() <= 64 {
            Ok(Id(s))
        } else {
            Err(format!(
                "invalid id `{s}`: use letters, digits, `-` and `_`, starting with a letter or digit (at most 64 characters)"
            ))
        }
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Manifest {
    /// Parses `text`, the contents of the pipeline file at `path`.
    ///
    /// # Errors
    /// One `CR002` diagnostic pointing at the offending line and column, with a
    /// "did you mean" hint for a misspelt key.
    pub fn parse(text: &str, source: &SourceMap) -> Result<Manifest, Diagnostic> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            let mut diagnostic = Diagnostic::new(Code::CR002, message.clone());
            diagnostic.location = Some(match e.span() {
                Some(span) => source.locate(span.start),
                None => crate::diag::Location::Path(source.path().to_path_buf()),
            });
            diagnostic.hint = Some(
                unknown_field_hint(&message)
                    .unwrap_or_else(|| "see docs/pipeline.md for the pipeline format".to_string()),
            );
            diagnostic
        })
    }

    /// Reads and parses the pipeline file at `path`.
    ///
    /// # Errors
    /// `CR001` when the file cannot be read, else as [`Manifest::parse`].
    pub fn load(path: &Path) -> Result<(Manifest, SourceMap), Diagnostic> {
        let cannot_read = |reason: String| {
            Diagnostic::new(Code::CR001, format!("cannot read the pipeline file: {reason}"))
                .hint("check the path; `cleanroom run` takes the path of a pipeline .toml file")
        };
        let meta = fs_err::metadata(path).map_err(|e| cannot_read(e.to_string()))?;
        if !meta.is_file() {
            return Err(cannot_read(format!("`{}` is not a regular file", path.display())));
        }
        if meta.len() > MAX_PIPELINE_SIZE {
            return Err(cannot_read(format!(
                "`{}` is {} bytes, over the {MAX_PIPELINE_SIZE}-byte limit",
                path.display(),
                meta.len()
            )));
        }
        let text = fs_err::read_to_string(path).map_err(|e| cannot_read(e.to_string()))?;
        let source = SourceMap::new(path, &text);
        let manifest = Manifest::parse(&text, &source)?;
        Ok((manifest, source))
    }
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`"),
/// a "did you mean" hint, or the list of allowed keys.
fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    Some(match suggest(field, candidates.iter().copied()) {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!("allowed keys here: {}", candidates.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, Diagnostic> {
        Manifest::parse(text, &SourceMap::new(Path::new("p.toml"), text))
    }

    #[test]
    fn minimal_pipeline_parses() {
        let m = parse(
            "[pipeline]\nname = \"x\"\n[plugins]\nfp = \"a.wasm\"\npin = { path = \"b.wasm\", sha256 = \"ab\" }\n[check.a]\nplugin = \"fp\"\nread = [\"src\"]\ntimeout = \"5s\"\nconfig = { k = 1 }\n",
        )
        .unwrap();
        assert_eq!(m.pipeline.name, "x");
        assert_eq!(m.plugins.len(), 2);
        let step = m.check.values().next().unwrap();
        assert_eq!(step.timeout.unwrap().0.as_secs(), 5);
    }

    #[test]
    fn unknown_key_reports_line_column_and_suggestion() {
        let err = parse("[pipeline]\nname = \"x\"\n[check.a]\nplugin = \"fp\"\nreed = [\"src\"]\n").unwrap_err();
        assert_eq!(err.code, Code::CR002);
        assert!(err.message.contains("unknown field `reed`"), "{}", err.message);
        assert_eq!(err.location.unwrap().to_string(), "p.toml:5:1");
        assert_eq!(err.hint.as_deref(), Some("did you mean `read`?"));
    }

    #[test]
    fn bad_duration_points_at_the_value() {
        let err = parse("[pipeline]\nname = \"x\"\n[check.a]\ntimeout = \"30x\"\n").unwrap_err();
        assert!(err.message.contains("invalid duration `30x`"), "{}", err.message);
        assert_eq!(err.location.unwrap().to_string(), "p.toml:4:11");
    }

    #[test]
    fn bad_id_is_rejected_while_parsing() {
        let err = parse("[pipeline]\nname = \"x\"\n[check.\"a b\"]\n").unwrap_err();
        assert!(err.message.contains("invalid id `a b`"), "{}", err.message);
    }

    #[test]
    fn malformed_toml_reports_position() {
        let err = parse("[pipeline\nname = 1\n").unwrap_err();
        assert_eq!(err.code, Code::CR002);
        assert!(err.location.unwrap().to_string().starts_with("p.toml:1:"));
    }
}
