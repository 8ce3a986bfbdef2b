//! `[plugins]` and `[registries]`: every plugin turned into an inspected,
//! hashed component file before any step is planned.
//!
//! A path is read where it is. An `oci` reference is fetched into the
//! private cache first ([`crate::oci::fetch`], which checks every digest),
//! with the credentials `[registries]` names (a `[secrets]` entry) or
//! Docker's configuration; from then on it is a file like any other, and
//! its [`PluginInfo::origin`] says where it came from.

use std::collections::BTreeMap;
use std::path::Path;

use super::secrets::SecretSpec;
use crate::diag::{Code, Diagnostic, Diagnostics, Location, SourceMap};
use crate::manifest::{Manifest, PluginSource};
use crate::oci::{self, FetchError, Reference, Store};
use crate::plugin::{self, PluginInfo};

/// How a plan gets plugins shared through registries.
#[derive(Debug, Clone, Default)]
pub struct Fetching {
    /// `cleanroom lock`, `plugin pull`: ask the registry what tags name now.
    pub refresh: bool,
    /// `run --locked`: the lock's pins, by plugin name.
    pub locked: Option<BTreeMap<String, oci::Locked>>,
}

impl Fetching {
    fn mode(&self, name: &str) -> oci::Mode {
        match self.locked.as_ref().and_then(|locked| locked.get(name)) {
            Some(pin) => oci::Mode::Locked(pin.clone()),
            None if self.refresh => oci::Mode::Refresh,
            None => oci::Mode::Cached,
        }
    }
}

/// Inspects every `[plugins]` entry; a diagnostic per problem.
pub(crate) fn inspect(
    manifest: &Manifest,
    base_dir: &Path,
    source: &SourceMap,
    secrets: &BTreeMap<String, SecretSpec>,
    fetching: &Fetching,
    diags: &mut Diagnostics,
) -> BTreeMap<String, PluginInfo> {
    let registries = registries(manifest, source, secrets, diags);
    let credentials = |registry: &str| -> Result<Option<oci::Credentials>, String> {
        match registries.get(registry) {
            Some((username, name, spec)) => spec
                .read(name)
                .map(|password| Some(oci::Credentials::new(username.clone(), password)))
                .map_err(|d| d.message),
            None => oci::docker_credentials(registry),
        }
    };
    let mut store = None;
    let mut plugins = BTreeMap::new();
    for (name, entry) in &manifest.plugins {
        let at = source.locate(entry.span().start);
        let name = &name.get_ref().0;
        let info = match entry.get_ref() {
            PluginSource::Oci(o) => {
                let reference = match Reference::parse(&o.oci) {
                    Ok(reference) => reference,
                    Err(e) => {
                        diags.push(Diagnostic::new(Code::CR038, format!("plugin `{name}`: {e}")).at(at).hint(
                            "write `oci = \"host[:port]/repository:tag\"`, optionally with `@sha256:<manifest digest>`",
                        ));
                        continue;
                    }
                };
                let store = match store.get_or_insert_with(Store::default_store) {
                    Ok(store) => store,
                    Err(e) => {
                        diags.push(Diagnostic::new(Code::CR038, format!("plugin `{name}`: {e}")).at(at));
                        continue;
                    }
                };
                let pin = entry.get_ref().sha256();
                match oci::fetch_inspected(store, &reference, pin, &fetching.mode(name), &credentials) {
                    Ok(info) => info,
                    Err(e) => {
                        diags.push(fetch_diagnostic(name, &reference, &e).at(at));
                        continue;
                    }
                }
            }
            other => match plugin::inspect(&base_dir.join(other.path().unwrap_or_default())) {
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
            },
        };
        if let Some(pin) = entry.get_ref().sha256() {
            let pin = pin.trim().to_ascii_lowercase();
            if pin != info.sha256 {
                diags.push(
                    Diagnostic::new(
                        Code::CR013,
                        format!(
                            "plugin `{name}` does not match its pin: sha256 is {}, the pipeline expects {pin}",
                            info.sha256
                        ),
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
                .hint("plugins may import only WASI 0.2 and `cleanroom:plugin` interfaces (`wasi:http` needs `allow_hosts` on the step)"),
            );
        }
        plugins.insert(name.clone(), info);
    }
    plugins
}

/// The diagnostic for a refused fetch: a pin (`CR013`), lock drift
/// (`CR025`) or the registry (`CR038`).
fn fetch_diagnostic(name: &str, reference: &Reference, e: &FetchError) -> Diagnostic {
    let message = format!("plugin `{name}`: {e}");
    match e {
        FetchError::Pin(_) => Diagnostic::new(Code::CR013, message)
            .hint("if the published component is trusted, update `sha256`; otherwise pin the reference by digest"),
        FetchError::Drift(_) => Diagnostic::new(Code::CR025, message)
            .hint("if the change is trusted, run `cleanroom lock` on this pipeline and commit the lock file"),
        FetchError::Registry(_) => Diagnostic::new(Code::CR038, message).hint(format!(
            "check that the registry is up and `{reference}` exists (`cleanroom plugin inspect {reference}`); once pulled, a plugin needs no network"
        )),
    }
}

/// `[registries]`: registry -> (username, secret name, where the secret is).
fn registries(
    manifest: &Manifest,
    source: &SourceMap,
    secrets: &BTreeMap<String, SecretSpec>,
    diags: &mut Diagnostics,
) -> BTreeMap<String, (String, String, SecretSpec)> {
    let mut out = BTreeMap::new();
    for (registry, table) in &manifest.registries {
        let at: Location = source.locate(registry.span().start);
        let registry = registry.get_ref();
        if Reference::parse(&format!("{registry}/x:x")).map_or(true, |r| r.registry != *registry) {
            diags.push(
                Diagnostic::new(Code::CR038, format!("[registries.\"{registry}\"] does not name a registry host"))
                    .at(at)
                    .hint("write the registry as `host` or `host:port`, e.g. [registries.\"ghcr.io\"]"),
            );
            continue;
        }
        let secret = table.get_ref().password_secret.get_ref();
        match secrets.get(secret) {
            Some(spec) => {
                out.insert(registry.clone(), (table.get_ref().username.clone(), secret.clone(), spec.clone()));
            }
            None => diags.push(
                Diagnostic::new(
                    Code::CR038,
                    format!("[registries.\"{registry}\"]: `password_secret = \"{secret}\"` names no [secrets] entry"),
                )
                .at(source.locate(table.get_ref().password_secret.span().start))
                .hint(format!("declare it: [secrets] {secret} = {{ env = \"VARIABLE\" }}")),
            ),
        }
    }
    out
}
