//! `[remote]`, the plan half of remote caching and execution: the settings
//! as plain data, checked, and which steps must stay on this machine. The
//! service half (actions, the client, the remote backend, the worker) is
//! [`crate::remote`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Action, Step};
use crate::diag::{Code, Diagnostic, Diagnostics, Location};

/// How a run uses the remote action cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheMode {
    /// Look results up and file fresh ones (trusted clients: CI, workers).
    #[default]
    ReadWrite,
    /// Look results up only (a developer's machine, an untrusted client).
    Read,
    /// Neither.
    Off,
}

impl CacheMode {
    /// `read-write`, `read`, `off`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheMode::ReadWrite => "read-write",
            CacheMode::Read => "read",
            CacheMode::Off => "off",
        }
    }

    /// Parses `read-write`, `read` or `off`.
    ///
    /// # Errors
    /// What the accepted words are.
    pub fn parse(word: &str) -> Result<CacheMode, String> {
        match word {
            "read-write" => Ok(CacheMode::ReadWrite),
            "read" => Ok(CacheMode::Read),
            "off" => Ok(CacheMode::Off),
            other => Err(format!("`{other}` is not a remote cache mode: write \"read-write\", \"read\" or \"off\"")),
        }
    }
}

/// `[remote]` (or `--remote`): which service, and what the run uses it for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteSettings {
    /// `grpc://host:port`, or `grpcs://` for TLS.
    pub endpoint: String,
    /// The service's instance name (`""` for the default one).
    pub instance: String,
    /// How the action cache is used.
    pub cache: CacheMode,
    /// Whether steps run on the service's workers.
    pub execute: bool,
    /// The `[secrets]` entry holding a bearer token, when the service needs one.
    pub token: Option<String>,
    /// The `[secrets]` entry holding the team's sealing key ([`Sealing`]).
    pub seal: Option<String>,
}

/// Checks that `endpoint` is `grpc://host:port` or `grpcs://host:port`.
///
/// # Errors
/// What is wrong with it, in words.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let rest = endpoint
        .strip_prefix("grpc://")
        .or_else(|| endpoint.strip_prefix("grpcs://"))
        .ok_or_else(|| format!("`{endpoint}` is not a grpc:// or grpcs:// address"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| format!("`{endpoint}` names no port"))?;
    if host.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err(format!("`{endpoint}`: give a host and port only"));
    }
    port.parse::<u16>().map_err(|_| format!("`{endpoint}`: `{port}` is not a port"))?;
    Ok(())
}

/// `[remote]` checked: a `grpc://` or `grpcs://` endpoint, a known cache
/// mode, a token naming a `[secrets]` entry.
pub(crate) fn resolve(
    table: &crate::manifest::RemoteTable,
    secrets: &BTreeMap<String, super::secrets::SecretSpec>,
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<RemoteSettings> {
    let endpoint = table.endpoint.get_ref();
    let mut ok = true;
    if let Err(e) = check_endpoint(endpoint) {
        diags.push(
            Diagnostic::new(Code::CR034, format!("[remote] endpoint: {e}"))
                .at(here(table.endpoint.span()))
                .hint("write the service's address as grpc://host:port (grpcs:// for TLS)"),
        );
        ok = false;
    }
    let cache = match &table.cache {
        Some(word) => match CacheMode::parse(word.get_ref()) {
            Ok(mode) => mode,
            Err(e) => {
                diags.push(Diagnostic::new(Code::CR034, format!("[remote] cache: {e}")).at(here(word.span())).hint(
                    "\"read-write\" files results (trusted clients), \"read\" only looks them up, \"off\" neither",
                ));
                ok = false;
                CacheMode::Off
            }
        },
        None => CacheMode::ReadWrite,
    };
    for (key, name) in [("token", &table.token), ("seal", &table.seal)] {
        let Some(name) = name else { continue };
        if !secrets.contains_key(name.get_ref()) {
            diags.push(
                Diagnostic::new(Code::CR034, format!("[remote] {key} `{}` is not a [secrets] entry", name.get_ref()))
                    .at(here(name.span()))
                    .hint(format!("declare it under [secrets], e.g. {0} = {{ env = \"{0}\" }}", name.get_ref())),
            );
            ok = false;
        }
    }
    ok.then(|| RemoteSettings {
        endpoint: endpoint.clone(),
        instance: table.instance.clone(),
        cache,
        execute: table.execute,
        token: table.token.as_ref().map(|t| t.get_ref().clone()),
        seal: table.seal.as_ref().map(|s| s.get_ref().clone()),
    })
}

/// Why `step` must run on this machine, if it must.
pub fn runs_here(step: &Step, workspace: &std::path::Path) -> Option<&'static str> {
    if step.evaluation.as_ref().is_some_and(|e| e.service.is_some()) {
        return Some("it judges a service, which this machine starts and shares");
    }
    let secret_headers = step.grant.http().is_some_and(|h| !h.headers.is_empty());
    if !step.grant.secret_env.is_empty() || secret_headers {
        return Some("it is granted secrets, whose values never leave this machine");
    }
    if step.grant.native().is_some_and(|n| !n.cache_dirs.is_empty()) {
        return Some("it keeps build directories (`cache_dirs`) on this machine");
    }
    let mounted = |path: &std::path::Path| step.inputs().iter().any(|m| path.starts_with(&m.host));
    let mut programs: Vec<&std::path::PathBuf> = step.grant.tools().iter().chain(step.judged_tools()).collect();
    if let Action::Command { program, .. } = &step.action {
        programs.push(program);
    }
    if programs.iter().any(|p| p.starts_with(workspace) && !mounted(p)) {
        return Some("it runs a program of the workspace that is not among its mounts");
    }
    None
}
