//! Plugin files: reading, hashing and inspecting a component before any code
//! is compiled or run.
//!
//! [`inspect`] reads a `.wasm`, computes its sha256 and reads its top-level
//! imports and exports with `wasmparser` to tell which Cleanroom world it
//! implements ([`World`]) and whether it imports anything the host does not
//! provide. Compiling and instantiating is the sandbox's job.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmparser::{ComponentTypeRef, Encoding, Parser, Payload};

/// The contract a component implements, read from its exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// `cleanroom:plugin/check`: exports `check`.
    Check,
    /// `cleanroom:plugin/stage`: exports `run`.
    Stage,
    /// `cleanroom:plugin/evaluator`: exports `scenarios` and `evaluate`.
    Evaluator,
    /// A `wasi:cli` command (exports `wasi:cli/run`): a program, not a plugin.
    Command,
    /// None of the above; holds the export names for the error message.
    Unknown(Vec<String>),
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            World::Check => f.write_str("the `check` world"),
            World::Stage => f.write_str("the `stage` world"),
            World::Evaluator => f.write_str("the `evaluator` world"),
            World::Command => f.write_str("the `wasi:cli/command` world (it is a program, not a plugin)"),
            World::Unknown(exports) if exports.is_empty() => f.write_str("no world: it exports nothing"),
            World::Unknown(exports) => write!(f, "no Cleanroom world (its exports: {})", exports.join(", ")),
        }
    }
}

/// What [`inspect`] learnt about a plugin file.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PluginInfo {
    /// The file, as resolved against the pipeline's directory.
    pub path: PathBuf,
    /// sha256 of the file, lowercase hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// The world its exports match.
    pub world: World,
    /// Top-level import names, e.g. `wasi:filesystem/types@0.2.6`.
    pub imports: Vec<String>,
    /// Top-level export names, e.g. `check`.
    pub exports: Vec<String>,
    /// The `cleanroom:plugin` contract version it was built against
    /// (`0.1.0`), read from its imports; `None` for programs.
    pub contract: Option<String>,
    /// The Cleanroom plugin SDK version it was built with, read from the
    /// [`SDK_SECTION`] custom section the Rust SDK embeds; `None` for
    /// plugins built without it (Python, JavaScript, hand-written WIT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk: Option<String>,
    /// Where it was pulled from, for a plugin shared through a registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// The custom section in which the Rust SDK records its version.
pub const SDK_SECTION: &str = "cleanroom-sdk";

/// Where a plugin pulled from an OCI registry came from ([`crate::oci`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Origin {
    /// The reference as the pipeline wrote it.
    pub reference: String,
    /// The manifest's digest, when known (a component found in the cache
    /// by its own pin alone has none).
    pub manifest: Option<String>,
    /// The component's digest, `sha256:<hex>`.
    pub component: String,
    /// The manifest's annotations: world, contract, SDK, description, source.
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Why a plugin file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The file cannot be read.
    #[error("cannot read plugin file `{path}`: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// A core module, not a component.
    #[error("`{0}` is a core WebAssembly module, not a component")]
    CoreModule(PathBuf),
    /// Not WebAssembly at all, or truncated.
    #[error("`{path}` is not a WebAssembly component: {reason}")]
    NotWasm { path: PathBuf, reason: String },
}

/// The largest component the runner will read (a guard against `/dev/zero`
/// and the like; real components are a few MiB).
pub const MAX_COMPONENT_SIZE: u64 = 512 << 20;

/// Interfaces a plugin may import: WASI 0.2 and our own contract. Anything
/// else would fail at link time with a less helpful message.
const ALLOWED_IMPORT_PREFIXES: &[&str] = &["wasi:", "cleanroom:plugin/"];

