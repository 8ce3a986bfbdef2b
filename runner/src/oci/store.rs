//! Pulled plugins in the runner's private cache, `oci/` under the cache
//! directory ([`crate::cache`]), content-addressed:
//!
//! - `oci/blobs/sha256/<hex>`: components, each written only after its
//!   bytes hashed to its name, and hashed again whenever it is used (as it
//!   is inspected, [`super::fetch_inspected`]);
//! - `oci/manifests/sha256/<hex>`: manifests, likewise;
//! - `oci/tags/<sha256 of the reference>`: the manifest a tag named when it
//!   was last asked of the registry (`{ reference, manifest }`), which
//!   lets a run whose plugins are all cached start with no network at all.
//!   Sealed with the runner's key ([`crate::key`]), as the result cache is:
//!   a record this runner did not write (another process of the user's
//!   planting one) is ignored, and the tag is asked of the registry again.
//!   Without a key there are no tag records.
//!
//! Everything is written to a temporary name and renamed into place, and
//! only private regular files (owned by this user, writable by nobody
//! else) are read back, as everywhere in the cache.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::artifact::{digest_of, hex_part};
use super::reference::Reference;

/// What a tag record's seal names.
const TAG_LABEL: &[u8] = b"cleanroom oci tag v1";

/// The `oci/` directory of a cache.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    /// Seals tag records; `None` when the key cannot be had.
    key: Option<crate::key::Key>,
}

/// What a tag named when it was last resolved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TagRecord {
    /// The reference, without a digest.
    pub reference: String,
    /// The manifest's digest.
    pub manifest: String,
}

impl Store {
    /// The store in cache directory `cache`, created (mode 0700) if missing.
    ///
    /// # Errors
    /// A sentence when a directory cannot be created or is not private.
    pub fn open(cache: &Path) -> Result<Store, String> {
        let root = cache.join("oci");
        for dir in ["blobs/sha256", "manifests/sha256", "tags"] {
            crate::cache::private_dir(&root.join(dir))?;
        }
        let key = crate::key::Key::load()
            .map_err(|reason| tracing::warn!("{reason}; tags of pulled plugins are not remembered"))
            .ok();
        Ok(Store { root, key })
    }

    /// The store of the cache this process uses.
    ///
    /// # Errors
    /// When there is no cache directory (no `HOME`) or it is unusable.
    pub fn default_store() -> Result<Store, String> {
        let cache = crate::cache::default_dir()
            .ok_or("no cache directory for pulled plugins: set CLEANROOM_CACHE_DIR or HOME")?;
        Store::open(&cache)
    }

    /// Where component `digest` lives (whether or not it is there).
    pub fn component_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex_part(digest))
    }

    /// Whether component `digest` is in the cache: a private regular file
    /// under its name (marked as used). Its bytes are checked by whoever
    /// reads them: [`super::fetch_inspected`] hashes them as it inspects
    /// them, and [`Store::discard`]s an entry that no longer matches.
    pub fn has_component(&self, digest: &str) -> bool {
        // Only a well-formed digest names a file here (a pin such as
        // `../../x` must never become a path, let alone one deleted).
        if super::reference::parse_digest(digest).is_err() {
            return false;
        }
        let path = self.component_path(digest);
        let present = fs_err::symlink_metadata(&path).is_ok_and(|m| m.is_file() && crate::cache::is_private(&m));
        if present {
            crate::cache::touch(&path);
        }
        present
    }

    /// Deletes component `digest`, whose bytes no longer hash to its name,
    /// so that it is fetched again.
    pub fn discard(&self, digest: &str) {
        if super::reference::parse_digest(digest).is_ok() {
            tracing::warn!("cached component {digest} does not hash to its name; fetching it again");
            let _ = fs_err::remove_file(self.component_path(digest));
        }
    }

    /// A fresh temporary file name beside the components, for a download
    /// (`.tmp…`, a name eviction leaves alone while it is young).
    pub fn temporary(&self) -> PathBuf {
        self.root.join("blobs/sha256").join(format!(".tmp-download-{}-{}", std::process::id(), uuid::Uuid::new_v4()))
    }

    /// Moves a downloaded, verified `temporary` into place as `digest`.
    ///
    /// # Errors
    /// The I/O error.
    pub fn commit_component(&self, temporary: &Path, digest: &str) -> Result<PathBuf, String> {
        let path = self.component_path(digest);
        fs_err::set_permissions(temporary, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .and_then(|()| fs_err::rename(temporary, &path))
            .map_err(|e| format!("cannot store the component in the cache: {e}"))?;
        Ok(path)
    }

    /// The cached manifest `digest`, if its bytes hash to it.
    pub fn manifest(&self, digest: &str) -> Option<Vec<u8>> {
        super::reference::parse_digest(digest).ok()?;
        let bytes = crate::cache::read_private(&self.root.join("manifests/sha256").join(hex_part(digest)))?;
        (digest_of(&bytes) == digest).then_some(bytes)
    }

    /// Caches a manifest under its digest.
    ///
    /// # Errors
    /// The I/O error.
    pub fn put_manifest(&self, bytes: &[u8]) -> Result<String, String> {
        let digest = digest_of(bytes);
        crate::cache::write_atomic(&self.root.join("manifests/sha256").join(hex_part(&digest)), bytes)
            .map_err(|e| format!("cannot store the manifest in the cache: {e}"))?;
        Ok(digest)
    }

    /// What `reference`'s tag named when last resolved.
    pub fn tag(&self, reference: &Reference) -> Option<TagRecord> {
        let (path, name) = self.tag_path(reference);
        let sealed = crate::cache::read_private(&path)?;
        let payload = self.key.as_ref()?.unseal(TAG_LABEL, &name, &sealed)?;
        let record: TagRecord = serde_json::from_slice(payload).ok()?;
        (record.reference == reference.unpinned()).then_some(record)
    }

    /// Remembers that `reference`'s tag names `manifest`.
    ///
    /// # Errors
    /// The I/O error.
    pub fn put_tag(&self, reference: &Reference, manifest: &str) -> Result<(), String> {
        let Some(key) = &self.key else { return Ok(()) };
        let record = TagRecord { reference: reference.unpinned(), manifest: manifest.to_string() };
        let (path, name) = self.tag_path(reference);
        let sealed = key.seal(TAG_LABEL, &name, &serde_json::to_vec(&record).unwrap_or_default());
        crate::cache::write_atomic(&path, &sealed).map_err(|e| format!("cannot remember the tag in the cache: {e}"))
    }

    /// The tag record's file and its name (which its seal covers).
    fn tag_path(&self, reference: &Reference) -> (PathBuf, String) {
        let name = hex_part(&digest_of(reference.unpinned().as_bytes())).to_string();
        (self.root.join("tags").join(&name), name)
    }
}

/// Deletes every pulled plugin, manifest and tag record in cache directory
/// `cache` (`cleanroom cache clean`); returns how many files. They are
/// pulled again when next needed.
pub fn clean(cache: &Path) -> usize {
    let root = cache.join("oci");
    let count = count_files(&root);
    if fs_err::symlink_metadata(&root).is_ok_and(|m| m.is_dir()) && fs_err::remove_dir_all(&root).is_ok() {
        count
    } else {
        0
    }
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = fs_err::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(kind) if kind.is_dir() => count_files(&e.path()),
            _ => 1,
        })
        .sum()
}
