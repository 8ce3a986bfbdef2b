//! Registry credentials, from the usual places: a pipeline's
//! `[registries."host"]` (a username and a `[secrets]` entry holding the
//! password, for CI), `--username` with `--password-stdin` on the command
//! line, else Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): an `auths` entry, or a credential helper
//! (`credHelpers`, `credsStore`) run as `docker-credential-NAME get`.
//!
//! [`Credentials`] has no `Serialize`, its `Debug` shows the username only,
//! and [`Credentials::scrub`] removes the password (and the encoded header
//! that carries it) from any text, so no error, report or journal line can
//! carry it.

use std::path::PathBuf;

use base64::Engine;

/// A username and password for one registry.
#[derive(Clone)]
pub struct Credentials {
    username: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, [password])", self.username)
    }
}

impl Credentials {
    /// Credentials as given.
    pub fn new(username: String, password: String) -> Credentials {
        Credentials { username, password }
    }

    /// The `Authorization` value for HTTP basic authentication.
    pub fn basic(&self) -> String {
        format!("Basic {}", self.encoded())
    }

    fn encoded(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.username, self.password))
    }

    /// `text` with the password and its encoded forms replaced by `[password]`.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in [self.encoded(), self.password.clone()] {
            if !secret.is_empty() {
                text = text.replace(&secret, "[password]");
            }
        }
        text
    }
}

/// Where Docker keeps its configuration.
fn docker_config_file() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker").join("config.json"))
}

/// The credentials Docker's configuration holds for `registry`
/// (`host[:port]`), if any.
///
/// # Errors
/// A sentence when the configuration names credentials for it that cannot
/// be read (malformed `auth`, a helper that fails): better to say so than to
/// go on anonymously and get a confusing 401.
pub fn from_docker_config(registry: &str) -> Result<Option<Credentials>, String> {
    let Some(file) = docker_config_file() else { return Ok(None) };
    let Ok(text) = fs_err::read_to_string(&file) else { return Ok(None) };
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("`{}` is not valid JSON: {e}", file.display()))?;
    let keys = [
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
    ];
    if let Some(helper) = keys.iter().find_map(|k| config["credHelpers"][k].as_str()) {
        return helper_get(helper, registry).map(Some);
    }
    if let Some(entry) = keys.iter().map(|k| &config["auths"][k]).find(|e| e.is_object()) {
        if let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth)
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or_else(|| {
                    format!("the `auth` of `{registry}` in `{}` is not base64 of `user:password`", file.display())
                })?;
            let (username, password) = decoded
                .split_once(':')
                .ok_or_else(|| format!("the `auth` of `{registry}` in `{}` is not `user:password`", file.display()))?;
            return Ok(Some(Credentials::new(username.into(), password.into())));
        }
        if let (Some(username), Some(password)) = (entry["username"].as_str(), entry["password"].as_str()) {
            return Ok(Some(Credentials::new(username.into(), password.into())));
        }
    }
    if let Some(store) = config["credsStore"].as_str().filter(|s| !s.is_empty()) {
        return Ok(helper_get(store, registry).ok());
    }
    Ok(None)
}

/// `docker-credential-NAME get`, the registry on stdin, JSON on stdout.
fn helper_get(name: &str, registry: &str) -> Result<Credentials, String> {
    use std::io::Write;
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(format!("credential helper `{}` is not a plain name", name.escape_debug()));
    }
    let program = format!("docker-credential-{name}");
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run the credential helper `{program}`: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(registry.as_bytes());
    }
    let output = child.wait_with_output().map_err(|e| format!("the credential helper `{program}` failed: {e}"))?;
    if !output.status.success() {
        return Err(format!("the credential helper `{program}` has no credentials for `{registry}`"));
    }
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|_| format!("the credential helper `{program}` did not answer with JSON"))?;
    match (answer["Username"].as_str(), answer["Secret"].as_str()) {
        (Some(username), Some(secret)) => Ok(Credentials::new(username.into(), secret.into())),
        _ => Err(format!("the credential helper `{program}` gave no Username and Secret")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubbing_removes_the_password_and_the_header_that_carries_it() {
        let c = Credentials::new("ci".into(), "hunter2hunter2".into());
        let text = format!("sent {} and hunter2hunter2", c.basic());
        let clean = c.scrub(&text);
        assert!(!clean.contains("hunter2"), "{clean}");
        assert!(!clean.contains(&c.encoded()), "{clean}");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
