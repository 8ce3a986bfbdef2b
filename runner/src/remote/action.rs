//! A planned step as an REAPI `Action`: what the remote cache files a
//! result under and what a worker runs.
//!
//! The input root holds exactly what the step may read, and nothing else:
//!
//! ```text
//! step.json        the step as planned (a [`Descriptor`]), its paths moved under PLACEHOLDER
//! plugin.wasm      its plugin, when it has one
//! workspace/REL    each of its mounts (and its subject's), by workspace path
//! ```
//!
//! The `Command` names the step contract ([`contract`]) in its platform and
//! the outputs a worker gives back (`report.json`, and `written/REL` for
//! each file a stage wrote). Secrets never enter any of it: a step's grant
//! names the secrets it gets, never their values. The workspace's own path
//! is not in it either ([`PLACEHOLDER`] stands for it), so a second checkout
//! of the same pipeline, on another path or another machine, finds the
//! same results.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use prost::Message;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::cache::digest::Digester;
use crate::plan::{Action, Mount, Step};
use crate::plugin::{hex, PluginInfo};

/// Where the workspace is in a [`Descriptor`]: every path under the
/// client's workspace is moved here, and a worker moves it to its own.
pub const PLACEHOLDER: &str = "/cleanroom-workspace";

/// The input root's directory holding the workspace's files.
pub const WORKSPACE_DIR: &str = "workspace";
/// The step descriptor's name in the input root.
pub const STEP_FILE: &str = "step.json";
/// The plugin's name in the input root.
pub const PLUGIN_FILE: &str = "plugin.wasm";
/// The report's name among the outputs.
pub const REPORT_FILE: &str = "report.json";
/// The directory of a stage's written files among the outputs.
pub const WRITTEN_DIR: &str = "written";

/// The platform property naming the step contract; a worker offers it
/// and leases only actions asking for its own.
pub const CONTRACT_PROPERTY: &str = "cleanroom-contract";
/// The platform property naming a host tool a native step needs (one per
/// tool); a worker offers the tools it has.
pub const TOOL_PROPERTY: &str = "cleanroom-tool";

/// Bumped when what a worker is sent or gives back changes.
const STEP_PROTOCOL: u32 = 1;

/// The step contract: the protocol and the runner's version. A worker runs
/// only actions of its own contract: another runner may run a step
/// differently, which is why the version is part of the action too.
pub fn contract() -> String {
    format!("{STEP_PROTOCOL}-{}", env!("CARGO_PKG_VERSION"))
}

/// The step as a worker needs it, in `step.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Descriptor {
    /// [`contract`] of the runner that made it.
    pub contract: String,
    /// The step as planned, its workspace paths under [`PLACEHOLDER`].
    pub step: Step,
    /// Its plugin, the path being [`PLUGIN_FILE`] in the input root.
    pub plugin: Option<PluginInfo>,
    /// The attempt it is told ([`Step::told_attempt`]).
    pub attempt: u32,
    /// A stage's retry feedback.
    pub feedback: Vec<String>,
}

/// Where a blob's bytes are, until it is uploaded.
#[derive(Debug, Clone)]
pub enum Source {
    /// In memory (the descriptor, protos).
    Bytes(Vec<u8>),
    /// A file of the workspace or the plugin, read when uploaded.
    File(PathBuf),
}

/// A step as an action, with every blob it refers to.
#[derive(Debug, Clone)]
pub struct StepAction {
    /// The action's digest: the remote cache's key.
    pub digest: re::Digest,
    /// The action.
    pub action: re::Action,
    /// Every blob the action refers to, the action itself included, by hash.
    pub blobs: BTreeMap<String, (re::Digest, Source)>,
}

