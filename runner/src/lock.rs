//! Pinned sharing: `cleanroom.lock`, written by `cleanroom lock` and
//! enforced by `cleanroom run --locked`.
//!
//! The lock file sits beside the pipeline file and pins every plugin of
//! every pipeline in that directory that was locked: pipeline file name,
//! plugin name, path (relative to the lock file) and sha256; for a plugin
//! shared through a registry, its reference and manifest digest instead of
//! a path (`cleanroom lock` asks the registry what each tag names now;
//! [`oci_pins`] hands them to the fetch of a `--locked` run). `--locked`
//! refuses to run (exit 2, nothing started) when the lock is missing, a
//! plugin is not in it, its path or sha256 differs, or the lock pins a
//! plugin the pipeline no longer uses: any drift is a decision someone
//! must make with `cleanroom lock`, never a silent update. A `sha256 = ...`
//! pin inside the pipeline still works on its own; the lock adds pins for
//! pipelines that share plugins by path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diag::{Code, Diagnostic, Diagnostics, Location};
use crate::plan::Plan;

/// The lock file's name.
pub use crate::manifest::LOCK_FILE as FILE_NAME;

/// The format version this runner writes and reads.
const VERSION: u32 = 1;

/// `cleanroom.lock` as data.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFile {
    /// Format version.
    version: u32,
    /// One entry per plugin per pipeline.
    #[serde(default, rename = "plugin")]
    plugins: Vec<Pin>,
}

/// One pinned plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pin {
    /// The pipeline file's name, relative to the lock file.
    pipeline: String,
    /// The `[plugins]` name.
    name: String,
    /// The component file, relative to the lock file when it lies below it
    /// (empty for a plugin from a registry).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    path: String,
    /// The OCI reference, for a plugin from a registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oci: Option<String>,
    /// Its manifest's digest (`sha256:<hex>`), for a plugin from a registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifest: Option<String>,
    /// The component's sha256, lowercase hex.
    sha256: String,
}

/// The lock file that belongs to `plan`.
pub fn path_for(plan: &Plan) -> PathBuf {
    beside(&plan.pipeline_file)
}

/// The lock file beside the pipeline file `pipeline`.
fn beside(pipeline: &Path) -> PathBuf {
    match pipeline.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(FILE_NAME),
        _ => PathBuf::from(FILE_NAME),
    }
}

/// What [`write`] changed.
#[derive(Debug)]
pub struct Written {
    /// The lock file.
    pub path: PathBuf,
    /// Plugins pinned for this pipeline.
    pub pinned: usize,
    /// Pins that are new or differ from before (`name: old -> new`).
    pub changed: Vec<String>,
}

/// Pins every plugin of `plan` in its lock file, keeping other pipelines'
/// pins; the file is replaced atomically.
///
/// # Errors
/// A `CR025` diagnostic when the existing lock cannot be read or the new
/// one cannot be written.
pub fn write(plan: &Plan) -> Result<Written, Diagnostics> {
    let path = path_for(plan);
    let mut lock = if path.exists() { read(&path)? } else { LockFile { version: VERSION, plugins: Vec::new() } };
    let pipeline = pipeline_name(plan);
    let old: Vec<Pin> = lock.plugins.iter().filter(|p| p.pipeline == pipeline).cloned().collect();
    lock.plugins.retain(|p| p.pipeline != pipeline);
    let new = pins(plan, &path);
    let mut changed = Vec::new();
    for pin in &new {
        match old.iter().find(|o| o.name == pin.name) {
            Some(o) if o == pin => {}
            Some(o) => changed.push(format!("{}: {} -> {}", pin.name, short(&o.sha256), short(&pin.sha256))),
            None => changed.push(format!("{}: new, {}", pin.name, short(&pin.sha256))),
        }
    }
    for gone in old.iter().filter(|o| !new.iter().any(|n| n.name == o.name)) {
        changed.push(format!("{}: removed", gone.name));
    }
    let pinned = new.len();
    lock.plugins.extend(new);
    lock.plugins.sort_by(|a, b| (&a.pipeline, &a.name).cmp(&(&b.pipeline, &b.name)));
    lock.version = VERSION;
    let body = toml::to_string(&lock).map_err(|e| lock_error(&path, format!("cannot encode the lock: {e}")))?;
    let text = format!(
        "# Written by `cleanroom lock`: the sha256 of every plugin, per pipeline.\n\
         # `cleanroom run --locked` refuses to run when a plugin differs. Commit this file.\n{body}"
    );
    crate::cache::write_atomic_mode(&path, text.as_bytes(), 0o644)
        .map_err(|e| lock_error(&path, format!("cannot write the lock file: {e}")))?;
    Ok(Written { path, pinned, changed })
}

