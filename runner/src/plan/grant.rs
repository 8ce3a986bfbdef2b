//! Grants: per step, the complete list of what it may touch.
//!
//! A [`Grant`] is plain data decided by the plan and applied by the sandbox
//! (the WebAssembly half in [`crate::sandbox`], the native half in
//! [`crate::sandbox::jail::step`]);
//! nothing else decides access. Defaults deny: no mounts, no environment, no
//! network, and finite limits on time, memory and captured output.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

pub use super::limits::{Limits, DEFAULT_MAX_WRITE, DEFAULT_MEMORY, DEFAULT_OUTPUT_CAP, DEFAULT_PIDS, DEFAULT_TIMEOUT};

/// Everything one step may touch. What both kinds of step share is here;
/// what only a WebAssembly plugin or only a native program can be given is
/// in [`Reach`], so neither can carry the other's capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Grant {
    /// Files and directories it sees, in the order the pipeline lists them.
    pub mounts: Vec<Mount>,
    /// Resource limits.
    pub limits: Limits,
    /// Names of the `[secrets]` it gets as environment variables (values
    /// are read when the run starts, never stored here).
    pub secret_env: Vec<String>,
    /// What only one kind of step can be given.
    pub reach: Reach,
}

/// The capabilities only one kind of step can have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    /// A WebAssembly plugin (or subject component).
    Wasm(WasmGrant),
    /// A native program in the kernel jail.
    Native(NativeGrant),
}

/// What only a WebAssembly plugin can be given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct WasmGrant {
    /// Outgoing `wasi:http`, only to these origins; `None` means the plugin
    /// gets no `wasi:http` at all.
    pub http: Option<HttpGrant>,
}

/// What only a native program can be given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NativeGrant {
    /// Extra host paths it may read and execute (toolchains).
    pub tools: Vec<PathBuf>,
    /// Its complete environment (`PATH` and `HOME` included; `TMPDIR` is
    /// added per run).
    pub env: BTreeMap<String, String>,
    /// Whether it may use the network (the host's, unfiltered).
    pub network: bool,
    /// A cap on the memory of its whole process tree, in bytes (a memory
    /// cgroup); `None` for no cap beyond the machine's.
    pub memory: Option<u64>,
    /// `toolchain`: the language toolchain found for it (its paths are in
    /// `tools` too; see [`crate::plan::toolchain`]).
    #[serde(default)]
    pub toolchain: Option<Box<crate::plan::toolchain::Toolchain>>,
    /// `cache_dirs`: workspace-relative directories kept between runs in a
    /// private directory of the runner's cache and mounted writable over
    /// their workspace path ([`crate::sandbox::jail::step`]).
    #[serde(default)]
    pub cache_dirs: Vec<String>,
    /// `findings`: how its output becomes findings.
    #[serde(default)]
    pub findings: Option<FindingsPlan>,
}

/// A `run` step's `findings`, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FindingsPlan {
    /// The format.
    pub format: crate::findings::Format,
    /// A file under `$TMPDIR` the program writes, read instead of stdout
    /// (as written, starting with `$TMPDIR/`).
    pub file: Option<String>,
}

impl Grant {
    /// A WebAssembly grant of `mounts` and `limits` and nothing else.
    pub fn new(mounts: Vec<Mount>, limits: Limits) -> Grant {
        Grant { mounts, limits, secret_env: Vec::new(), reach: Reach::Wasm(WasmGrant::default()) }
    }

    /// A native program's `tools` (none for a plugin).
    pub fn tools(&self) -> &[PathBuf] {
        match &self.reach {
            Reach::Native(native) => &native.tools,
            Reach::Wasm(_) => &[],
        }
    }

    /// Whether a native program may use the network (never a plugin).
    pub fn network(&self) -> bool {
        matches!(&self.reach, Reach::Native(native) if native.network)
    }

    /// A plugin's `wasi:http` allowlist, if it has one.
    pub fn http(&self) -> Option<&HttpGrant> {
        match &self.reach {
            Reach::Wasm(wasm) => wasm.http.as_ref(),
            Reach::Native(_) => None,
        }
    }

    /// [`Grant::native`], to change (a service's `PORT`).
    pub fn native_mut(&mut self) -> Option<&mut NativeGrant> {
        match &mut self.reach {
            Reach::Native(native) => Some(native),
            Reach::Wasm(_) => None,
        }
    }

    /// A native program's environment, tools and network; `None` for a plugin.
    pub fn native(&self) -> Option<&NativeGrant> {
        match &self.reach {
            Reach::Native(native) => Some(native),
            Reach::Wasm(_) => None,
        }
    }
}

/// Where a plugin's outgoing HTTP requests may go, and what the host adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HttpGrant {
    /// `allow_hosts`, parsed.
    pub allow: Vec<HostRule>,
    /// Whether hosts may resolve to loopback, private or link-local addresses.
    pub allow_private: bool,
    /// Headers the host sets from secrets, per allowed origin.
    pub headers: Vec<SecretHeader>,
    /// Requests the step may make in one run, all its invocations
    /// together; `None`: no budget beyond its deadline.
    pub max_requests: Option<u32>,
}

