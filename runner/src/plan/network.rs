//! Resolving a step's network and secret keys: `allow_hosts`,
//! `allow_private`, `secrets`, `secret_headers`, and the `[secrets]` table.
//!
//! Deny by default: a step without `allow_hosts` gets no `wasi:http`, and a
//! plugin importing it is refused for that step here, before anything runs.
//! Secrets are only ever named in the plan ([`SecretSpec`] says where a
//! value comes from); values are read when a run starts
//! ([`crate::secrets`]) and never enter the plan, so nothing that hashes or
//! prints a plan can leak them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::grant::{HostRule, HttpGrant, SecretHeader};
use super::Declared;
use crate::diag::{Code, Diagnostic, Diagnostics, Location};
use crate::manifest::Manifest;
use crate::plugin::PluginInfo;

/// Where a secret's value is read from when a run starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SecretSpec {
    /// An environment variable of the runner.
    Env(String),
    /// A file's contents, without a trailing newline.
    File(PathBuf),
}

/// Checks `[secrets]`: each entry names exactly one source.
pub(crate) fn resolve_secrets(
    manifest: &Manifest,
    base_dir: &Path,
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> BTreeMap<String, SecretSpec> {
    let mut secrets = BTreeMap::new();
    for (name, source) in &manifest.secrets {
        let at = here(name.span());
        let spec = match (&source.get_ref().env, &source.get_ref().file) {
            (Some(env), None) if crate::plan::command::check_env_name(env).is_ok() => SecretSpec::Env(env.clone()),
            (None, Some(file)) => SecretSpec::File(match (file.strip_prefix("~/"), std::env::var_os("HOME")) {
                (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
                _ => base_dir.join(file),
            }),
            (Some(env), None) => {
                diags.push(
                    Diagnostic::new(
                        Code::CR027,
                        format!("secret `{}`: `{env}` is not an environment variable name", name.get_ref()),
                    )
                    .at(at)
                    .hint("use letters, digits and `_`"),
                );
                continue;
            }
            _ => {
                diags.push(
                    Diagnostic::new(
                        Code::CR027,
                        format!("secret `{}` must name exactly one of `env` and `file`", name.get_ref()),
                    )
                    .at(at)
                    .hint("write `{ env = \"VARIABLE\" }` or `{ file = \"path\" }`"),
                );
                continue;
            }
        };
        secrets.insert(name.get_ref().0.clone(), spec);
    }
    secrets
}

/// The `wasi:http` grant and secret environment variables of step `d`
/// (running plugin `plugin`, when it is a plugin step).
pub(crate) fn resolve_step(
    d: &Declared,
    plugin: Option<&PluginInfo>,
    secrets: &BTreeMap<String, SecretSpec>,
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> (Option<HttpGrant>, Vec<String>) {
    let id = d.id.get_ref();
    let table = d.table;
    let known = |name: &str, span: std::ops::Range<usize>, diags: &mut Diagnostics| {
        let ok = secrets.contains_key(name);
        if !ok {
            let names: Vec<&str> = secrets.keys().map(String::as_str).collect();
            let hint = match crate::diag::suggest(name, names.iter().copied()) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("declare it: [secrets] {name} = {{ env = \"VARIABLE\" }}"),
            };
            diags.push(
                Diagnostic::new(
                    Code::CR027,
                    format!("step `{id}` uses secret `{name}`, which [secrets] does not define"),
                )
                .at(here(span))
                .hint(hint),
            );
        }
        ok
    };
    let secret_env: Vec<String> =
        table.secrets.iter().filter(|s| known(s.get_ref(), s.span(), diags)).map(|s| s.get_ref().clone()).collect();
    if table.run.is_some() {
        // `allow_hosts` and its kin on a native program are refused by
        // `keys`. A native program gets its granted secrets as environment
        // variables: its jail spec reaches the helper over a pipe, never on
        // a command line other users can read.
        return (None, secret_env);
    }

    let http_imports: Vec<&str> = plugin
        .map(|p| p.imports.iter().map(String::as_str).filter(|i| i.starts_with("wasi:http/")).collect())
        .unwrap_or_default();
    let Some(hosts) = &table.allow_hosts else {
        if let Some(private) = &table.allow_private {
            diags.push(
                Diagnostic::new(Code::CR009, format!("step `{id}` sets `allow_private` without `allow_hosts`"))
                    .at(here(private.span()))
                    .hint("add `allow_hosts`, or remove `allow_private`"),
            );
        }
        if let Some(header) = table.secret_headers.first() {
            diags.push(
                Diagnostic::new(Code::CR009, format!("step `{id}` sets `secret_headers` without `allow_hosts`"))
                    .at(here(header.span()))
                    .hint("headers go with requests: add `allow_hosts`"),
            );
        }
        if !http_imports.is_empty() {
            let name = table.plugin.as_ref().map_or("", |p| p.get_ref().as_str());
            diags.push(
                Diagnostic::new(
                    Code::CR014,
                    format!(
                        "plugin `{name}` imports {}, but step `{id}` has no `allow_hosts`",
                        http_imports.join(", ")
                    ),
                )
                .at(here(d.id.span()))
                .hint("steps get no network by default: grant the origins it may reach, e.g. `allow_hosts = [\"https://api.example.com\"]`"),
            );
        }
        return (None, secret_env);
    };
    let mut allow = Vec::new();
    for host in hosts.get_ref() {
        match HostRule::parse(host.get_ref()) {
            Ok(rule) => allow.push(rule),
            Err(message) => diags.push(
                Diagnostic::new(Code::CR028, format!("step `{id}`: allow_hosts entry {message}"))
                    .at(here(host.span()))
                    .hint("write `scheme://host[:port]`, e.g. `https://api.openai.com` or `http://127.0.0.1:8080`"),
            ),
        }
    }
    if hosts.get_ref().is_empty() {
        diags.push(
            Diagnostic::new(Code::CR028, format!("step `{id}` has an empty `allow_hosts`"))
                .at(here(hosts.span()))
                .hint("list the origins it may reach, or remove `allow_hosts` for no network"),
        );
    }
    let mut headers = Vec::new();
    for header in &table.secret_headers {
        let h = header.get_ref();
        if !known(h.secret.get_ref(), h.secret.span(), diags) {
            continue;
        }
        if !hosts.get_ref().iter().any(|a| a.get_ref() == h.host.get_ref()) {
            diags.push(
                Diagnostic::new(
                    Code::CR028,
                    format!("step `{id}`: secret header for `{}`, which is not in its `allow_hosts`", h.host.get_ref()),
                )
                .at(here(h.host.span()))
                .hint("use one of the `allow_hosts` entries exactly as written there"),
            );
            continue;
        }
        let name = h.header.get_ref();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
            diags.push(
                Diagnostic::new(Code::CR028, format!("step `{id}`: `{name}` is not an HTTP header name"))
                    .at(here(h.header.span()))
                    .hint("e.g. `Authorization` or `x-api-key`"),
            );
            continue;
        }
        headers.push(SecretHeader {
            secret: h.secret.get_ref().clone(),
            host: h.host.get_ref().clone(),
            header: name.to_ascii_lowercase(),
            prefix: h.prefix.clone(),
        });
    }
    let allow_private = table.allow_private.as_ref().is_some_and(|p| *p.get_ref());
    (Some(HttpGrant { allow, allow_private, headers }), secret_env)
}
