//! The subject capability, plan half: the program an evaluator judges.
//!
//! An evaluator names its subject with `subject = "..."`: the id of a
//! `[subject.ID]` table, or (as before those tables existed) the workspace
//! path of a `wasi:cli` command component. A `[subject.ID]` table is either
//! `component = "<path>"` or `run = ["program", "args"...]`, a native
//! program run in the kernel jail, and says what one call may read, its
//! tools, environment, deadline, memory, processes and output.
//!
//! What this module decides, once, for every evaluator that names a
//! subject ([`for_evaluator`]): the program, and a grant of its own that
//! never includes the evaluator's mounts (so never the holdout). Its paths
//! may be built by a step upstream of the evaluator; any other missing path
//! is an error. A file that is not a component named as `subject = "..."`
//! is refused here with what to write instead, rather than failing in
//! wasmtime on every attempt. The barrier ([`super::barrier`]) refuses a
//! subject path or tool that overlaps a holdout or `private` path. The
//! sandbox half is [`crate::sandbox::subject`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use toml::Spanned;

use crate::diag::{Code, Diagnostic, Diagnostics, Location};
use crate::manifest::{ByteSize, DurationSpec, Manifest, SubjectTable};
use crate::plan::grant::{Grant, Limits, Mount, NativeGrant, Reach};
use crate::plan::{command, mounts};

/// Deadline of one subject call when nothing sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Processes one call of a native subject may have when `pids` is not set.
pub const DEFAULT_PIDS: u32 = 64;

/// The program an evaluator judges, and what each call of it may touch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Subject {
    /// The `[subject.ID]` it was declared as; `None` for `subject = "<path>"`.
    pub id: Option<String>,
    /// What runs.
    pub program: SubjectProgram,
    /// Its own grant: read-only mounts, limits and, for a native program,
    /// tools, environment and memory cap (never network).
    pub grant: Grant,
}

/// What a subject runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectProgram {
    /// A `wasi:cli` command component (the file may not exist until an
    /// upstream step builds it).
    Component(Mount),
    /// A native program in the kernel jail.
    Native {
        /// The program: found on the subject's `PATH`, absolute, or a
        /// workspace file (then also named by `file`).
        program: PathBuf,
        /// Arguments before each call's own.
        args: Vec<String>,
        /// The `run` list as written, for messages.
        display: String,
        /// When the program is a workspace file: its path, one of the
        /// grant's read-only mounts (it may be built upstream).
        file: Option<String>,
    },
}

impl Subject {
    /// Every workspace path the subject touches, with a word for messages:
    /// the component or program file, then its `read` mounts.
    pub fn paths(&self) -> Vec<(String, &Mount)> {
        let mut paths: Vec<(String, &Mount)> = match &self.program {
            SubjectProgram::Component(mount) => vec![(format!("subject `{}`", mount.rel), mount)],
            SubjectProgram::Native { .. } => Vec::new(),
        };
        paths.extend(self.grant.mounts.iter().map(|m| match &self.id {
            Some(id) => (format!("subject `{id}` read `{}`", m.rel), m),
            None => (format!("subject_read `{}`", m.rel), m),
        }));
        paths
    }

    /// What `--dry-run` says it runs: `build/app.wasm`, or
    /// `wc (python3 app/wc.py, jailed)`.
    pub fn describe(&self) -> String {
        match (&self.program, &self.id) {
            (SubjectProgram::Component(mount), None) => mount.rel.clone(),
            (SubjectProgram::Component(mount), Some(id)) => format!("{id} ({})", mount.rel),
            (SubjectProgram::Native { display, .. }, id) => {
                format!("{} ({display}, jailed)", id.as_deref().unwrap_or("subject"))
            }
        }
    }
}

