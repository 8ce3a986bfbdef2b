//! The network capability, plan half: a plugin's `allow_hosts`,
//! `allow_private` and `secret_headers` become its [`HttpGrant`]
//! (`network = true` for a native program is [`super::command`]'s). The
//! sandbox half is [`crate::sandbox::network`] (and, for native programs,
//! the jail's network namespace).
//!
//! Deny by default: a step without `allow_hosts` gets no `wasi:http`, and a
//! plugin importing it is refused for that step here, before anything runs.

use std::collections::BTreeMap;

use super::grant::{HostRule, HttpGrant, SecretHeader};
use super::secrets::SecretSpec;
use super::Declared;
use crate::diag::{Code, Diagnostic, Diagnostics, Location};
use crate::plugin::PluginInfo;

/// The `wasi:http` grant of step `d` (running plugin `plugin`, when it is a
/// plugin step); `None` for a native program (`allow_hosts` and its kin on
/// one are refused by [`super::keys`]).
pub(crate) fn resolve_step(
    d: &Declared,
    plugin: Option<&PluginInfo>,
    secrets: &BTreeMap<String, SecretSpec>,
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<HttpGrant> {
    let id = d.id.get_ref();
    let table = d.table;
    if table.run.is_some() {
        return None;
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
        if let Some(max) = &table.max_requests {
            diags.push(
                Diagnostic::new(Code::CR009, format!("step `{id}` sets `max_requests` without `allow_hosts`"))
                    .at(here(max.span()))
                    .hint(
                        "a step without `allow_hosts` makes no requests: add `allow_hosts`, or remove `max_requests`",
                    ),
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
        return None;
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
        if !super::secrets::known(&id.0, h.secret.get_ref(), here(h.secret.span()), secrets, diags) {
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
    let max_requests = max_requests(d, here, diags);
    Some(HttpGrant { allow, allow_private, headers, max_requests })
}

/// The step's request budget: `max_requests` on the step, else an integer
/// `max_requests` in its `config` (where the first-party agent and judge
/// document it); the host enforces it either way.
fn max_requests(
    d: &Declared,
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Option<u32> {
    let id = d.id.get_ref();
    let (value, span) = match &d.table.max_requests {
        Some(max) => (i64::from(*max.get_ref()), max.span()),
        None => {
            let config = d.table.config.as_ref()?;
            let toml::Value::Integer(value) = config.get_ref().get("max_requests")? else { return None };
            (*value, config.span())
        }
    };
    match u32::try_from(value) {
        Ok(0) | Err(_) => {
            diags.push(
                Diagnostic::new(Code::CR009, format!("step `{id}` sets `max_requests = {value}`"))
                    .at(here(span))
                    .hint("allow at least one request (the budget counts every request the step makes in one run)"),
            );
            None
        }
        Ok(max) => Some(max),
    }
}

/// What `--dry-run` says of a plugin's `wasi:http` grant.
pub fn describe(grant: &super::Grant) -> Vec<String> {
    let Some(http) = grant.http() else { return Vec::new() };
    let origins: Vec<&str> = http.allow.iter().map(|r| r.written.as_str()).collect();
    let private = if http.allow_private { " (private addresses allowed)" } else { "" };
    let mut lines = vec![format!("http: {}{private}", origins.join(", "))];
    for header in &http.headers {
        lines.push(format!("header: {} from secret {} for {}", header.header, header.secret, header.host));
    }
    if let Some(max) = http.max_requests {
        lines.push(format!("requests: at most {max} per run"));
    }
    lines
}
