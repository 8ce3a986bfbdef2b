//! The Wasm OCI artifact layout (CNCF TAG Runtime, as `wkg`, Spin and
//! wasmCloud write it): an OCI image manifest whose config has media type
//! `application/vnd.wasm.config.v0+json` and whose one layer is the
//! component, `application/wasm`. Building one for `plugin push` and
//! checking one a registry returned, before any of its bytes are trusted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::plugin::{PluginInfo, World};

/// The manifest's media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The config's media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The component layer's media type.
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";

/// Annotation keys `plugin push` writes and `plugin inspect` shows.
pub mod keys {
    /// The world the component implements (`check`, `stage`, `evaluator`, `command`).
    pub const WORLD: &str = "dev.cleanroom.world";
    /// The `cleanroom:plugin` contract version it imports (`0.1.0`).
    pub const CONTRACT: &str = "dev.cleanroom.contract";
    /// The Cleanroom plugin SDK version it was built with.
    pub const SDK: &str = "dev.cleanroom.sdk";
    /// What it does, for a reviewer.
    pub const DESCRIPTION: &str = "org.opencontainers.image.description";
    /// Where its source is (a URL).
    pub const SOURCE: &str = "org.opencontainers.image.source";
    /// The layer's file name, so other tools can name the file.
    pub const TITLE: &str = "org.opencontainers.image.title";
}

/// The largest manifest or config accepted (real ones are a few KiB).
pub const MAX_METADATA: usize = 4 << 20;

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", crate::plugin::hex(&Sha256::digest(bytes)))
}

/// The hex part of a `sha256:` digest (as `sha256 = "..."` pins write it).
pub fn hex_part(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the bytes are.
    pub media_type: String,
    /// `sha256:<hex>` of the bytes.
    pub digest: String,
    /// Their length.
    pub size: u64,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image manifest (the fields this layout uses; others are ignored
/// when reading, so a manifest with extra fields from another tool reads).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`MANIFEST_MEDIA_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The component, exactly one.
    pub layers: Vec<Descriptor>,
    /// Reviewer-facing metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The config blob's contents (`application/vnd.wasm.config.v0+json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    /// RFC 3339 time of the push.
    pub created: String,
    /// Always `wasm`.
    pub architecture: String,
    /// `wasip2` for components.
    pub os: String,
    /// The layers' digests, in order.
    pub layer_digests: Vec<String>,
    /// The component's top-level imports and exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<ComponentInfo>,
}

/// `component` of [`WasmConfig`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentInfo {
    /// Top-level export names.
    pub exports: Vec<String>,
    /// Top-level import names.
    pub imports: Vec<String>,
}

/// What a reviewer wants to know that the component cannot say itself.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// `--description`.
    pub description: Option<String>,
    /// `--source`.
    pub source: Option<String>,
}

/// A pushable artifact: the config's bytes, the manifest's bytes, their digests.
#[derive(Debug, Clone)]
pub struct Built {
    /// The config blob.
    pub config: Vec<u8>,
    /// The manifest.
    pub manifest: Vec<u8>,
    /// Its digest, which pins the whole artifact.
    pub manifest_digest: String,
}

/// The artifact for a component `info` read from `file_name`. `created`
/// is an RFC 3339 time (`SOURCE_DATE_EPOCH` makes it reproducible).
pub fn build(info: &PluginInfo, file_name: &str, metadata: &Metadata, created: &str) -> Built {
    let component = format!("sha256:{}", info.sha256);
    let config = WasmConfig {
        created: created.to_string(),
        architecture: "wasm".into(),
        os: "wasip2".into(),
        layer_digests: vec![component.clone()],
        component: Some(ComponentInfo { exports: info.exports.clone(), imports: info.imports.clone() }),
    };
    let config = serde_json::to_vec(&config).unwrap_or_default();
    let mut annotations = BTreeMap::new();
    annotations.insert(keys::WORLD.to_string(), world_name(&info.world).to_string());
    if let Some(contract) = &info.contract {
        annotations.insert(keys::CONTRACT.to_string(), contract.clone());
    }
    if let Some(sdk) = &info.sdk {
        annotations.insert(keys::SDK.to_string(), sdk.clone());
    }
    if let Some(description) = &metadata.description {
        annotations.insert(keys::DESCRIPTION.to_string(), description.clone());
    }
    if let Some(source) = &metadata.source {
        annotations.insert(keys::SOURCE.to_string(), source.clone());
    }
    annotations.insert("org.opencontainers.image.created".to_string(), created.to_string());
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.into()),
        config: Descriptor {
            media_type: CONFIG_MEDIA_TYPE.into(),
            digest: digest_of(&config),
            size: config.len() as u64,
            annotations: BTreeMap::new(),
        },
        layers: vec![Descriptor {
            media_type: LAYER_MEDIA_TYPE.into(),
            digest: component,
            size: info.size,
            annotations: BTreeMap::from([(keys::TITLE.to_string(), file_name.to_string())]),
        }],
        annotations,
    };
    let manifest = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    Built { manifest_digest: digest_of(&manifest), config, manifest }
}

