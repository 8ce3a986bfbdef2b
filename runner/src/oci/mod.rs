//! Sharing plugins through OCI registries, in the Wasm OCI artifact layout
//! that `wkg`, Spin and wasmCloud use ([`artifact`]).
//!
//! A `[plugins]` entry `{ oci = "REF", sha256 = "..." }` is turned into a
//! file in the private cache ([`store`]) by [`fetch`] before the plan
//! inspects it, so everything after (world checks, pins, the lock, the
//! compile cache, the barrier) sees a plugin like any other. What [`fetch`]
//! guarantees:
//!
//! - **Digests or nothing.** A manifest asked for by digest must hash to
//!   it; a component must hash to its manifest's layer digest, to the
//!   pipeline's `sha256` pin and to the lock's pin, or it is refused and
//!   never written to the cache. A registry that returns other bytes is an
//!   error, never a silent replacement.
//! - **Offline when it can be.** A reference pinned by digest, a `sha256`
//!   pin, or a tag resolved before, is served from the cache without a
//!   connection. `run --locked` never contacts a registry when the cache
//!   holds the locked digests. Only a tag never seen, `cleanroom lock` and
//!   `cleanroom plugin pull` ask the registry.
//! - **Drift refused.** Under `--locked`, a tag that names another
//!   manifest than the lock pins (as the registry says, when asked, or as
//!   the cache last saw it) is refused with both digests and the command
//!   that accepts the change.
//! - **Credentials stay in this module** ([`auth`]), scrubbed from every
//!   error ([`client`]).

pub mod artifact;
pub mod auth;
pub mod client;
pub mod reference;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hyper::body::Bytes;

pub use auth::Credentials;
pub use reference::Reference;
pub use store::Store;

use crate::plugin::{Origin, PluginInfo};

/// How [`fetch`] may use the registry.
#[derive(Debug, Clone)]
pub enum Mode {
    /// A run: the cache first; the registry only for what it lacks.
    Cached,
    /// `cleanroom lock` and `plugin pull`: tags are asked of the registry
    /// again (a digest never changes, so those still come from the cache).
    Refresh,
    /// `run --locked`: as [`Mode::Cached`], but every digest must be the
    /// lock's, and a tag that has moved is refused.
    Locked(Locked),
}

/// What `cleanroom.lock` pins for one OCI plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    /// The reference as the pipeline wrote it when locked.
    pub reference: String,
    /// The manifest's digest.
    pub manifest: String,
    /// The component's digest (`sha256:<hex>`).
    pub component: String,
    /// The command that accepts a change, for the refusal's hint.
    pub relock: String,
}

/// Why [`fetch`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The pipeline's `sha256` pin does not match what the reference names.
    Pin(String),
    /// `--locked`: the reference, the tag or a digest differs from the lock.
    Drift(String),
    /// The registry cannot be reached, refused, or sent bytes that are not
    /// what they should be; or the cache cannot be written.
    Registry(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Pin(m) | FetchError::Drift(m) | FetchError::Registry(m) => f.write_str(m),
        }
    }
}

/// A component in the cache, and where it came from.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The component file, in the store.
    pub path: PathBuf,
    /// Reference, manifest digest and annotations.
    pub origin: Origin,
}

/// Finds credentials for a registry (`host[:port]`) when one is contacted.
pub type CredentialSource<'a> = &'a dyn Fn(&str) -> Result<Option<Credentials>, String>;

/// The default [`CredentialSource`]: Docker's configuration.
pub fn docker_credentials(registry: &str) -> Result<Option<Credentials>, String> {
    auth::from_docker_config(registry)
}

