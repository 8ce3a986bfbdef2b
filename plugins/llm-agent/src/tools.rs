//! The tools the model may call, and the confinement they enforce.
//!
//! [`Sandbox`] knows the step's mounts and resolves every path a model
//! gives: relative paths are taken from the workspace root (`work/main.rs`
//! is `/work/main.rs`), `.` and `..` are resolved lexically, and the result
//! must lie below a mount (any mount to read, a writable one to write; when
//! mounts nest, the deepest one decides, as it does for WASI preopens).
//! A refused path, bad arguments or a failed write become the tool's result
//! text (`error: ...`) for the model to read, never a failure of the stage.
//!
//! Tools: `list_files {path}`, `read_file {path}`, `write_file {path,
//! content}` and `apply_patch {patch}` (see [`crate::patch`]).

use std::collections::BTreeMap;

use cleanroom_plugin_sdk::{one_line, read_text, Files, Mount};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::patch;

/// Most entries `list_files` returns.
const MAX_LISTED: usize = 1000;

/// The step's mounts, as the tools see them.
pub struct Sandbox {
    /// (normalized guest path, writable), in the pipeline's order.
    mounts: Vec<(String, bool)>,
    /// Bytes of a file `read_file` returns at most.
    max_file_bytes: usize,
}

impl Sandbox {
    /// A sandbox over `mounts`.
    pub fn new(mounts: &[Mount], max_file_bytes: usize) -> Self {
        let mounts =
            mounts.iter().map(|m| (normalize(&m.path).unwrap_or_else(|_| m.path.clone()), m.writable)).collect();
        Sandbox { mounts, max_file_bytes }
    }

    /// The guest paths of the mounts, writable ones only if `writable`.
    pub fn mount_paths(&self, writable: bool) -> Vec<&str> {
        self.mounts.iter().filter(|(_, w)| *w || !writable).map(|(p, _)| p.as_str()).collect()
    }

    /// The deepest mount containing the normalized `path`.
    fn mount_of(&self, path: &str) -> Option<&(String, bool)> {
        self.mounts.iter().filter(|(mount, _)| is_within(path, mount)).max_by_key(|(mount, _)| mount.len())
    }

    /// `raw` as a guest path the step can read.
    ///
    /// # Errors
    /// When it leaves the workspace or lies below no mount.
    pub fn readable(&self, raw: &str) -> Result<String, String> {
        let path = normalize(raw)?;
        match self.mount_of(&path) {
            Some(_) => Ok(path),
            None => {
                Err(format!("`{path}` is outside what this step can read ({})", self.mount_paths(false).join(", ")))
            }
        }
    }

    /// `raw` as a guest path the step can write: below (not at) a writable
    /// mount.
    ///
    /// # Errors
    /// When it is not below a writable mount.
    pub fn writable(&self, raw: &str) -> Result<String, String> {
        let path = normalize(raw)?;
        match self.mount_of(&path) {
            Some((mount, true)) if *mount != path => Ok(path),
            _ => Err(format!("`{path}` is not writable: only files below {} can be written", self.writable_list())),
        }
    }

    fn writable_list(&self) -> String {
        let writable = self.mount_paths(true);
        if writable.is_empty() {
            "no directory (this step has no writable mount)".to_string()
        } else {
            writable.join(", ")
        }
    }

    /// Every regular file below `dir` (a guest path the step can read, or
    /// one that contains mounts, such as `/`), with its size, sorted.
    pub fn files_below(&self, dir: &str) -> Vec<(String, u64)> {
        let roots: Vec<String> = if self.mount_of(dir).is_some() {
            vec![dir.to_string()]
        } else {
            self.mounts.iter().filter(|(m, _)| is_within(m, dir)).map(|(m, _)| m.clone()).collect()
        };
        let Ok(all) = Files::new(&[], &[]) else { return Vec::new() };
        let found = all.walk(&roots).into_iter().map(|f| f.guest);
        found
            .map(|path| (std::fs::metadata(&path).map_or(0, |m| m.len()), path))
            .map(|(size, path)| (path, size))
            .collect()
    }

