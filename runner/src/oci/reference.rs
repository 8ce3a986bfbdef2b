//! OCI references (`registry/repository:tag@sha256:digest`), parsed
//! strictly: every part that later becomes a URL path is checked against
//! the distribution spec's grammar, so no reference can climb (`..`), add
//! a query or name another host.

use std::fmt;

/// A parsed reference. At least one of `tag` and `digest` is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`, e.g. `ghcr.io` or `localhost:5000`.
    pub registry: String,
    /// The repository path, e.g. `evals/password-reset`.
    pub repository: String,
    /// `1.2.0`, when given.
    pub tag: Option<String>,
    /// `sha256:<64 hex>`, the manifest's digest, when given: a pin.
    pub digest: Option<String>,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl Reference {
    /// Parses `text`.
    ///
    /// # Errors
    /// A sentence saying which part is wrong and what a valid one looks like.
    pub fn parse(text: &str) -> Result<Reference, String> {
        let example = "e.g. `localhost:5000/evals/holdout:1.0.0` or `ghcr.io/org/fmt@sha256:<64 hex digits>`";
        if text.is_empty() || text.len() > 1024 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("`{}` is not an OCI reference ({example})", text.escape_debug()));
        }
        let (rest, digest) = match text.rsplit_once('@') {
            Some((rest, digest)) => (rest, Some(parse_digest(digest)?)),
            None => (text, None),
        };
        let Some((registry, path)) = rest.split_once('/') else {
            return Err(format!("`{text}` names no registry: it needs `host[:port]/repository` ({example})"));
        };
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(format!(
                "`{text}` does not start with a registry host (`{registry}` has no `.` or port): write the registry out, {example}"
            ));
        }
        check_registry(registry).map_err(|why| format!("`{text}`: registry `{registry}` {why}"))?;
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) => (repository, Some(tag)),
            None => (path, None),
        };
        check_repository(repository).map_err(|why| format!("`{text}`: repository `{repository}` {why}"))?;
        if let Some(tag) = tag {
            check_tag(tag).map_err(|why| format!("`{text}`: tag `{tag}` {why}"))?;
        }
        if tag.is_none() && digest.is_none() {
            return Err(format!("`{text}` has neither a tag nor a digest: add `:TAG` or `@sha256:...` ({example})"));
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The tag if there is one, else the digest: what the manifest URL names
    /// when resolving a tag. A pinned digest is used only by [`Self::pinned`].
    pub fn tag_or_digest(&self) -> &str {
        self.tag.as_deref().or(self.digest.as_deref()).unwrap_or_default()
    }

    /// The same repository at `digest` (the form a lock or a pull prints).
    pub fn pinned(&self, digest: &str) -> Reference {
        Reference { digest: Some(digest.to_string()), ..self.clone() }
    }

    /// The reference without its digest (the tag alone), to compare a
    /// pipeline's reference with a lock's.
    pub fn unpinned(&self) -> String {
        Reference { digest: None, ..self.clone() }.to_string()
    }

    /// Whether the registry is on this machine (`localhost`, `127.0.0.0/8`,
    /// `[::1]`): the only registries spoken to over plain HTTP.
    pub fn is_loopback(&self) -> bool {
        is_loopback(&self.registry)
    }

    /// `http://host:port` for a loopback registry, `https://host[:port]` otherwise.
    pub fn base_url(&self) -> String {
        let scheme = if self.is_loopback() { "http" } else { "https" };
        format!("{scheme}://{}", self.registry)
    }
}

/// Whether `registry` (`host[:port]`) is on this machine.
pub fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `host` of `host[:port]` (an IPv6 literal keeps its brackets).
pub fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry.split_once(']').map_or(registry, |(host, _)| &registry[..=host.len()]);
    }
    registry.split_once(':').map_or(registry, |(host, _)| host)
}

/// `sha256:<64 lowercase hex>`, the only digest algorithm accepted.
///
/// # Errors
/// What is wrong with it.
pub fn parse_digest(text: &str) -> Result<String, String> {
    match text.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => {
            Ok(text.to_string())
        }
        Some(_) => Err(format!("`{text}` is not a sha256 digest: it needs 64 lowercase hex digits after `sha256:`")),
        None => Err(format!("digest `{text}` is not `sha256:<64 hex digits>` (the only algorithm accepted)")),
    }
}

fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = if registry.starts_with('[') {
        let (host, rest) = registry.split_once(']').ok_or("has an unclosed `[`")?;
        (&host[1..], rest.strip_prefix(':'))
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':')
        && !host.starts_with(['.', '-']);
    if !host_ok {
        return Err("is not a host name".into());
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("has a bad port `{port}`"));
        }
    }
    Ok(())
}

/// The distribution spec's `name`: `/`-separated components of lowercase
/// letters and digits joined by `.`, `_`, `__` or runs of `-`.
fn check_repository(repository: &str) -> Result<(), String> {
    let rule = "must be lowercase letters and digits, joined by `.`, `_`, `__` or `-`, in `/`-separated parts";
    if repository.is_empty() || repository.len() > 255 {
        return Err(rule.into());
    }
    for part in repository.split('/') {
        let bytes = part.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
            return Err(rule.into());
        }
        let mut i = 0;
        while i < bytes.len() {
            if alnum(bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && !alnum(bytes[i]) {
                i += 1;
            }
            let sep = &part[start..i];
            if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
                return Err(rule.into());
            }
        }
    }
    Ok(())
}

/// The spec's tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err("must be letters, digits, `_`, `.` and `-` (up to 128), not starting with `.` or `-`".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_parse_into_registry_repository_tag_and_digest() {
        let r = Reference::parse("localhost:5000/evals/holdout:1.2.0").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("localhost:5000", "evals/holdout", Some("1.2.0"))
        );
        assert!(r.is_loopback());
        assert_eq!(r.base_url(), "http://localhost:5000");
        let r = Reference::parse(&format!("ghcr.io/org/fmt@{D}")).unwrap();
        assert_eq!((r.tag.as_deref(), r.digest.as_deref()), (None, Some(D)));
        assert_eq!(r.base_url(), "https://ghcr.io");
        let r = Reference::parse(&format!("127.0.0.1:5000/a/b:v1@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/a/b:v1@{D}"));
        assert_eq!(r.unpinned(), "127.0.0.1:5000/a/b:v1");
        assert!(Reference::parse("[::1]:5000/a:v").unwrap().is_loopback());
        assert!(!Reference::parse("registry.example.com/a:v").unwrap().is_loopback());
    }

    #[test]
    fn references_that_could_climb_or_name_another_place_are_refused() {
        for bad in [
            "",
            "holdout:1.0",
            "docker.io",
            "localhost:5000/../etc:1",
            "localhost:5000/a/./b:1",
            "localhost:5000/A:1",
            "localhost:5000/a?x=1:1",
            "localhost:5000/a#b:1",
            "localhost:5000/a",
            "localhost:5000/a:",
            "localhost:5000/a:.hidden",
            "localhost:5000/a@sha256:abc",
            "localhost:5000/a@md5:0123",
            "localhost:99999/a:1",
            "local host:5000/a:1",
            "evil.com\\@x/a:1",
            "localhost:5000//a:1",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