/// Every `[subject.ID]` table, resolved once. A path that does not exist
/// yet is accepted here when any step writes it; [`for_evaluator`] then
/// checks that a step the evaluator needs does. `None` for a table with
/// errors (already reported).
pub(crate) fn resolve_tables(
    manifest: &Manifest,
    workspace: &Path,
    all_writes: &[String],
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> BTreeMap<String, Option<Subject>> {
    manifest
        .subject
        .iter()
        .map(|(id, table)| {
            let subject = resolve_table((&id.get_ref().0, id.span()), table, workspace, all_writes, here, diags);
            (id.get_ref().0.clone(), subject)
        })
        .collect()
}

fn resolve_table(
    (id, at_table): (&str, std::ops::Range<usize>),
    t: &SubjectTable,
    workspace: &Path,
    all_writes: &[String],
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<Subject> {
    let refuse = |diags: &mut Diagnostics, span: Option<std::ops::Range<usize>>, message: String, hint: &str| {
        let span = span.unwrap_or_else(|| at_table.clone());
        diags.push(Diagnostic::new(Code::CR021, format!("subject `{id}`: {message}")).at(here(span)).hint(hint));
    };
    let timeout = t.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0);
    match (&t.run, &t.component) {
        (Some(run), Some(_)) => {
            refuse(
                diags,
                Some(run.span()),
                "has both `run` and `component`".into(),
                "a subject is either a native program (`run`) or a component (`component`); keep one",
            );
            None
        }
        (None, None) => {
            refuse(
                diags,
                None,
                "has neither `run` nor `component`".into(),
                "add `run = [\"python3\", \"app/main.py\"]` or `component = \"build/app.wasm\"`",
            );
            None
        }
        (Some(run), None) => {
            let owner = format!("subject `{id}`");
            let keys = NativeKeys {
                owner: &owner,
                at: at_table.clone(),
                run,
                read: &t.read,
                tools: &t.tools,
                env: t.env.as_ref(),
                memory: t.memory.as_ref(),
                pids: t.pids.as_ref(),
                output: t.output.as_ref(),
            };
            let (native, mut grant) = resolve_native(&keys, workspace, all_writes, here, diags)?;
            grant.limits.timeout = timeout;
            let program = SubjectProgram::Native {
                program: native.program,
                args: native.args,
                display: native.display,
                file: native.file,
            };
            Some(Subject { id: Some(id.to_string()), program, grant })
        }
        (None, Some(raw)) => {
            let errors_before = diags.0.len();
            let native_keys = [
                ("tools", t.tools.first().map(Spanned::span)),
                ("env", t.env.as_ref().map(Spanned::span)),
                ("pids", t.pids.as_ref().map(Spanned::span)),
            ];
            for (key, span) in native_keys {
                if let Some(span) = span {
                    refuse(
                        diags,
                        Some(span),
                        format!("`{key}` applies only to `run` subjects"),
                        "a component gets no host tools, environment or processes; remove the key",
                    );
                }
            }
            let what = format!("subject `{id}`: read");
            let reads: Vec<Mount> =
                t.read.iter().filter_map(|raw| resolve_path(raw, workspace, all_writes, &what, here, diags)).collect();
            let component = component_mount(raw, workspace, all_writes, &format!("subject `{id}`"), here, diags);
            let limits = Limits {
                timeout,
                memory: t.memory.as_ref().map_or(crate::plan::limits::DEFAULT_MEMORY, |m| m.get_ref().0),
                output: output_cap(t.output.as_ref(), &format!("subject `{id}`"), here, diags),
                ..Limits::default()
            };
            if diags.0.len() > errors_before {
                return None;
            }
            component.map(|component| Subject {
                id: Some(id.to_string()),
                program: SubjectProgram::Component(component),
                grant: Grant::new(reads, limits),
            })
        }
    }
}

/// The keys a native program (a `run` subject, a service) is declared with.
pub(crate) struct NativeKeys<'a> {
    /// `subject `wc`` or `service `api``, for messages.
    pub(crate) owner: &'a str,
    /// The table's header, for messages about the table as a whole.
    pub(crate) at: std::ops::Range<usize>,
    pub(crate) run: &'a Spanned<Vec<String>>,
    pub(crate) read: &'a [Spanned<String>],
    pub(crate) tools: &'a [Spanned<String>],
    pub(crate) env: Option<&'a Spanned<BTreeMap<String, String>>>,
    pub(crate) memory: Option<&'a Spanned<crate::manifest::ByteSize>>,
    pub(crate) pids: Option<&'a Spanned<u32>>,
    pub(crate) output: Option<&'a Spanned<crate::manifest::ByteSize>>,
}

/// A native program as resolved from `run`.
pub(crate) struct ResolvedProgram {
    /// On its `PATH`, absolute, or a workspace file.
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) display: String,
    /// When a workspace file: its path, one of the grant's mounts.
    pub(crate) file: Option<String>,
}