/// A header the host adds to requests for one allowed origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SecretHeader {
    /// The `[secrets]` name whose value is sent.
    pub secret: String,
    /// The `allow_hosts` entry (as written) it applies to.
    pub host: String,
    /// Header name, lowercase.
    pub header: String,
    /// Text before the secret in the value.
    pub prefix: String,
}

/// One `allow_hosts` entry: `scheme://host[:port]`, where host may start
/// with `*.` to match any subdomain (not the bare domain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HostRule {
    /// As written, for messages and `secret_headers`.
    pub written: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Lowercase host without the `*.` of a wildcard.
    pub host: String,
    /// Whether subdomains of `host` match (and `host` itself does not).
    pub wildcard: bool,
    /// The port; the scheme's default when the entry names none.
    pub port: u16,
}

impl HostRule {
    /// Parses `https://api.example.com`, `http://127.0.0.1:8080`, `https://*.example.com`.
    ///
    /// # Errors
    /// What is wrong with the entry, in words.
    pub fn parse(written: &str) -> Result<HostRule, String> {
        let (scheme, rest) =
            written.split_once("://").ok_or_else(|| format!("`{written}` has no scheme: write `https://{written}`"))?;
        let default_port = match scheme {
            "https" => 443,
            "http" => 80,
            other => return Err(format!("`{written}`: scheme `{other}` is not http or https")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!("`{written}`: give an origin only (scheme, host, port), no path, query or user"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => {
                let port = port.parse::<u16>().map_err(|_| format!("`{written}`: `{port}` is not a port"))?;
                (host, port)
            }
            _ => (rest, default_port),
        };
        let (wildcard, host) = match host.strip_prefix("*.") {
            Some(domain) => (true, domain),
            None => (false, host),
        };
        let valid = !host.is_empty()
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
            && !host.contains('*');
        if !valid {
            return Err(format!("`{written}`: `{host}` is not a host name or IP address"));
        }
        Ok(HostRule {
            written: written.to_string(),
            scheme: scheme.to_string(),
            host: host.to_ascii_lowercase(),
            wildcard,
            port,
        })
    }

    /// Whether a request to `scheme://host:port` is allowed by this rule.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let host_matches = if self.wildcard {
            host.strip_suffix(&self.host).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
        } else {
            host == self.host
        };
        scheme == self.scheme && port == self.port && host_matches
    }
}

/// One file or directory of the workspace made visible to a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Mount {
    /// Workspace-relative path, normalised (`src/lib`, or `.` for the root).
    pub rel: String,
    /// Canonical host path (symlinks resolved; checked to be in the workspace).
    pub host: PathBuf,
    /// Where the step sees it: `/` + `rel` (`/` for the root).
    pub guest: String,
    /// Whether the step may change it (stage `write` mounts only).
    pub writable: bool,
    /// A directory (true) or a single file (false).
    pub is_dir: bool,
    /// False when the path did not exist at planning time: a `write`
    /// directory (created when the step's writes are committed, and only
    /// then), or a `read` path that a step it needs writes (checked, and its
    /// kind read, when the step runs). Not serialized: it is a fact about
    /// the disk when the plan was made, not a setting of the step, so keys
    /// built from a grant (the result and verdict caches) do not change
    /// when an upstream step has already written the path; what is there
    /// is in the content digests.
    #[serde(skip)]
    pub exists: bool,
}

#[cfg(test)]
mod tests {
    use super::HostRule;

    #[test]
    fn host_rules_match_scheme_host_and_port_exactly() {
        let rule = HostRule::parse("https://api.example.com").unwrap();
        assert!(rule.matches("https", "api.example.com", 443));
        assert!(rule.matches("https", "API.example.com", 443));
        assert!(!rule.matches("http", "api.example.com", 443));
        assert!(!rule.matches("https", "api.example.com", 8443));
        assert!(!rule.matches("https", "api.example.com.evil.net", 443));
        assert!(!rule.matches("https", "evilapi.example.com", 443));
        let local = HostRule::parse("http://127.0.0.1:8080").unwrap();
        assert!(local.matches("http", "127.0.0.1", 8080));
        assert!(!local.matches("http", "127.0.0.1", 80));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let rule = HostRule::parse("https://*.example.com").unwrap();
        assert!(rule.matches("https", "a.example.com", 443));
        assert!(rule.matches("https", "a.b.example.com", 443));
        assert!(!rule.matches("https", "example.com", 443));
        assert!(!rule.matches("https", "badexample.com", 443));
    }

    #[test]
    fn malformed_entries_say_what_is_wrong() {
        for (bad, says) in [
            ("api.example.com", "has no scheme"),
            ("ftp://x.com", "is not http or https"),
            ("https://x.com/v1", "origin only"),
            ("https://x.com:99999", "is not a port"),
            ("https://", "is not a host name"),
            ("https://a*.com", "is not a host name"),
            ("https://user@x.com", "origin only"),
        ] {
            let err = HostRule::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
