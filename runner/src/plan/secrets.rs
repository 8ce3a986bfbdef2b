//! The secrets capability, plan half: the `[secrets]` table (where each
//! value comes from) and each step's `secrets = [...]` (which it gets, as
//! environment variables). `secret_headers` name secrets too and are
//! checked here ([`known`]); they are part of the network grant. The other
//! half, [`crate::secrets`], reads the values when a run starts, hands them
//! out and scrubs them from every report.
//!
//! Secrets are only ever named in the plan ([`SecretSpec`] says where a
//! value comes from); values never enter the plan, so nothing that hashes
//! or prints a plan can leak them.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Declared;
use crate::diag::{Code, Diagnostic, Diagnostics, Location};
use crate::manifest::Manifest;

/// Where a secret's value is read from when a run starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SecretSpec {
    /// An environment variable of the runner.
    Env(String),
    /// A file's contents, without a trailing newline.
    File(PathBuf),
}

impl SecretSpec {
    /// Reads the value of secret `name` from where this says.
    ///
    /// # Errors
    /// A `CR027` diagnostic naming the secret and its source, never a value.
    pub fn read(&self, name: &str) -> Result<String, Diagnostic> {
        match self {
            SecretSpec::Env(var) => std::env::var(var).map_err(|_| {
                Diagnostic::new(Code::CR027, format!("secret `{name}`: environment variable `{var}` is not set"))
                    .hint(format!("export {var}=... before running, or read the secret from a file"))
            }),
            SecretSpec::File(path) => {
                fs_err::read_to_string(path).map(|text| text.trim_end_matches(['\n', '\r']).to_string()).map_err(|e| {
                    Diagnostic::new(
                        Code::CR027,
                        format!("secret `{name}`: cannot read `{}`: {}", path.display(), e.kind()),
                    )
                    .hint("check the path and its permissions")
                })
            }
        }
    }
}

/// Checks `[secrets]`: each entry names exactly one source.
pub(crate) fn resolve_secrets(
    manifest: &Manifest,
    base_dir: &Path,
    here: &dyn Fn(std::ops::Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> BTreeMap<String, SecretSpec> {
    let mut secrets = BTreeMap::new();
    for (name, source) in &manifest.secrets {
        let at = here(name.span());
        let spec = match (&source.get_ref().env, &source.get_ref().file) {
            (Some(env), None) if crate::plan::command::check_env_name(env).is_ok() => SecretSpec::Env(env.clone()),
            (None, Some(file)) => SecretSpec::File(match (file.strip_prefix("~/"), std::env::var_os("HOME")) {
                (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
                _ => base_dir.join(file),
            }),
            (Some(env), None) => {
                diags.push(
                    Diagnostic::new(
                        Code::CR027,
                        format!("secret `{}`: `{env}` is not an environment variable name", name.get_ref()),
                    )
                    .at(at)
                    .hint("use letters, digits and `_`"),
                );
                continue;
            }
            _ => {
                diags.push(
                    Diagnostic::new(
                        Code::CR027,
                        format!("secret `{}` must name exactly one of `env` and `file`", name.get_ref()),
                    )
                    .at(at)
                    .hint("write `{ env = \"VARIABLE\" }` or `{ file = \"path\" }`"),
                );
                continue;
            }
        };
        secrets.insert(name.get_ref().0.clone(), spec);
    }
    secrets
}

/// Whether secret `name`, which step `id` uses at `at`, is declared; a
/// `CR027` diagnostic (with the nearest name) when it is not.
pub(crate) fn known(
    id: &str,
    name: &str,
    at: Location,
    secrets: &BTreeMap<String, SecretSpec>,
    diags: &mut Diagnostics,
) -> bool {
    if secrets.contains_key(name) {
        return true;
    }
    let hint = match crate::diag::suggest(name, secrets.keys().map(String::as_str)) {
        Some(near) => format!("did you mean `{near}`?"),
        None => format!("declare it: [secrets] {name} = {{ env = \"VARIABLE\" }}"),
    };
    diags.push(
        Diagnostic::new(Code::CR027, format!("step `{id}` uses secret `{name}`, which [secrets] does not define"))
            .at(at)
            .hint(hint),
    );
    false
}

/// The secrets step `d` gets as environment variables: its `secrets`, each
/// declared. A native program gets them through its jail spec, which reaches
/// the helper over a pipe, never on a command line other users can read.
pub(crate) fn resolve_step(
    d: &Declared,
    secrets: &BTreeMap<String, SecretSpec>,
    here: &dyn Fn(Range<usize>) -> Location,
    diags: &mut Diagnostics,
) -> Vec<String> {
    let id = &d.id.get_ref().0;
    d.table
        .secrets
        .iter()
        .filter(|s| known(id, s.get_ref(), here(s.span()), secrets, diags))
        .map(|s| s.get_ref().clone())
        .collect()
}

/// What `--dry-run` says of a step's secrets (names only, never values).
pub fn describe(grant: &super::Grant) -> Vec<String> {
    if grant.secret_env.is_empty() {
        return Vec::new();
    }
    vec![format!("secrets as env: {}", grant.secret_env.join(", "))]
}