/// Resolves a native program and its grant: read-only mounts (its program
/// file among them when it is one), tools, environment, memory cap, pids
/// and output caps; never the network. `None` when anything is wrong
/// (reported).
pub(crate) fn resolve_native(
    keys: &NativeKeys<'_>,
    workspace: &Path,
    writes: &[String],
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<(ResolvedProgram, Grant)> {
    let owner = keys.owner;
    let errors_before = diags.0.len();
    let what = format!("{owner}: read");
    let mut reads: Vec<Mount> =
        keys.read.iter().filter_map(|raw| resolve_path(raw, workspace, writes, &what, here, diags)).collect();
    if let Some(p) = keys.pids.filter(|p| *p.get_ref() == 0) {
        diags.push(
            Diagnostic::new(Code::CR021, format!("{owner}: `pids = 0` would not let it start"))
                .at(here(p.span()))
                .hint("allow at least 1 process"),
        );
    }
    let limits = Limits {
        output: output_cap(keys.output, owner, here, diags),
        pids: keys.pids.map_or(DEFAULT_PIDS, |p| *p.get_ref()),
        ..Limits::default()
    };
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut native = NativeGrant::default();
    for raw in keys.tools {
        match command::tool_path(raw.get_ref(), home.as_deref()) {
            Ok(path) => native.tools.push(path),
            Err((code, message, hint)) => {
                diags.push(Diagnostic::new(code, format!("{owner}: {message}")).at(here(raw.span())).hint(hint))
            }
        }
    }
    let granted = keys.env.map(|env| env.get_ref().clone()).unwrap_or_default();
    for name in granted.keys() {
        if let Err(message) = command::check_env_name(name) {
            let at = here(keys.env.map_or(keys.at.clone(), Spanned::span));
            diags.push(
                Diagnostic::new(Code::CR002, format!("{owner}: {message}")).at(at).hint("use letters, digits and `_`"),
            );
        }
    }
    native.env = command::environment(&native.tools, &granted, home.as_deref(), None);
    native.memory = keys.memory.map(|m| m.get_ref().0);
    let at = here(keys.run.span());
    let Some(name) = keys.run.get_ref().first() else {
        diags.push(
            Diagnostic::new(Code::CR017, format!("{owner} has an empty `run`"))
                .at(at)
                .hint("write the program and its first arguments, e.g. `run = [\"python3\", \"app/main.py\"]`"),
        );
        return None;
    };
    let args = keys.run.get_ref()[1..].to_vec();
    let display = keys.run.get_ref().join(" ");
    let program = if name.contains('/') && !Path::new(name).is_absolute() {
        let spanned = Spanned::new(keys.run.span(), name.clone());
        let file = resolve_path(&spanned, workspace, writes, &format!("{owner}: program"), here, diags)?;
        let program = ResolvedProgram { program: file.host.clone(), args, display, file: Some(file.rel.clone()) };
        reads.push(file);
        program
    } else {
        match command::find_program(name, &native.env["PATH"], workspace) {
            Ok(program) => ResolvedProgram { program, args, display, file: None },
            Err((code, message, hint)) => {
                diags.push(Diagnostic::new(code, format!("{owner}: {message}")).at(at).hint(hint));
                return None;
            }
        }
    };
    if diags.0.len() > errors_before {
        return None;
    }
    let mut grant = Grant::new(reads, limits);
    grant.reach = Reach::Native(native);
    Some((program, grant))
}

/// An `output` cap, refused when 0.
fn output_cap(
    output: Option<&Spanned<crate::manifest::ByteSize>>,
    owner: &str,
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> u64 {
    if let Some(o) = output.filter(|o| o.get_ref().0 == 0) {
        diags.push(
            Diagnostic::new(Code::CR021, format!("{owner}: `output = 0` keeps nothing to judge"))
                .at(here(o.span()))
                .hint("allow some output, e.g. \"1MiB\""),
        );
    }
    output.map_or(crate::plan::limits::DEFAULT_OUTPUT_CAP, |o| o.get_ref().0)
}

/// A read-only workspace path of a subject; missing is fine when some step
/// writes it.
pub(crate) fn resolve_path(
    raw: &Spanned<String>,
    workspace: &Path,
    writes: &[String],
    what: &str,
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<Mount> {
    match mounts::resolve_or_upstream(workspace, raw.get_ref(), false, writes) {
        Ok(mount) => Some(mount),
        Err(e) => {
            diags.push(Diagnostic::new(e.code, format!("{what}: {}", e.message)).at(here(raw.span())).hint(e.hint));
            None
        }
    }
}

/// The component file of a subject: a file, not a directory, named
/// `*.wasm` or starting like WebAssembly.
fn component_mount(
    raw: &Spanned<String>,
    workspace: &Path,
    writes: &[String],
    what: &str,
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<Mount> {
    let mount = resolve_path(raw, workspace, writes, what, here, diags)?;
    let refuse = |diags: &mut Diagnostics, message: String| {
        diags.push(Diagnostic::new(Code::CR021, format!("{what}: {message}")).at(here(raw.span())).hint(format!(
            "name a `wasi:cli` command component (e.g. `build/app.wasm`); to judge a native program, declare it: `[subject.app]` with `run = [\"python3\", \"{}\"]` and `read = [...]`, then `subject = \"app\"`",
            mount.rel
        )));
    };
    if mount.exists && mount.is_dir {
        refuse(diags, format!("`{}` is a directory", mount.rel));
        return None;
    }
    // Named `.wasm`, it is taken as one here (wasmtime checks it when it
    // loads); otherwise an existing file must start like WebAssembly.
    let named_wasm = Path::new(&mount.rel).extension().is_some_and(|e| e.eq_ignore_ascii_case("wasm"));
    let wasm = named_wasm || (mount.exists && is_wasm(&mount.host));
    if !wasm {
        refuse(diags, format!("`{}` is not a WebAssembly component", mount.rel));
        return None;
    }
    Some(Mount { is_dir: false, ..mount })
}

/// Whether the file at `path` starts with WebAssembly's magic bytes.
fn is_wasm(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    fs_err::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == *b"\0asm"
}

/// The evaluator's keys that only a `subject = "<path>"` may use.
pub(crate) struct PathKeys<'a> {
    /// `subject_read`.
    pub(crate) read: &'a [Spanned<String>],
    /// `subject_timeout`.
    pub(crate) timeout: Option<DurationSpec>,
    /// The evaluator's `memory` (a path subject shares its cap).
    pub(crate) memory: Option<ByteSize>,
    /// The evaluator step's `timeout`: no call runs past it.
    pub(crate) step_timeout: Duration,
}

/// The subject an evaluator names with `raw`: a declared `[subject.ID]`
/// (its paths checked against what this evaluator's upstream writes), or a
/// component path with `subject_read` and `subject_timeout`. Every call
/// ends by the evaluator step's `timeout` at the latest.
pub(crate) fn for_evaluator(
    evaluator: &str,
    raw: &Spanned<String>,
    keys: PathKeys<'_>,
    declared: &BTreeMap<String, Option<Subject>>,
    (workspace, upstream_writes): (&Path, &[String]),
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<Subject> {
    let step_timeout = keys.step_timeout;
    let invalid = |message: String, hint: &str| {
        Diagnostic::new(Code::CR021, format!("evaluator `{evaluator}`: {message}")).at(here(raw.span())).hint(hint)
    };
    if let Some(entry) = declared.get(raw.get_ref()) {
        let id = raw.get_ref();
        if !keys.read.is_empty() || keys.timeout.is_some() {
            diags.push(invalid(
                format!("`subject_read` and `subject_timeout` do not apply to the declared subject `{id}`"),
                &format!("set `read` and `timeout` in [subject.{id}] instead"),
            ));
        }
        let mut subject = entry.clone()?;
        for (what, mount) in subject.paths() {
            if !mount.exists && !mounts::produced_upstream(&mount.rel, upstream_writes) {
                diags.push(invalid(
                    format!("{what} does not exist, and no step this evaluator needs writes it"),
                    "add the step that builds it to `needs`, or fix the path",
                ));
            }
        }
        subject.grant.limits.timeout = subject.grant.limits.timeout.min(step_timeout);
        return Some(subject);
    }
    if raw.get_ref().contains(['/', '.']) || declared.is_empty() {
        let component =
            component_mount(raw, workspace, upstream_writes, &format!("evaluator `{evaluator}`: subject"), here, diags);
        let mut reads = Vec::new();
        for raw in keys.read {
            reads.extend(resolve_path(
                raw,
                workspace,
                upstream_writes,
                &format!("evaluator `{evaluator}`: subject_read"),
                here,
                diags,
            ));
        }
        if let Some(subject_timeout) = keys.timeout.filter(|s| s.0 > step_timeout) {
            diags.push(invalid(
                format!(
                    "`subject_timeout = \"{subject_timeout}\"` is longer than the step's `timeout` ({})",
                    DurationSpec(step_timeout)
                ),
                "`timeout` bounds the whole evaluator step, subject runs included: raise `timeout` or lower `subject_timeout`",
            ));
        }
        let limits = Limits {
            timeout: keys.timeout.map_or(DEFAULT_TIMEOUT.min(step_timeout), |d| d.0),
            memory: keys.memory.map_or(crate::plan::limits::DEFAULT_MEMORY, |m| m.0),
            ..Limits::default()
        };
        return component.map(|component| Subject {
            id: None,
            program: SubjectProgram::Component(component),
            grant: Grant::new(reads, limits),
        });
    }
    let names: Vec<&str> = declared.keys().map(String::as_str).collect();
    let hint = match crate::diag::suggest(raw.get_ref(), names.iter().copied()) {
        Some(best) => format!("did you mean `{best}`?"),
        None => {
            format!("declared subjects: {}; or write the path of a component, e.g. `build/app.wasm`", names.join(", "))
        }
    };
    diags.push(invalid(format!("subject `{}` is not a [subject.*] table", raw.get_ref()), &hint));
    None
}