/// Makes the component `reference` names available in `store`, checked
/// against every digest known for it (`pin`: the pipeline's `sha256`, hex).
///
/// # Errors
/// [`FetchError`], each with a sentence that names both digests when two differ.
pub fn fetch(
    store: &Store,
    reference: &Reference,
    pin: Option<&str>,
    mode: &Mode,
    credentials: CredentialSource<'_>,
) -> Result<Fetched, FetchError> {
    let pin = pin.map(|hex| format!("sha256:{}", hex.trim().to_ascii_lowercase()));
    if let Some(Err(e)) = pin.as_deref().map(reference::parse_digest) {
        return Err(FetchError::Pin(format!("`sha256` is not a component digest: {e}")));
    }
    let cached = |manifest: &str| -> Option<Fetched> {
        let bytes = store.manifest(manifest)?;
        let parsed = artifact::read_manifest(&bytes, &reference.to_string()).ok()?;
        let component = parsed.component().digest.clone();
        if pin.as_ref().is_some_and(|p| *p != component) || !store.has_component(&component) {
            return None;
        }
        Some(fetched(store, reference, Some(manifest), &component, parsed.annotations))
    };
    match mode {
        Mode::Locked(lock) => {
            if lock.reference != reference.to_string() {
                return Err(FetchError::Drift(format!(
                    "the pipeline names `{reference}`, but the lock pins `{}`",
                    lock.reference
                )));
            }
            if let Some(pin) = pin.as_ref().filter(|p| **p != lock.component) {
                return Err(FetchError::Drift(format!(
                    "the pipeline pins component {pin}, but the lock pins {}",
                    lock.component
                )));
            }
            if reference.digest.is_none() {
                if let Some(seen) = store.tag(reference).filter(|t| t.manifest != lock.manifest) {
                    return Err(moved(reference, &seen.manifest, lock, "when it was last pulled"));
                }
            }
            if let Some(found) = cached(&lock.manifest).filter(|f| f.origin.component == lock.component) {
                return Ok(found);
            }
            let found = online(store, reference, pin.as_deref(), Some(lock), credentials)?;
            if found.origin.component != lock.component {
                return Err(FetchError::Drift(format!(
                    "`{reference}`: the registry's component is {}, but the lock pins {}",
                    found.origin.component, lock.component
                )));
            }
            Ok(found)
        }
        Mode::Cached | Mode::Refresh => {
            if let Some(digest) = &reference.digest {
                if let Some(found) = cached(digest) {
                    return Ok(found);
                }
            } else if matches!(mode, Mode::Cached) {
                if let Some(found) = store.tag(reference).and_then(|t| cached(&t.manifest)) {
                    return Ok(found);
                }
                if let Some(pin) = &pin {
                    if store.has_component(pin) {
                        return Ok(fetched(store, reference, None, pin, BTreeMap::new()));
                    }
                }
            }
            online(store, reference, pin.as_deref(), None, credentials)
        }
    }
}

fn moved(reference: &Reference, now: &str, lock: &Locked, when: &str) -> FetchError {
    FetchError::Drift(format!(
        "tag `{reference}` moved: it names manifest {now} {when}, but the lock pins {}; if the new plugin is trusted, {}",
        lock.manifest, lock.relock
    ))
}

fn fetched(
    store: &Store,
    reference: &Reference,
    manifest: Option<&str>,
    component: &str,
    annotations: BTreeMap<String, String>,
) -> Fetched {
    Fetched {
        path: store.component_path(component),
        origin: Origin {
            reference: reference.to_string(),
            manifest: manifest.map(str::to_string),
            component: component.to_string(),
            annotations,
        },
    }
}

/// Asks the registry: the manifest (by digest if the reference has one,
/// else by tag), then the component unless the cache has it. Under a lock,
/// a manifest other than the locked one is refused before anything is
/// downloaded or remembered.
fn online(
    store: &Store,
    reference: &Reference,
    pin: Option<&str>,
    lock: Option<&Locked>,
    credentials: CredentialSource<'_>,
) -> Result<Fetched, FetchError> {
    let registry_error = FetchError::Registry;
    let credentials = credentials(&reference.registry).map_err(registry_error)?;
    block_on::<_, FetchError>(async {
        let mut registry = client::Registry::new(reference, credentials, false);
        let selector = reference.digest.clone().unwrap_or_else(|| reference.tag_or_digest().to_string());
        let bytes = registry.manifest(&selector).await.map_err(registry_error)?;
        let digest = artifact::digest_of(&bytes);
        if let Some(wanted) = &reference.digest {
            if digest != *wanted {
                return Err(FetchError::Registry(format!(
                    "registry `{}` returned other bytes for manifest {wanted} (they hash to {digest}); refused",
                    reference.registry
                )));
            }
        }
        if let Some(lock) = lock.filter(|l| l.manifest != digest) {
            return Err(moved(reference, &digest, lock, "now, at the registry"));
        }
        let manifest = artifact::read_manifest(&bytes, &reference.to_string()).map_err(registry_error)?;
        let layer = manifest.component().clone();
        if let Some(pin) = pin.filter(|p| *p != layer.digest) {
            return Err(FetchError::Pin(format!(
                "`{reference}` names component {}, but the pipeline pins {pin}",
                layer.digest
            )));
        }
        if !store.has_component(&layer.digest) {
            let temporary = store.temporary();
            let got = registry.blob_to_file(&layer.digest, layer.size, &temporary).await;
            let verified = match got {
                Ok(got) if got == layer.digest => Ok(()),
                Ok(got) => Err(FetchError::Registry(format!(
                    "registry `{}` returned other bytes for component {} of `{reference}` (they hash to {got}); refused, nothing cached",
                    reference.registry, layer.digest
                ))),
                Err(e) => Err(FetchError::Registry(e)),
            };
            if let Err(e) = verified {
                let _ = fs_err::remove_file(&temporary);
                return Err(e);
            }
            store.commit_component(&temporary, &layer.digest).map_err(registry_error)?;
        }
        store.put_manifest(&bytes).map_err(registry_error)?;
        if reference.digest.is_none() {
            store.put_tag(reference, &digest).map_err(registry_error)?;
        }
        Ok(fetched(store, reference, Some(&digest), &layer.digest, manifest.annotations))
    })?
}

