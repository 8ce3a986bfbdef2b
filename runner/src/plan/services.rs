//! The service capability, plan half: programs under evaluation that
//! listen for requests.
//!
//! A `[service.ID]` table is a native program (`run`), what it may read
//! (never the holdout, never `private` paths: [`super::barrier`]), its
//! tools and environment, the port it listens on inside a network
//! namespace of its own, when it counts as ready, and when it is restarted.
//! An evaluator names it with `service = "ID"`; its scenarios then send
//! requests through the `service` interface, and only to it. Its paths may
//! be built by a step upstream of the evaluator. The sandbox half is
//! [`crate::sandbox::service`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use toml::Spanned;

use crate::diag::{Code, Diagnostic, Diagnostics, Location};
use crate::manifest::{Manifest, RestartPolicy, ServiceTable};
use crate::plan::grant::{Grant, Limits, Mount};
use crate::plan::subjects::{self, NativeKeys};

/// How long a service may take to become ready when `ready` sets no timeout.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A service, ready to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    /// Its `[service.ID]`.
    pub id: String,
    /// The program (absolute).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The `run` list as written, for messages.
    pub display: String,
    /// When the program is a workspace file: its path, one of the grant's
    /// read-only mounts.
    pub file: Option<String>,
    /// Its grant: read-only mounts, tools, environment, memory, pids.
    pub grant: Grant,
    /// The port it listens on.
    pub port: u16,
    /// When it counts as ready.
    pub ready: Ready,
    /// When it is restarted.
    pub restart: RestartPolicy,
}

/// When a started service counts as ready: `stdout` when set, else `http`
/// when set, else when its port accepts a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ready {
    /// A `GET` of this path answers 2xx or 3xx.
    pub http: Option<String>,
    /// Its stdout contains this text.
    pub stdout: Option<String>,
    /// How long to wait.
    pub timeout: Duration,
}

impl Service {
    /// What `--dry-run` says of it.
    pub fn describe(&self) -> String {
        let ready = match (&self.ready.stdout, &self.ready.http) {
            (Some(text), _) => format!("stdout has {text:?}"),
            (None, Some(path)) => format!("GET {path} answers"),
            (None, None) => "its port accepts".into(),
        };
        format!(
            "{} ({}, jailed, port {} in its own network namespace; ready when {ready}, within {})",
            self.id,
            self.display,
            self.port,
            crate::manifest::DurationSpec(self.ready.timeout)
        )
    }
}

/// Every `[service.ID]` table, resolved once (as [`subjects::resolve_tables`]).
pub(crate) fn resolve_tables(
    manifest: &Manifest,
    workspace: &Path,
    all_writes: &[String],
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> BTreeMap<String, Option<Service>> {
    manifest
        .service
        .iter()
        .map(|(id, table)| {
            let service = resolve_table((&id.get_ref().0, id.span()), table, workspace, all_writes, here, diags);
            (id.get_ref().0.clone(), service)
        })
        .collect()
}

fn resolve_table(
    (id, at_table): (&str, std::ops::Range<usize>),
    t: &ServiceTable,
    workspace: &Path,
    all_writes: &[String],
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<Service> {
    let errors_before = diags.0.len();
    let refuse = |diags: &mut Diagnostics, span: std::ops::Range<usize>, message: String, hint: &str| {
        diags.push(Diagnostic::new(Code::CR021, format!("service `{id}`: {message}")).at(here(span)).hint(hint));
    };
    let owner = format!("service `{id}`");
    let keys = NativeKeys {
        owner: &owner,
        at: at_table.clone(),
        run: &t.run,
        read: &t.read,
        tools: &t.tools,
        env: t.env.as_ref(),
        memory: t.memory.as_ref(),
        pids: t.pids.as_ref(),
        output: t.output.as_ref(),
    };
    let native = subjects::resolve_native(&keys, workspace, all_writes, here, diags);
    let port = *t.port.get_ref();
    if port == 0 {
        refuse(
            diags,
            t.port.span(),
            "`port = 0` is not a port it can be reached on".into(),
            "write the port the program listens on, e.g. 8080",
        );
    }
    let mut ready = Ready { http: None, stdout: None, timeout: DEFAULT_READY_TIMEOUT };
    if let Some(table) = &t.ready {
        let r = table.get_ref();
        let ways = [r.http.is_some(), r.tcp == Some(true), r.stdout.is_some()].iter().filter(|w| **w).count();
        if ways != 1 {
            refuse(
                diags,
                table.span(),
                "`ready` must say exactly one way to tell it is up".into(),
                "write one of `ready = { http = \"/health\" }`, `{ tcp = true }` or `{ stdout = \"listening\" }` (with `timeout = \"30s\"` if needed)",
            );
        }
        if let Some(path) = r.http.as_ref().filter(|p| !p.starts_with('/')) {
            refuse(
                diags,
                table.span(),
                format!("`ready.http = {path:?}` is not a path"),
                "write a path starting with `/`, e.g. \"/health\"",
            );
        }
        if r.stdout.as_ref().is_some_and(String::is_empty) {
            refuse(diags, table.span(), "`ready.stdout` is empty".into(), "write the text it prints when it is ready");
        }
        ready = Ready {
            http: r.http.clone(),
            stdout: r.stdout.clone(),
            timeout: r.timeout.map_or(DEFAULT_READY_TIMEOUT, |d| d.0),
        };
    }
    let (program, grant) = native?;
    if diags.0.len() > errors_before {
        return None;
    }
    Some(Service {
        id: id.to_string(),
        program: program.program,
        args: program.args,
        display: program.display,
        file: program.file,
        grant: Grant { limits: Limits { timeout: ready.timeout, ..grant.limits }, ..grant },
        port,
        ready,
        restart: t.restart.as_ref().map_or_else(RestartPolicy::default, |r| *r.get_ref()),
    })
}

/// The service an evaluator names: a declared `[service.ID]` whose paths
/// this evaluator's upstream steps build (or that exist).
pub(crate) fn for_evaluator(
    evaluator: &str,
    raw: &Spanned<String>,
    declared: &BTreeMap<String, Option<Service>>,
    upstream_writes: &[String],
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<Service> {
    let invalid = |message: String, hint: String| {
        Diagnostic::new(Code::CR021, format!("evaluator `{evaluator}`: {message}")).at(here(raw.span())).hint(hint)
    };
    let Some(entry) = declared.get(raw.get_ref()) else {
        let names: Vec<&str> = declared.keys().map(String::as_str).collect();
        let hint = match crate::diag::suggest(raw.get_ref(), names.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None if names.is_empty() => "declare it: `[service.api]` with `run`, `port` and `read`".into(),
            None => format!("declared services: {}", names.join(", ")),
        };
        diags.push(invalid(format!("service `{}` is not a [service.*] table", raw.get_ref()), hint));
        return None;
    };
    let service = entry.clone()?;
    for mount in &service.grant.mounts {
        if !mount.exists && !super::gates::produced_upstream(&mount.rel, upstream_writes) {
            diags.push(invalid(
                format!(
                    "service `{}` reads `{}`, which does not exist, and no step this evaluator needs writes it",
                    service.id, mount.rel
                ),
                "add the step that builds it to `needs`, or fix the path".into(),
            ));
        }
    }
    Some(service)
}

/// Every workspace path a service touches (its read mounts, its program
/// file among them).
pub fn paths(service: &Service) -> impl Iterator<Item = &Mount> {
    service.grant.mounts.iter()
}
