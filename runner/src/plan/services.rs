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
use crate::plan::mounts;
use crate::plan::subjects::{self, NativeKeys};

/// How long a service may take to become ready when `ready` sets no timeout.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A service, ready to start.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
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
    /// Its grant: read-only mounts, tools, environment, memory, pids (a
    /// component's: its preopened mounts and limits).
    pub grant: Grant,
    /// A `wasi:http/proxy` component served in-process instead of a
    /// program (then `program` and `args` are empty).
    pub component: Option<Mount>,
    /// The port it listens on (0 for a component).
    pub port: u16,
    /// When it counts as ready.
    pub ready: Ready,
    /// When it is restarted.
    pub restart: RestartPolicy,
    /// The twins it may call (none for a twin's own program).
    pub twins: Vec<Twin>,
}

/// A twin: a program standing in for an outside service, started fresh for
/// every scenario run, reached by the service through the runner, which
/// records every request.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Twin {
    /// Its `[twin.ID]`.
    pub id: String,
    /// What the service believes it calls.
    pub origin: String,
    /// The variable that gives the service its URL.
    pub url_env: String,
    /// Faults injected on the way.
    pub faults: Faults,
    /// The twin's program, run like a service (its `port` is also where
    /// the service reaches it, on the service's own loopback).
    pub server: Service,
}

/// Faults a twin's traffic gets, deterministic by seed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Faults {
    /// Share of requests answered 503 without reaching the twin.
    pub error_rate: f64,
    /// Delay before each request reaches the twin.
    pub latency: Duration,
    /// Seed of the fault sequence.
    pub seed: u64,
}

/// When a started service counts as ready: `stdout` when set, else `http`
/// when set, else when its port accepts a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
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
        if let Some(component) = &self.component {
            return format!("{} (component {}, served in-process, an instance per request)", self.id, component.rel);
        }
        let twins: Vec<String> =
            self.twins.iter().map(|t| format!("{} as {} via ${}", t.id, t.origin, t.url_env)).collect();
        let twins = if twins.is_empty() { String::new() } else { format!("; twins: {}", twins.join(", ")) };
        let ready = match (&self.ready.stdout, &self.ready.http) {
            (Some(text), _) => format!("stdout has {text:?}"),
            (None, Some(path)) => format!("GET {path} answers"),
            (None, None) => "its port accepts".into(),
        };
        format!(
            "{} ({}, jailed, port {} in its own network namespace; ready when {ready}, within {}{twins})",
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
    let twins: BTreeMap<String, Option<Twin>> = manifest
        .twin
        .iter()
        .map(|(id, table)| {
            let twin = resolve_twin((&id.get_ref().0, id.span()), table, workspace, all_writes, here, diags);
            (id.get_ref().0.clone(), twin)
        })
        .collect();
    manifest
        .service
        .iter()
        .map(|(id, table)| {
            let service =
                resolve_table((&id.get_ref().0, id.span()), table, (workspace, all_writes), &twins, here, diags);
            (id.get_ref().0.clone(), service)
        })
        .collect()
}