/// [`fetch`], then the component inspected ([`crate::plugin::inspect`],
/// which reads and hashes it once): a cached component whose bytes no
/// longer hash to its digest is discarded and fetched once more, so a
/// damaged entry is never used, and no component is hashed twice.
///
/// # Errors
/// [`FetchError`]; a component that is not one Cleanroom can inspect is
/// [`FetchError::Registry`], naming the reference.
pub fn fetch_inspected(
    store: &Store,
    reference: &Reference,
    pin: Option<&str>,
    mode: &Mode,
    credentials: CredentialSource<'_>,
) -> Result<PluginInfo, FetchError> {
    for _ in 0..2 {
        let fetched = fetch(store, reference, pin, mode, credentials)?;
        let info = crate::plugin::inspect(&fetched.path)
            .map_err(|e| FetchError::Registry(format!("`{reference}` cannot be used: {e}")))?;
        if format!("sha256:{}", info.sha256) == fetched.origin.component {
            return Ok(PluginInfo { origin: Some(fetched.origin), ..info });
        }
        store.discard(&fetched.origin.component);
    }
    Err(FetchError::Registry(format!(
        "the cached component of `{reference}` changed while it was being read; run again"
    )))
}

/// What [`push`] published.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The manifest's digest.
    pub manifest: String,
    /// The component's digest.
    pub component: String,
    /// Blobs the registry already had (not sent again).
    pub reused: usize,
}

/// Publishes the component `file` as `reference` (which needs a tag) in the
/// Wasm OCI layout, with `metadata` and the component's own facts as
/// annotations. `created` is an RFC 3339 time.
///
/// # Errors
/// A sentence: the file is not a component, the reference has no tag, or
/// the registry refused (credentials scrubbed).
pub fn push(
    file: &Path,
    reference: &Reference,
    metadata: &artifact::Metadata,
    created: &str,
    credentials: Option<Credentials>,
) -> Result<Pushed, String> {
    let info = crate::plugin::inspect(file).map_err(|e| e.to_string())?;
    let Some(tag) = reference.tag.clone() else {
        return Err(format!("`{reference}` has no tag to publish under: add `:TAG`, e.g. `:1.0.0`"));
    };
    if reference.digest.is_some() {
        return Err(format!("`{reference}` has a digest; publish to a tag (the digest follows from the contents)"));
    }
    let bytes = Bytes::from(fs_err::read(file).map_err(|e| e.to_string())?);
    if artifact::digest_of(&bytes) != format!("sha256:{}", info.sha256) {
        return Err(format!("`{}` changed while it was being read; try again", file.display()));
    }
    let file_name = file.file_name().map_or_else(|| "plugin.wasm".to_string(), |n| n.to_string_lossy().into_owned());
    let built = artifact::build(&info, &file_name, metadata, created);
    let component = format!("sha256:{}", info.sha256);
    block_on::<_, String>(async {
        let mut registry = client::Registry::new(reference, credentials, true);
        let mut reused = 0;
        for (digest, blob) in
            [(artifact::digest_of(&built.config), Bytes::from(built.config.clone())), (component.clone(), bytes)]
        {
            if registry.has_blob(&digest).await? {
                reused += 1;
            } else {
                registry.put_blob(&digest, blob).await?;
            }
        }
        let reported = registry.put_manifest(&tag, Bytes::from(built.manifest.clone())).await?;
        if let Some(reported) = reported.filter(|r| *r != built.manifest_digest) {
            return Err(format!(
                "registry `{}` stored the manifest as {reported}, not {}; it rewrote it",
                reference.registry, built.manifest_digest
            ));
        }
        Ok(Pushed { manifest: built.manifest_digest.clone(), component: component.clone(), reused })
    })?
}

/// Runs `future` on a runtime of its own (the plan and the CLI are not async).
fn block_on<T, E: From<String>>(future: impl std::future::Future<Output = T>) -> Result<T, E> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| E::from(format!("cannot start the registry client: {e}")))?;
    Ok(runtime.block_on(future))
}

impl From<String> for FetchError {
    fn from(message: String) -> FetchError {
        FetchError::Registry(message)
    }
}