/// Checks `plan`'s plugins against its lock file.
///
/// # Errors
/// A `CR025` diagnostic per drift: no lock file, a plugin not pinned, a
/// different path or sha256, a pin the pipeline no longer uses.
pub fn verify(plan: &Plan) -> Result<(), Diagnostics> {
    let path = path_for(plan);
    if !path.exists() {
        return Err(Diagnostic::new(Code::CR025, format!("--locked, but there is no `{}`", path.display()))
            .hint(format!("run `cleanroom lock {}` and commit the lock file", plan.pipeline_file.display()))
            .into());
    }
    let lock = read(&path)?;
    let pipeline = pipeline_name(plan);
    let locked: Vec<&Pin> = lock.plugins.iter().filter(|p| p.pipeline == pipeline).collect();
    let mut diags = Diagnostics::default();
    let relock = format!("if the change is trusted, run `cleanroom lock {}`", plan.pipeline_file.display());
    let at = || Location::Path(path.clone());
    for pin in pins(plan, &path) {
        let problem = match locked.iter().find(|p| p.name == pin.name) {
            None => Some(format!("plugin `{}` is not in the lock file", pin.name)),
            Some(p) if p.path != pin.path || p.oci != pin.oci => {
                Some(format!("plugin `{}` is `{}`, but the lock pins `{}`", pin.name, pin.source(), p.source()))
            }
            Some(p) if p.manifest != pin.manifest => Some(format!(
                "plugin `{}` is manifest {}, but the lock pins {}",
                pin.name,
                pin.manifest.as_deref().unwrap_or("-"),
                p.manifest.as_deref().unwrap_or("-")
            )),
            Some(p) if p.sha256 != pin.sha256 => {
                Some(format!("plugin `{}` changed: its sha256 is {}, the lock pins {}", pin.name, pin.sha256, p.sha256))
            }
            Some(_) => None,
        };
        if let Some(problem) = problem {
            diags.push(Diagnostic::new(Code::CR025, problem).at(at()).hint(relock.clone()));
        }
    }
    for stale in locked.iter().filter(|p| !plan.plugins.contains_key(&p.name)) {
        diags.push(
            Diagnostic::new(
                Code::CR025,
                format!("the lock pins plugin `{}`, which the pipeline no longer uses", stale.name),
            )
            .at(at())
            .hint(relock.clone()),
        );
    }
    diags.into_result(())
}

fn read(path: &Path) -> Result<LockFile, Diagnostics> {
    let text = fs_err::read_to_string(path).map_err(|e| lock_error(path, format!("cannot read it: {e}")))?;
    let lock: LockFile = toml::from_str(&text).map_err(|e| {
        let mut d =
            Diagnostic::new(Code::CR025, format!("`{}` is not a valid lock file: {}", path.display(), e.message()));
        if let Some(span) = e.span() {
            d = d.at(crate::diag::SourceMap::new(path, &text).locate(span.start));
        }
        Diagnostics::from(d.hint("delete it and run `cleanroom lock` again"))
    })?;
    if lock.version != VERSION {
        return Err(lock_error(path, format!("lock format version {} is not {VERSION}", lock.version)));
    }
    Ok(lock)
}

fn pins(plan: &Plan, lock_path: &Path) -> Vec<Pin> {
    let base = match lock_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let pipeline = pipeline_name(plan);
    plan.plugins
        .iter()
        .map(|(name, info)| {
            let (path, oci, manifest) = match &info.origin {
                Some(origin) => (String::new(), Some(origin.reference.clone()), origin.manifest.clone()),
                None => (relative_to(&info.path, base), None, None),
            };
            Pin { pipeline: pipeline.clone(), name: name.clone(), path, oci, manifest, sha256: info.sha256.clone() }
        })
        .collect()
}

impl Pin {
    /// Where the plugin comes from, as a person would name it.
    fn source(&self) -> &str {
        self.oci.as_deref().unwrap_or(&self.path)
    }
}

/// The lock's pins for the OCI plugins of `pipeline`, by plugin name, for
/// the fetch of a `--locked` run (which then needs no registry when the
/// cache holds them). No lock file: none (the check after the plan says so).
///
/// # Errors
/// A `CR025` diagnostic when the lock file cannot be read.
pub fn oci_pins(pipeline: &Path) -> Result<BTreeMap<String, crate::oci::Locked>, Diagnostics> {
    let path = beside(pipeline);
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let lock = read(&path)?;
    let name = pipeline.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    Ok(lock
        .plugins
        .into_iter()
        .filter(|p| p.pipeline == name)
        .filter_map(|p| {
            let reference = p.oci?;
            let locked = crate::oci::Locked {
                reference,
                manifest: p.manifest.unwrap_or_default(),
                component: format!("sha256:{}", p.sha256),
                relock: format!("run `cleanroom lock {}`", pipeline.display()),
            };
            Some((p.name, locked))
        })
        .collect())
}

fn pipeline_name(plan: &Plan) -> String {
    plan.pipeline_file.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// `path` relative to `base` when it lies below it (`dist/x.wasm`), with
/// `../` steps when it is a sibling, else as given.
fn relative_to(path: &Path, base: &Path) -> String {
    let normal = |p: &Path| fs_err::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (path, base) = (normal(path), normal(base));
    let common = path.components().zip(base.components()).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return path.display().to_string();
    }
    let ups = base.components().count() - common;
    let rest: PathBuf = path.components().skip(common).collect();
    let mut out = PathBuf::new();
    for _ in 0..ups {
        out.push("..");
    }
    out.push(rest);
    out.display().to_string()
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn lock_error(path: &Path, message: String) -> Diagnostics {
    Diagnostic::new(Code::CR025, message)
        .at(Location::Path(path.to_path_buf()))
        .hint("check the file's permissions")
        .into()
}