    /// The text of the file at guest path `path`, cut at `max_file_bytes`
    /// (the cut is said in the text).
    ///
    /// # Errors
    /// When it cannot be read or is binary.
    pub fn read_capped(&self, path: &str) -> Result<String, String> {
        if std::path::Path::new(path).is_dir() {
            return Err(format!("`{path}` is a directory: use list_files"));
        }
        let bytes = read_text(path).ok_or_else(|| format!("`{path}` cannot be read or is binary"))?;
        if bytes.len() <= self.max_file_bytes {
            return Ok(String::from_utf8_lossy(&bytes).into_owned());
        }
        let mut cut = self.max_file_bytes;
        while cut > 0 && (bytes[cut] & 0xC0) == 0x80 {
            cut -= 1; // do not split a UTF-8 sequence
        }
        Ok(format!(
            "{}\n[cut: the file is {} bytes; only the first {cut} are shown. Change it with apply_patch, not write_file.]",
            String::from_utf8_lossy(&bytes[..cut]),
            bytes.len()
        ))
    }

    /// Runs the tool `name` with its JSON `arguments` and returns the text
    /// the model gets back (`error: ...` when it failed).
    pub fn call(&self, name: &str, arguments: &str) -> String {
        let result = match name {
            "list_files" => args(arguments).and_then(|a: PathArgs| self.list_files(a.path.as_deref())),
            "read_file" => args(arguments).and_then(|a: PathArgs| self.read_file(a.path.as_deref())),
            "write_file" => args(arguments).and_then(|a: WriteArgs| self.write_file(&a.path, &a.content)),
            "apply_patch" => args(arguments).and_then(|a: PatchArgs| self.apply_patch(&a.patch)),
            other => Err(format!("there is no tool `{other}`: use list_files, read_file, write_file or apply_patch")),
        };
        result.unwrap_or_else(|e| format!("error: {e}"))
    }

    fn list_files(&self, path: Option<&str>) -> Result<String, String> {
        let dir = normalize(path.unwrap_or("/"))?;
        if self.mount_of(&dir).is_none() && !self.mounts.iter().any(|(m, _)| is_within(m, &dir)) {
            return Err(format!("`{dir}` is outside what this step can read ({})", self.mount_paths(false).join(", ")));
        }
        let files = self.files_below(&dir);
        if files.is_empty() {
            return Ok(format!("no files below `{dir}`"));
        }
        let mut out = format!("{} files below `{dir}`:\n", files.len());
        for (path, size) in files.iter().take(MAX_LISTED) {
            out.push_str(&format!("{path} ({size} bytes)\n"));
        }
        if files.len() > MAX_LISTED {
            out.push_str(&format!("... and {} more: list a subdirectory\n", files.len() - MAX_LISTED));
        }
        Ok(out)
    }

    fn read_file(&self, path: Option<&str>) -> Result<String, String> {
        let path = self.readable(path.ok_or("read_file needs `path`")?)?;
        self.read_capped(&path)
    }

    fn write_file(&self, path: &str, content: &str) -> Result<String, String> {
        let path = self.writable(path)?;
        write(&path, content)?;
        Ok(format!("wrote {} bytes to {path}", content.len()))
    }

    fn apply_patch(&self, text: &str) -> Result<String, String> {
        let diffs = patch::parse(text)?;
        // Every file is patched in memory first (a file may appear twice);
        // nothing is written unless every hunk applies.
        let mut pending: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut summary = Vec::new();
        for diff in &diffs {
            let path = self.writable(&diff.target()?)?;
            let current = match pending.get(&path) {
                Some(content) => content.clone(),
                None => read_existing(&path)?,
            };
            let (added, removed) = patch::counts(diff);
            let next = match (&diff.old, &diff.new, current) {
                (None, _, Some(c)) if !c.is_empty() => {
                    return Err(format!("the patch creates `{path}`, which exists: diff against its contents instead"))
                }
                (Some(_), _, None) => return Err(format!("the patch changes `{path}`, which does not exist")),
                (_, new, current) => {
                    let after = patch::apply(current.as_deref().unwrap_or(""), &diff.hunks)
                        .map_err(|e| format!("{path}: {e}"))?;
                    match new {
                        Some(_) => Some(after),
                        None if after.is_empty() => None,
                        None => return Err(format!("the patch deletes `{path}` but does not remove all of its lines")),
                    }
                }
            };
            let verb = match (&diff.old, &next) {
                (_, None) => "deleted",
                (None, Some(_)) => "created",
                _ => "patched",
            };
            summary.push(format!("{verb} {path} (+{added} -{removed})"));
            pending.insert(path, next);
        }
        for (path, content) in &pending {
            match content {
                Some(text) => write(path, text)?,
                None => std::fs::remove_file(path).map_err(|e| format!("cannot delete `{path}`: {}", short(&e)))?,
            }
        }
        Ok(summary.join("\n"))
    }
}