/// The world's one-word name, as annotations and `inspect` write it.
pub fn world_name(world: &World) -> &'static str {
    match world {
        World::Check => "check",
        World::Stage => "stage",
        World::Evaluator => "evaluator",
        World::Command => "command",
        World::Unknown(_) => "unknown",
    }
}

/// Reads a manifest a registry returned and checks it is one Wasm
/// component: exactly one `application/wasm` layer of a plausible size,
/// a wasm config, sha256 digests only.
///
/// # Errors
/// What is wrong, in a sentence naming the reference.
pub fn read_manifest(bytes: &[u8], what: &str) -> Result<Manifest, String> {
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| format!("{what}: the registry's manifest is not an OCI image manifest: {e}"))?;
    if manifest.schema_version != 2 {
        return Err(format!("{what}: manifest schemaVersion {} is not 2", manifest.schema_version));
    }
    if let Some(media_type) = &manifest.media_type {
        if media_type != MANIFEST_MEDIA_TYPE {
            return Err(format!(
                "{what} is a `{media_type}`, not an OCI image manifest (an image index or a Docker image is not a plugin)"
            ));
        }
    }
    if manifest.config.media_type != CONFIG_MEDIA_TYPE {
        return Err(format!(
            "{what} is not a Wasm component artifact: its config is `{}`, not `{CONFIG_MEDIA_TYPE}`",
            manifest.config.media_type
        ));
    }
    let [layer] = manifest.layers.as_slice() else {
        return Err(format!("{what} has {} layers; a Wasm component artifact has exactly one", manifest.layers.len()));
    };
    if layer.media_type != LAYER_MEDIA_TYPE {
        return Err(format!("{what}: its layer is `{}`, not `{LAYER_MEDIA_TYPE}`", layer.media_type));
    }
    for descriptor in [&manifest.config, layer] {
        super::reference::parse_digest(&descriptor.digest).map_err(|e| format!("{what}: {e}"))?;
    }
    if layer.size > crate::plugin::MAX_COMPONENT_SIZE {
        return Err(format!(
            "{what}: its component is {} bytes, over the {}-byte limit",
            layer.size,
            crate::plugin::MAX_COMPONENT_SIZE
        ));
    }
    if manifest.config.size > MAX_METADATA as u64 {
        return Err(format!(
            "{what}: its config is {} bytes, over the {MAX_METADATA}-byte limit",
            manifest.config.size
        ));
    }
    Ok(manifest)
}

impl Manifest {
    /// The component's descriptor ([`read_manifest`] checked there is one).
    pub fn component(&self) -> &Descriptor {
        &self.layers[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> PluginInfo {
        PluginInfo {
            path: "x.wasm".into(),
            sha256: "ab".repeat(32),
            size: 10,
            world: World::Check,
            imports: vec!["cleanroom:plugin/host@0.1.0".into()],
            exports: vec!["check".into()],
            contract: Some("0.1.0".into()),
            sdk: Some("0.1.0".into()),
            origin: None,
        }
    }

    #[test]
    fn a_built_artifact_reads_back_with_its_annotations() {
        let meta = Metadata { description: Some("d".into()), source: Some("https://x".into()) };
        let built = build(&info(), "x.wasm", &meta, "2026-11-28T00:00:00Z");
        assert_eq!(built.manifest_digest, digest_of(&built.manifest));
        let manifest = read_manifest(&built.manifest, "x").unwrap();
        assert_eq!(manifest.component().digest, format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(manifest.config.digest, digest_of(&built.config));
        for (key, value) in
            [(keys::WORLD, "check"), (keys::CONTRACT, "0.1.0"), (keys::SDK, "0.1.0"), (keys::SOURCE, "https://x")]
        {
            assert_eq!(manifest.annotations.get(key).map(String::as_str), Some(value), "{key}");
        }
        // The same component and time give the same digest: pushing twice moves nothing.
        assert_eq!(build(&info(), "x.wasm", &meta, "2026-11-28T00:00:00Z").manifest_digest, built.manifest_digest);
    }

    #[test]
    fn manifests_that_are_not_one_wasm_component_are_refused() {
        let built = build(&info(), "x.wasm", &Metadata::default(), "t");
        let good: serde_json::Value = serde_json::from_slice(&built.manifest).unwrap();
        let mutate = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut m = good.clone();
            f(&mut m);
            read_manifest(&serde_json::to_vec(&m).unwrap(), "r")
        };
        assert!(mutate(&|_| {}).is_ok());
        assert!(mutate(&|m| m["layers"] = serde_json::json!([])).is_err());
        assert!(mutate(&|m| {
            let layer = m["layers"][0].clone();
            m["layers"] = serde_json::json!([layer.clone(), layer]);
        })
        .is_err());
        assert!(
            mutate(&|m| m["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip".into()).is_err()
        );
        assert!(mutate(&|m| m["config"]["mediaType"] = "application/vnd.oci.image.config.v1+json".into()).is_err());
        assert!(mutate(&|m| m["layers"][0]["digest"] = "sha512:00".into()).is_err());
        assert!(mutate(&|m| m["layers"][0]["size"] = serde_json::json!(u64::MAX)).is_err());
        assert!(mutate(&|m| m["mediaType"] = "application/vnd.oci.image.index.v1+json".into()).is_err());
        assert!(read_manifest(b"not json", "r").is_err());
    }
}