/// A `[twin.ID]`: its program as a service of its own; nothing a stage
/// writes (the twin is part of the judge's world, which the coder must not
/// shape).
fn resolve_twin(
    (id, at_table): (&str, std::ops::Range<usize>),
    t: &crate::manifest::TwinTable,
    workspace: &Path,
    all_writes: &[String],
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<Twin> {
    let errors_before = diags.0.len();
    let refuse = |diags: &mut Diagnostics, span: std::ops::Range<usize>, message: String, hint: &str| {
        diags.push(Diagnostic::new(Code::CR021, format!("twin `{id}`: {message}")).at(here(span)).hint(hint));
    };
    let owner = format!("twin `{id}`");
    let keys = ServerKeys {
        owner: &owner,
        at: at_table.clone(),
        run: t.run.as_ref(),
        component: t.component.as_ref(),
        read: &t.read,
        tools: &t.tools,
        env: t.env.as_ref(),
        memory: t.memory.as_ref(),
        pids: t.pids.as_ref(),
        output: t.output.as_ref(),
    };
    let backing = backing(&keys, workspace, all_writes, here, diags);
    let origin = t.origin.get_ref().clone();
    if crate::plan::grant::HostRule::parse(&origin).is_err() {
        refuse(
            diags,
            t.origin.span(),
            format!("`origin = {origin:?}` is not `scheme://host[:port]`"),
            "write what the service believes it calls, e.g. \"https://api.mail.example\"",
        );
    }
    let url_env = t.url_env.get_ref().clone();
    if url_env.is_empty() || !url_env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        refuse(
            diags,
            t.url_env.span(),
            format!("`url_env = {url_env:?}` is not an environment variable name"),
            "use letters, digits and `_`, e.g. \"MAIL_API_URL\"",
        );
    }
    let mut faults = Faults { error_rate: 0.0, latency: Duration::ZERO, seed: 0 };
    if let Some(table) = &t.faults {
        let f = table.get_ref();
        let rate = f.error_rate.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&rate) {
            refuse(
                diags,
                table.span(),
                format!("`error_rate = {rate}` is outside 0.0 to 1.0"),
                "it is the share of requests that fail, e.g. 0.1",
            );
        }
        faults =
            Faults { error_rate: rate, latency: f.latency.map_or(Duration::ZERO, |d| d.0), seed: f.seed.unwrap_or(0) };
    }
    let server = server_of(id, Some(&t.port), t.ready.as_ref(), backing, here, diags);
    if let Some(server) = &server {
        for mount in server.grant.mounts.iter().chain(&server.component) {
            if let Some(w) =
                all_writes.iter().find(|w| mounts::is_within(&mount.rel, w) || mounts::is_within(w, &mount.rel))
            {
                diags.push(
                    Diagnostic::new(
                        Code::CR019,
                        format!("twin `{id}` reads `{}`, which a stage writes (`{w}`)", mount.rel),
                    )
                    .at(here(at_table.clone()))
                    .hint("a twin is part of the judge's world: keep its program and data where no stage can write"),
                );
            }
        }
    }
    if diags.0.len() > errors_before {
        return None;
    }
    server.map(|server| Twin { id: id.to_string(), origin, url_env, faults, server })
}

/// What serves a service or twin: a native program and its grant, or a
/// component and its grant.
enum Backing {
    Native(subjects::ResolvedProgram, Grant),
    Component(Mount, Grant),
}

/// The keys of a `[service.ID]` or `[twin.ID]` that say what serves it.
struct ServerKeys<'a> {
    owner: &'a str,
    at: std::ops::Range<usize>,
    run: Option<&'a Spanned<Vec<String>>>,
    component: Option<&'a Spanned<String>>,
    read: &'a [Spanned<String>],
    tools: &'a [Spanned<String>],
    env: Option<&'a Spanned<BTreeMap<String, String>>>,
    memory: Option<&'a Spanned<crate::manifest::ByteSize>>,
    pids: Option<&'a Spanned<u32>>,
    output: Option<&'a Spanned<crate::manifest::ByteSize>>,
}

