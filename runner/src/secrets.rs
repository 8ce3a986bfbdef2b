//! Secret values: read once when a run starts, handed only to the steps
//! granted them, and scrubbed from everything the run records.
//!
//! The plan names secrets and says where each comes from
//! ([`crate::plan::secrets::SecretSpec`]); [`Secrets::read`] reads the
//! values, refusing the run (exit 2) when one is missing or too short to
//! redact. The sandbox asks [`Secrets::value`] for a granted secret when it
//! builds a guest's environment or a request's headers. Every step report
//! has every text scrubbed ([`Secrets::scrub_in_place`]) before it is journaled, cached
//! or shown, so a guest that prints a secret it was given, or an error that
//! quotes one, shows `[secret NAME]` instead. [`Secrets`] has no `Serialize`
//! and its `Debug` shows names only.

use std::collections::BTreeMap;

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::plan::Plan;

/// Shorter values cannot be redacted without mangling ordinary text.
pub const MIN_SECRET_LEN: usize = 8;

/// The values of a run's secrets, by name.
#[derive(Default)]
pub struct Secrets {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.values.keys()).finish()
    }
}

impl Secrets {
    /// Reads every secret a step of `plan` is granted, and those its
    /// `[remote]` uses (its token, its sealing key).
    ///
    /// # Errors
    /// A `CR027` diagnostic per secret whose variable is unset, whose file
    /// cannot be read, or whose value is shorter than [`MIN_SECRET_LEN`].
    /// The messages name the secret and its source, never a value.
    pub fn read(plan: &Plan) -> Result<Secrets, Diagnostics> {
        let mut diags = Diagnostics::default();
        let mut values = BTreeMap::new();
        // Only secrets a step of this plan is granted: `run --only lint`
        // needs no API key for the agent it does not run.
        let granted: std::collections::BTreeSet<&str> = plan
            .steps
            .iter()
            .flat_map(|step| {
                let headers = step.grant.http().into_iter().flat_map(|h| h.headers.iter().map(|h| h.secret.as_str()));
                step.grant.secret_env.iter().map(String::as_str).chain(headers)
            })
            .chain(plan.remote.iter().flat_map(|r| r.token.iter().chain(&r.seal).map(String::as_str)))
            .collect();
        for (name, spec) in plan.secrets.iter().filter(|(name, _)| granted.contains(name.as_str())) {
            let value = spec.read(name);
            match value {
                Ok(value) if value.chars().count() < MIN_SECRET_LEN => diags.push(
                    Diagnostic::new(
                        Code::CR027,
                        format!(
                            "secret `{name}` is shorter than {MIN_SECRET_LEN} characters, too short to redact reliably"
                        ),
                    )
                    .hint("use the real credential; short values would be scrubbed from ordinary text"),
                ),
                Ok(value) => {
                    values.insert(name.clone(), value);
                }
                Err(diagnostic) => diags.push(diagnostic),
            }
        }
        diags.into_result(Secrets { values })
    }

    /// The value of secret `name`, if the run has it.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// `text` with every secret value replaced by `[secret NAME]`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (name, value) in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), &format!("[secret {name}]"));
            }
        }
        out
    }

    /// Whether any secret value appears in `bytes` (as is: a value that
    /// was encoded or split is not found, which is why outputs holding
    /// none is a floor, not a proof).
    pub fn appears_in(&self, bytes: &[u8]) -> bool {
        self.values.values().any(|v| !v.is_empty() && bytes.windows(v.len()).any(|w| w == v.as_bytes()))
    }

    /// Replaces every secret value in `text`, in place.
    pub fn scrub_in_place(&self, text: &mut String) {
        if !self.values.is_empty() && self.values.values().any(|v| text.contains(v.as_str())) {
            *text = self.scrub(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_replaces_every_occurrence_with_the_name() {
        let secrets = Secrets { values: BTreeMap::from([("API_KEY".to_string(), "sk-live-123456".to_string())]) };
        assert_eq!(
            secrets.scrub("key=sk-live-123456; again sk-live-123456"),
            "key=[secret API_KEY]; again [secret API_KEY]"
        );
        assert_eq!(format!("{secrets:?}"), "[\"API_KEY\"]");
    }
}