#[derive(Deserialize)]
struct PathArgs {
    #[serde(default)]
    path: Option<String>,
}

#[derive(Deserialize)]
struct WriteArgs {
    path: String,
    content: String,
}

#[derive(Deserialize)]
struct PatchArgs {
    patch: String,
}

/// Parses a tool call's arguments (unknown keys are ignored: models add
/// them, and they change nothing).
fn args<T: serde::de::DeserializeOwned>(arguments: &str) -> Result<T, String> {
    let arguments = if arguments.trim().is_empty() { "{}" } else { arguments };
    serde_json::from_str(arguments).map_err(|e| format!("the arguments are not valid: {e}"))
}

/// The UTF-8 text of an existing file, `None` if there is none.
fn read_existing(path: &str) -> Result<Option<String>, String> {
    match std::fs::read(path) {
        Ok(bytes) => {
            String::from_utf8(bytes).map(Some).map_err(|_| format!("`{path}` is not UTF-8 text: use write_file"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read `{path}`: {}", short(&e))),
    }
}

/// Writes `content` to `path`, creating its directories.
fn write(path: &str, content: &str) -> Result<(), String> {
    if let Some(parent) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create `{}`: {}", parent.display(), short(&e)))?;
    }
    std::fs::write(path, content).map_err(|e| format!("cannot write `{path}`: {}", short(&e)))
}

fn short(e: &std::io::Error) -> String {
    one_line(&e.to_string(), 100)
}

/// `raw` as an absolute guest path with `.`, `..` and repeated slashes
/// resolved; relative paths start at the workspace root.
///
/// # Errors
/// An empty path, or one whose `..` climbs above the root.
pub fn normalize(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("the path is empty".to_string());
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop().ok_or_else(|| format!("`{raw}` climbs above the workspace root"))?;
            }
            part => parts.push(part),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Whether normalized guest path `path` is `dir` or below it.
fn is_within(path: &str, dir: &str) -> bool {
    dir == "/" || path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// The OpenAI `tools` array describing the four tools.
pub fn definitions() -> Value {
    let function = |name: &str, description: &str, properties: Value, required: &[&str]| {
        json!({
            "type": "function",
            "function": {
                "name": name,
                "description": description,
                "parameters": {
                    "type": "object",
                    "properties": properties,
                    "required": required,
                    "additionalProperties": false,
                },
            },
        })
    };
    let path = |what: &str| json!({"type": "string", "description": what});
    json!([
        function(
            "list_files",
            "List the files below a directory, with their sizes.",
            json!({"path": path("Directory, e.g. /work or / for every directory you can read.")}),
            &["path"],
        ),
        function(
            "read_file",
            "Read a text file.",
            json!({"path": path("File to read, e.g. /src/main.rs.")}),
            &["path"],
        ),
        function(
            "write_file",
            "Create or replace a whole file (below a writable directory); missing directories are created.",
            json!({
                "path": path("File to write, e.g. /work/main.rs."),
                "content": {"type": "string", "description": "The complete new contents of the file."},
            }),
            &["path", "content"],
        ),
        function(
            "apply_patch",
            "Apply a unified diff to files below the writable directories. Name files by their paths \
             (--- /work/main.rs, +++ /work/main.rs; git's a/ and b/ prefixes are accepted; --- /dev/null \
             creates a file, +++ /dev/null deletes one). Hunk context must match the current file: read \
             it first. Nothing is changed unless every hunk applies.",
            json!({"patch": {"type": "string", "description": "The unified diff."}}),
            &["patch"],
        ),
    ])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh directory with `specs/`, `src/` and `work/`, removed on drop.
    pub struct Tree(pub std::path::PathBuf);

    impl Tree {
        pub fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("llm-agent-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            for sub in ["specs", "src", "work"] {
                std::fs::create_dir_all(dir.join(sub)).unwrap();
            }
            Tree(dir)
        }

        pub fn path(&self, rel: &str) -> String {
            format!("{}/{rel}", self.0.display())
        }

        /// read specs/ and src/, write work/
        pub fn sandbox(&self, max: usize) -> Sandbox {
            let mount = |rel: &str, writable| Mount { path: self.path(rel), writable };
            Sandbox::new(&[mount("specs", false), mount("src", false), mount("work", true)], max)
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn normalize_resolves_dots_and_refuses_climbing_out() {
        assert_eq!(normalize("work/./a//b.rs").unwrap(), "/work/a/b.rs");
        assert_eq!(normalize("/work/sub/../a.rs").unwrap(), "/work/a.rs");
        assert_eq!(normalize("/").unwrap(), "/");
        assert!(normalize("/work/../../etc").unwrap_err().contains("climbs above"));
        assert!(normalize("  ").is_err());
    }

    #[test]
    fn confinement_by_the_deepest_mount() {
        let mounts = [
            Mount { path: "/".into(), writable: false },
            Mount { path: "/work/".into(), writable: true },
            Mount { path: "/work/vendor".into(), writable: false },
        ];
        let sandbox = Sandbox::new(&mounts, 10);
        assert_eq!(sandbox.readable("specs/a.md").unwrap(), "/specs/a.md");
        assert_eq!(sandbox.writable("/work/a.rs").unwrap(), "/work/a.rs");
        assert!(sandbox.writable("/work/vendor/lib.rs").unwrap_err().contains("only files below /work can be written"));
        assert!(sandbox.writable("/work").is_err(), "a mount itself is not a file");
        assert!(sandbox.writable("/workshop/a.rs").is_err());
        assert!(sandbox.writable("/work/../src/main.rs").unwrap_err().starts_with("`/src/main.rs` is not writable"));

        let narrow = Sandbox::new(&[Mount { path: "/src".into(), writable: false }], 10);
        assert_eq!(
            narrow.readable("/etc/passwd").unwrap_err(),
            "`/etc/passwd` is outside what this step can read (/src)"
        );
        assert!(narrow.writable("/src/x").unwrap_err().contains("no writable mount"));
    }

    #[test]
    fn tools_refuse_paths_outside_the_mounts_with_a_result_not_a_crash() {
        let tree = Tree::new("refuse");
        let sandbox = tree.sandbox(1000);
        let outside = tree.path("secret.txt");
        std::fs::write(&outside, "secret").unwrap();
        let read = sandbox.call("read_file", &json!({"path": outside}).to_string());
        assert!(read.starts_with("error: ") && read.contains("outside what this step can read"), "{read}");
        let src = tree.path("src/main.rs");
        let write = sandbox.call("write_file", &json!({"path": src, "content": "x"}).to_string());
        assert!(write.starts_with("error: ") && write.contains("is not writable"), "{write}");
        assert!(!std::path::Path::new(&src).exists());
        let escape = format!("{}/../secret.txt", tree.path("work"));
        assert!(sandbox
            .call("write_file", &json!({"path": escape, "content": "x"}).to_string())
            .starts_with("error: "));
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "secret");
        assert!(sandbox.call("read_file", "{not json").starts_with("error: the arguments are not valid"));
        assert!(sandbox.call("write_file", "{\"path\": \"/x\"}").contains("missing field `content`"));
        assert!(sandbox.call("rm", "{}").starts_with("error: there is no tool `rm`"));
    }

    #[test]
    fn write_read_and_list() {
        let tree = Tree::new("wrl");
        let sandbox = tree.sandbox(1000);
        let file = tree.path("work/deep/main.rs");
        let wrote = sandbox.call("write_file", &json!({"path": file, "content": "fn main() {}\n"}).to_string());
        assert_eq!(wrote, format!("wrote 13 bytes to {file}"));
        assert_eq!(sandbox.call("read_file", &json!({"path": file}).to_string()), "fn main() {}\n");
        let listed = sandbox.call("list_files", &json!({"path": tree.path("work")}).to_string());
        assert_eq!(listed, format!("1 files below `{}`:\n{file} (13 bytes)\n", tree.path("work")));
        // The parent of every mount lists all of them.
        std::fs::write(tree.path("specs/a.md"), "spec").unwrap();
        let all = sandbox.call("list_files", &json!({"path": tree.0.display().to_string()}).to_string());
        assert!(all.starts_with("2 files below") && all.contains("a.md (4 bytes)"), "{all}");
        assert!(sandbox.call("read_file", &json!({"path": tree.path("work")}).to_string()).contains("is a directory"));
    }

    #[test]
    fn reads_are_capped() {
        let tree = Tree::new("cap");
        let sandbox = tree.sandbox(5);
        std::fs::write(tree.path("src/big.txt"), "abcdéfgh").unwrap();
        let read = sandbox.call("read_file", &json!({"path": tree.path("src/big.txt")}).to_string());
        assert_eq!(
            read,
            "abcd\n[cut: the file is 9 bytes; only the first 4 are shown. Change it with apply_patch, not write_file.]"
        );
        std::fs::write(tree.path("src/bin"), b"\x7fELF\0").unwrap();
        assert!(sandbox.call("read_file", &json!({"path": tree.path("src/bin")}).to_string()).contains("binary"));
    }

    #[test]
    fn apply_patch_writes_all_or_nothing() {
        let tree = Tree::new("patch");
        let sandbox = tree.sandbox(1000);
        let (a, b) = (tree.path("work/a.txt"), tree.path("work/b.txt"));
        std::fs::write(&a, "one\ntwo\n").unwrap();
        let good = format!("--- {a}\n+++ {a}\n@@ -2 +2 @@\n-two\n+TWO\n--- /dev/null\n+++ {b}\n@@ -0,0 +1 @@\n+new\n");
        let result = sandbox.call("apply_patch", &json!({"patch": good}).to_string());
        assert_eq!(result, format!("patched {a} (+1 -1)\ncreated {b} (+1 -0)"));
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "one\nTWO\n");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "new\n");
        // The second file's hunk does not match: the first is not written.
        let bad = format!("--- {a}\n+++ {a}\n@@\n-one\n+ONE\n--- {b}\n+++ {b}\n@@\n-nope\n+x\n");
        let result = sandbox.call("apply_patch", &json!({"patch": bad}).to_string());
        assert!(result.starts_with(&format!("error: {b}: hunk 1 does not match")), "{result}");
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "one\nTWO\n");
        // Deleting, and patching a read-only file.
        let delete = format!("--- {b}\n+++ /dev/null\n@@ -1 +0,0 @@\n-new\n");
        assert_eq!(sandbox.call("apply_patch", &json!({"patch": delete}).to_string()), format!("deleted {b} (+0 -1)"));
        assert!(!std::path::Path::new(&b).exists());
        let src = tree.path("src/main.rs");
        std::fs::write(&src, "x\n").unwrap();
        let readonly = format!("--- {src}\n+++ {src}\n@@\n-x\n+y\n");
        assert!(sandbox.call("apply_patch", &json!({"patch": readonly}).to_string()).contains("is not writable"));
        let exists = format!("--- /dev/null\n+++ {a}\n@@\n+z\n");
        assert!(sandbox.call("apply_patch", &json!({"patch": exists}).to_string()).contains("which exists"));
    }

    #[test]
    fn tool_definitions_are_openai_functions() {
        let tools = definitions();
        let names: Vec<&str> =
            tools.as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["list_files", "read_file", "write_file", "apply_patch"]);
        for tool in tools.as_array().unwrap() {
            assert_eq!(tool["type"], "function");
            assert_eq!(tool["function"]["parameters"]["type"], "object");
        }
        assert_eq!(tools[2]["function"]["parameters"]["required"], json!(["path", "content"]));
    }
}