/// Reads, hashes and inspects the component at `path`.
///
/// # Errors
/// [`InspectError`] when the file is unreadable, a core module, or not
/// WebAssembly.
pub fn inspect(path: &Path) -> Result<PluginInfo, InspectError> {
    let read_error = |source| InspectError::Read { path: path.into(), source };
    let meta = fs_err::metadata(path).map_err(read_error)?;
    if !meta.is_file() {
        return Err(InspectError::NotWasm { path: path.into(), reason: "it is not a regular file".into() });
    }
    if meta.len() > MAX_COMPONENT_SIZE {
        let reason = format!("it is {} bytes, over the {MAX_COMPONENT_SIZE}-byte limit for a component", meta.len());
        return Err(InspectError::NotWasm { path: path.into(), reason });
    }
    let bytes = fs_err::read(path).map_err(read_error)?;
    let sha256 = hex(&Sha256::digest(&bytes));
    let not_wasm = |reason: String| {
        // wasmparser's magic-number error spans lines (two byte arrays).
        let reason = if reason.starts_with("magic header not detected") {
            "it does not start with the WebAssembly magic number `\\0asm`".to_string()
        } else {
            reason.lines().next().unwrap_or_default().to_string()
        };
        InspectError::NotWasm { path: path.into(), reason }
    };

    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut contract = None;
    let mut sdk = None;
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(&bytes) {
        match payload.map_err(|e| not_wasm(e.to_string()))? {
            Payload::Version { encoding: Encoding::Module, .. } if depth == 0 => {
                return Err(InspectError::CoreModule(path.into()))
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(|e| not_wasm(e.to_string()))?;
                    if let Some(version) =
                        import.name.name.strip_prefix("cleanroom:plugin/").and_then(|n| n.split_once('@'))
                    {
                        contract.get_or_insert_with(|| version.1.to_string());
                    }
                    // Type imports (`use types.{finding}`) come with their
                    // interface; only instances and functions need providing.
                    if !matches!(import.ty, ComponentTypeRef::Type(_)) {
                        imports.push(import.name.name.to_string());
                    }
                }
            }
            Payload::CustomSection(section) if section.name() == SDK_SECTION => {
                let version = String::from_utf8_lossy(section.data());
                let version: String = version.chars().filter(|c| !c.is_control()).take(64).collect();
                sdk.get_or_insert(version);
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    exports.push(export.map_err(|e| not_wasm(e.to_string()))?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    if bytes.is_empty() {
        return Err(not_wasm("the file is empty".into()));
    }
    let world = world_of(&exports);
    Ok(PluginInfo {
        path: path.into(),
        sha256,
        size: bytes.len() as u64,
        world,
        imports,
        exports,
        contract,
        sdk,
        origin: None,
    })
}

impl PluginInfo {
    /// Imports no step can be granted: anything outside WASI and
    /// `cleanroom:plugin`. (`wasi:http` is granted per step, by
    /// `allow_hosts`; see `plan::network`.)
    pub fn foreign_imports(&self) -> Vec<&str> {
        self.imports
            .iter()
            .map(String::as_str)
            .filter(|name| !ALLOWED_IMPORT_PREFIXES.iter().any(|p| name.starts_with(p)))
            .collect()
    }

    /// Whether it imports any `wasi:http` interface (and so must be linked
    /// with outgoing HTTP, for steps that grant it).
    pub fn imports_http(&self) -> bool {
        self.imports.iter().any(|name| name.starts_with("wasi:http/"))
    }
}

fn world_of(exports: &[String]) -> World {
    let has = |name: &str| exports.iter().any(|e| e == name);
    if has("check") {
        World::Check
    } else if has("scenarios") && has("evaluate") {
        World::Evaluator
    } else if has("run") {
        World::Stage
    } else if exports.iter().any(|e| e.starts_with("wasi:cli/run@")) {
        World::Command
    } else {
        World::Unknown(exports.to_vec())
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_is_read_from_export_names() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(world_of(&names(&["check"])), World::Check);
        assert_eq!(world_of(&names(&["run"])), World::Stage);
        assert_eq!(world_of(&names(&["scenarios", "evaluate"])), World::Evaluator);
        assert_eq!(world_of(&names(&["wasi:cli/run@0.2.6"])), World::Command);
        assert_eq!(world_of(&names(&["hello"])), World::Unknown(names(&["hello"])));
    }

    #[test]
    fn garbage_and_empty_files_are_not_wasm() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("g.wasm");
        fs_err::write(&garbage, b"not wasm").unwrap();
        assert!(matches!(inspect(&garbage), Err(InspectError::NotWasm { .. })));
        let empty = dir.path().join("e.wasm");
        fs_err::write(&empty, b"").unwrap();
        assert!(matches!(inspect(&empty), Err(InspectError::NotWasm { .. })));
    }

    #[test]
    fn core_module_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("m.wasm");
        fs_err::write(&module, b"\0asm\x01\0\0\0").unwrap();
        assert!(matches!(inspect(&module), Err(InspectError::CoreModule(_))));
    }
}