impl StepAction {
    /// The action for `step` as attempt `attempt` with `feedback`;
    /// `plugins` are the plan's, `workspace` its canonical root.
    ///
    /// # Errors
    /// When an input cannot be read.
    pub fn build(
        plugins: &BTreeMap<String, PluginInfo>,
        step: &Step,
        workspace: &Path,
        (attempt, feedback): (u32, &[String]),
        digester: &Digester,
    ) -> Result<StepAction, String> {
        let mut blobs = BTreeMap::new();
        let mut root = Tree::default();
        let plugin = match &step.action {
            Action::Plugin(name) => {
                let info = plugins.get(name).ok_or_else(|| format!("plugin `{name}` is not in the plan"))?;
                let digest = re::Digest { hash: info.sha256.clone(), size_bytes: info.size as i64 };
                root.add_file(PLUGIN_FILE, digest.clone(), false);
                blobs.insert(digest.hash.clone(), (digest, Source::File(info.path.clone())));
                Some(PluginInfo { path: PathBuf::from(PLUGIN_FILE), ..info.clone() })
            }
            Action::Command { .. } => None,
        };
        let descriptor = Descriptor {
            contract: contract(),
            step: rebase_step(step, workspace, Path::new(PLACEHOLDER))?,
            plugin,
            attempt: step.told_attempt(attempt),
            feedback: feedback.to_vec(),
        };
        let json = serde_json::to_vec(&descriptor).map_err(|e| format!("cannot describe the step: {e}"))?;
        root.add_file(STEP_FILE, digest_of(&json), false);
        add_blob(&mut blobs, json);
        for mount in step.inputs() {
            add_mount(&mut root, mount, workspace, digester, &mut blobs)?;
        }
        let input_root = root.encode(&mut blobs);
        let platform = platform_of(step, workspace);
        #[allow(deprecated, reason = "services before REAPI 2.2 read the platform from the command")]
        let command = re::Command {
            arguments: vec!["cleanroom".into(), "step".into(), STEP_FILE.into()],
            output_paths: vec![REPORT_FILE.into(), WRITTEN_DIR.into()],
            platform: Some(platform.clone()),
            ..Default::default()
        };
        let command_digest = add_blob(&mut blobs, command.encode_to_vec());
        let timeout = step.grant.limits.timeout;
        let action = re::Action {
            command_digest: Some(command_digest),
            input_root_digest: Some(input_root),
            timeout: Some(bazel_remote_apis::google::protobuf::Duration {
                seconds: timeout.as_secs() as i64,
                nanos: timeout.subsec_nanos() as i32,
            }),
            do_not_cache: !step.cache,
            platform: Some(platform),
            ..Default::default()
        };
        let digest = add_blob(&mut blobs, action.encode_to_vec());
        Ok(StepAction { digest, action, blobs })
    }
}

/// `cleanroom-contract`, and one `cleanroom-tool` per `tools` entry of a
/// native step (or its subject), sorted as the API asks. The program
/// itself is not named: a worker refuses an action whose program it does
/// not have, and the service hands it to another.
fn platform_of(step: &Step, workspace: &Path) -> re::Platform {
    let mut properties = vec![re::platform::Property { name: CONTRACT_PROPERTY.into(), value: contract() }];
    let tools: Vec<&PathBuf> = step.grant.tools().iter().chain(step.judged_tools()).collect();
    for tool in tools.into_iter().filter(|t| !t.starts_with(workspace)) {
        properties.push(re::platform::Property { name: TOOL_PROPERTY.into(), value: tool.display().to_string() });
    }
    properties.sort_by(|a, b| (&a.name, &a.value).cmp(&(&b.name, &b.value)));
    properties.dedup();
    re::Platform { properties }
}

/// The REAPI digest (sha256, size) of `bytes`.
pub fn digest_of(bytes: &[u8]) -> re::Digest {
    re::Digest { hash: hex(&Sha256::digest(bytes)), size_bytes: bytes.len() as i64 }
}

fn add_blob(blobs: &mut BTreeMap<String, (re::Digest, Source)>, bytes: Vec<u8>) -> re::Digest {
    let digest = digest_of(&bytes);
    blobs.entry(digest.hash.clone()).or_insert_with(|| (digest.clone(), Source::Bytes(bytes)));
    digest
}

/// `step` with every path under `from` moved under `to`: the descriptor
/// carries the workspace as [`PLACEHOLDER`], and a worker moves it to
/// where it materialised the input root. Every string that is `from` or
/// starts with `from/` is a path of the workspace (mount paths, a subject's
/// program, a program in the workspace); nothing else of a plan starts
/// with an absolute path.
///
/// `Mount::exists` is not carried (it is not serialized): a worker sets it
/// from the inputs it materialised.
///
/// # Errors
/// When the step cannot be written or read back as JSON.
pub fn rebase_step(step: &Step, from: &Path, to: &Path) -> Result<Step, String> {
    let mut value = serde_json::to_value(step).map_err(|e| format!("cannot describe the step: {e}"))?;
    let (from, to) = (from.display().to_string(), to.display().to_string());
    rebase(&mut value, &from, &to);
    serde_json::from_value(value).map_err(|e| format!("cannot read the step back: {e}"))
}