/// Resolves `run` or `component` (exactly one) with their grant.
fn backing(
    k: &ServerKeys<'_>,
    workspace: &Path,
    writes: &[String],
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<Backing> {
    let owner = k.owner;
    let refuse = |diags: &mut Diagnostics, span: std::ops::Range<usize>, message: String, hint: &str| {
        diags.push(Diagnostic::new(Code::CR021, format!("{owner}: {message}")).at(here(span)).hint(hint));
    };
    match (k.run, k.component) {
        (Some(run), None) => {
            let keys = NativeKeys {
                owner,
                at: k.at.clone(),
                run,
                read: k.read,
                tools: k.tools,
                env: k.env,
                memory: k.memory,
                pids: k.pids,
                output: k.output,
            };
            subjects::resolve_native(&keys, workspace, writes, here, diags).map(|(p, g)| Backing::Native(p, g))
        }
        (None, Some(raw)) => {
            let errors_before = diags.0.len();
            for (key, span) in [
                ("tools", k.tools.first().map(Spanned::span)),
                ("env", k.env.map(Spanned::span)),
                ("pids", k.pids.map(Spanned::span)),
            ] {
                if let Some(span) = span {
                    refuse(
                        diags,
                        span,
                        format!("`{key}` applies only to `run`"),
                        "a component gets no host tools, environment or processes; remove the key",
                    );
                }
            }
            let what = format!("{owner}: read");
            let reads: Vec<Mount> = k
                .read
                .iter()
                .filter_map(|r| subjects::resolve_path(r, workspace, writes, &what, here, diags))
                .collect();
            let component = subjects::resolve_path(raw, workspace, writes, &format!("{owner}: component"), here, diags);
            if diags.0.len() > errors_before {
                return None;
            }
            let limits = Limits {
                memory: k.memory.map_or(crate::plan::limits::DEFAULT_MEMORY, |m| m.get_ref().0),
                ..Limits::default()
            };
            component.map(|c| Backing::Component(Mount { is_dir: false, ..c }, Grant::new(reads, limits)))
        }
        (Some(run), Some(_)) => {
            refuse(
                diags,
                run.span(),
                "has both `run` and `component`".into(),
                "keep one: a native program or a `wasi:http` component",
            );
            None
        }
        (None, None) => {
            refuse(
                diags,
                k.at.clone(),
                "has neither `run` nor `component`".into(),
                "add `run = [\"python3\", \"app/server.py\"]` (and `port`) or `component = \"build/app.wasm\"`",
            );
            None
        }
    }
}

/// The running half of a service or twin: what serves it, its grant, port
/// and readiness.
fn server_of(
    id: &str,
    port: Option<&Spanned<u16>>,
    ready: Option<&Spanned<crate::manifest::ReadyTable>>,
    backing: Option<Backing>,
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<Service> {
    let refuse = |diags: &mut Diagnostics, span: std::ops::Range<usize>, message: String, hint: &str| {
        diags.push(Diagnostic::new(Code::CR021, format!("`{id}`: {message}")).at(here(span)).hint(hint));
    };
    let errors_before = diags.0.len();
    let port_number = port.map_or(0, |p| *p.get_ref());
    if let Some(port) = port.filter(|p| *p.get_ref() == 0) {
        refuse(
            diags,
            port.span(),
            "`port = 0` is not a port it can be reached on".into(),
            "write the port the program listens on, e.g. 8080",
        );
    }
    let mut resolved = Ready { http: None, stdout: None, timeout: DEFAULT_READY_TIMEOUT };
    if let Some(table) = ready {
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
        resolved = Ready {
            http: r.http.clone(),
            stdout: r.stdout.clone(),
            timeout: r.timeout.map_or(DEFAULT_READY_TIMEOUT, |d| d.0),
        };
    }
    let backing = backing?;
    if diags.0.len() > errors_before {
        return None;
    }
    let (program, grant, component) = match backing {
        Backing::Native(program, grant) => (program, grant, None),
        Backing::Component(mount, grant) => {
            let display = format!("component {}", mount.rel);
            (
                subjects::ResolvedProgram { program: PathBuf::new(), args: Vec::new(), display, file: None },
                grant,
                Some(mount),
            )
        }
    };
    Some(Service {
        id: id.to_string(),
        program: program.program,
        args: program.args,
        display: program.display,
        file: program.file,
        component,
        grant: Grant { limits: Limits { timeout: resolved.timeout, ..grant.limits }, ..grant },
        port: port_number,
        ready: resolved,
        restart: RestartPolicy::OnChange,
        twins: Vec::new(),
    })
}

fn resolve_table(
    (id, at_table): (&str, std::ops::Range<usize>),
    t: &ServiceTable,
    (workspace, all_writes): (&Path, &[String]),
    declared_twins: &BTreeMap<String, Option<Twin>>,
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<Service> {
    let errors_before = diags.0.len();
    let owner = format!("service `{id}`");
    let keys = ServerKeys {
        owner: &owner,
        at: at_table.clone(),
        run: t.run.as_ref(),
        component: t.component.as_ref(),
        read: &t.read,
        tools: &t.tools,
        env: t.env.as_ref(),
        memory: t.memory.as_ref(),
        pids: t.pids.as_ref(),
        output: t.output.as_ref(),
    };
    let backing = backing(&keys, workspace, all_writes, here, diags);
    let is_component = t.component.is_some();
    match (&t.port, is_component) {
        (None, false) => diags.push(
            Diagnostic::new(Code::CR021, format!("service `{id}` has no `port`"))
                .at(here(at_table.clone()))
                .hint("write the port the program listens on, e.g. `port = 8080`"),
        ),
        (Some(port), true) => diags.push(
            Diagnostic::new(Code::CR021, format!("service `{id}` is a component, which listens on no port"))
                .at(here(port.span()))
                .hint("remove `port`: the runner calls a component's `wasi:http` handler directly"),
        ),
        _ => {}
    }
    let mut twins: Vec<Twin> = Vec::new();
    for raw in &t.twins {
        let name = raw.get_ref();
        let at = here(raw.span());
        match declared_twins.get(name) {
            None => {
                let names = declared_twins.keys().map(String::as_str);
                let hint = match crate::diag::suggest(name, names.clone()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => "declare it: `[twin.NAME]` with `origin`, `run`, `port` and `url_env`".into(),
                };
                diags.push(
                    Diagnostic::new(Code::CR021, format!("service `{id}`: twin `{name}` is not a [twin.*] table"))
                        .at(at)
                        .hint(hint),
                );
            }
            Some(None) => {}
            Some(Some(twin)) => {
                let clash = (Some(twin.server.port) == t.port.as_ref().map(|p| *p.get_ref()))
                    .then(|| "the service's own port".to_string())
                    .or_else(|| {
                        twins
                            .iter()
                            .find(|o| o.server.port == twin.server.port)
                            .map(|o| format!("twin `{}`'s port", o.id))
                    });
                if let Some(clash) = clash {
                    diags.push(
                        Diagnostic::new(Code::CR021, format!("service `{id}`: twin `{name}` listens on port {}, {clash}", twin.server.port))
                            .at(at)
                            .hint("the service reaches each twin on its own loopback at the twin's `port`: give each a port of its own"),
                    );
                } else if twins.iter().any(|o| o.id == twin.id) {
                    diags.push(
                        Diagnostic::new(Code::CR021, format!("service `{id}`: twin `{name}` is named twice"))
                            .at(at)
                            .hint("name each twin once"),
                    );
                } else {
                    twins.push(twin.clone());
                }
            }
        }
    }
    let mut service = server_of(id, t.port.as_ref(), t.ready.as_ref(), backing, here, diags)?;
    if diags.0.len() > errors_before {
        return None;
    }
    if let Some(native) = service.grant.native_mut() {
        for twin in &twins {
            native.env.insert(twin.url_env.clone(), format!("http://127.0.0.1:{}", twin.server.port));
        }
    }
    service.restart = t.restart.as_ref().map_or_else(RestartPolicy::default, |r| *r.get_ref());
    service.twins = twins;
    Some(service)
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
        if !mount.exists && !mounts::produced_upstream(&mount.rel, upstream_writes) {
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

/// Every workspace path a service and its twins touch, with a word for
/// messages.
pub fn paths(service: &Service) -> Vec<(String, &Mount)> {
    let own = service.grant.mounts.iter().map(|m| (format!("service `{}` read `{}`", service.id, m.rel), m));
    let component = service.component.iter().map(|m| (format!("service `{}` component `{}`", service.id, m.rel), m));
    let twins = service.twins.iter().flat_map(|t| {
        let reads = t.server.grant.mounts.iter().map(move |m| (format!("twin `{}` read `{}`", t.id, m.rel), m));
        reads.chain(t.server.component.iter().map(move |m| (format!("twin `{}` component `{}`", t.id, m.rel), m)))
    });
    own.chain(component).chain(twins).collect()
}