fn rebase(value: &mut serde_json::Value, from: &str, to: &str) {
    match value {
        serde_json::Value::String(s) => {
            if s == from {
                *s = to.to_string();
            } else if let Some(rest) = s.strip_prefix(from).filter(|rest| rest.starts_with('/')) {
                *s = format!("{to}{rest}");
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| rebase(v, from, to)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| rebase(v, from, to)),
        _ => {}
    }
}

/// A directory of the input root being built.
#[derive(Default)]
struct Tree {
    files: BTreeMap<String, (re::Digest, bool)>,
    links: BTreeMap<String, String>,
    dirs: BTreeMap<String, Tree>,
}

impl Tree {
    /// The directory at `rel` (`a/b`), created with its parents.
    fn dir(&mut self, rel: &str) -> &mut Tree {
        rel.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .fold(self, |tree, name| tree.dirs.entry(name.to_string()).or_default())
    }

    fn add_file(&mut self, rel: &str, digest: re::Digest, executable: bool) {
        let (dir, name) = split(rel);
        self.dir(dir).files.insert(name.to_string(), (digest, executable));
    }

    /// Encodes this directory and every one under it into `blobs`; its digest.
    fn encode(self, blobs: &mut BTreeMap<String, (re::Digest, Source)>) -> re::Digest {
        let directories = self
            .dirs
            .into_iter()
            .map(|(name, tree)| re::DirectoryNode { name, digest: Some(tree.encode(blobs)) })
            .collect();
        let files = self
            .files
            .into_iter()
            .map(|(name, (digest, is_executable))| re::FileNode {
                name,
                digest: Some(digest),
                is_executable,
                ..Default::default()
            })
            .collect();
        let symlinks = self
            .links
            .into_iter()
            .map(|(name, target)| re::SymlinkNode { name, target, ..Default::default() })
            .collect();
        let directory = re::Directory { files, directories, symlinks, ..Default::default() };
        add_blob(blobs, directory.encode_to_vec())
    }
}

fn split(rel: &str) -> (&str, &str) {
    rel.rsplit_once('/').unwrap_or(("", rel))
}

/// Adds `mount`'s files (a file, or a directory tree without the run
/// directory and `.git`, as the digest leaves them out) under `workspace/REL`.
fn add_mount(
    root: &mut Tree,
    mount: &Mount,
    workspace: &Path,
    digester: &Digester,
    blobs: &mut BTreeMap<String, (re::Digest, Source)>,
) -> Result<(), String> {
    let rel = if mount.rel == "." { WORKSPACE_DIR.to_string() } else { format!("{WORKSPACE_DIR}/{}", mount.rel) };
    let Ok(meta) = fs_err::symlink_metadata(&mount.host) else { return Ok(()) };
    let run_dir = workspace.join(crate::manifest::RUN_DIR);
    let mut walk = vec![(mount.host.clone(), rel, meta)];
    while let Some((path, rel, meta)) = walk.pop() {
        if path == run_dir {
            continue;
        }
        let unreadable = |e: std::io::Error| format!("cannot read `{}`: {e}", path.display());
        if meta.is_dir() {
            root.dir(&rel);
            for entry in fs_err::read_dir(&path).map_err(unreadable)? {
                let entry = entry.map_err(unreadable)?;
                if entry.file_name() == crate::manifest::GIT_DIR {
                    continue;
                }
                let meta = entry.path().symlink_metadata().map_err(unreadable)?;
                walk.push((entry.path(), format!("{rel}/{}", entry.file_name().to_string_lossy()), meta));
            }
        } else if meta.is_symlink() {
            let target = fs_err::read_link(&path).map_err(unreadable)?;
            let (dir, name) = split(&rel);
            root.dir(dir).links.insert(name.to_string(), target.display().to_string());
        } else if meta.is_file() {
            let hash = digester.file_sha256(&path, &meta).ok_or_else(|| format!("cannot read `{}`", path.display()))?;
            let digest = re::Digest { hash, size_bytes: meta.size() as i64 };
            root.add_file(&rel, digest.clone(), meta.mode() & 0o111 != 0);
            blobs.entry(digest.hash.clone()).or_insert((digest, Source::File(path)));
        }
    }
    Ok(())
}
