//! The compile cache: components compiled once, loaded in a millisecond after.
//!
//! Compiled components are stored as `<sha256 of the .wasm>-<engine
//! hash>.cwasm` in the cache directory (`CLEANROOM_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/cleanroom`, else `~/.cache/cleanroom`). Loading a
//! precompiled file runs machine code without validating it, so only files
//! this runner wrote are ever loaded. Ownership cannot tell (a jailed stage
//! may run as the runner's user, even root), so each file starts with a
//! line with its tag in hex ([`Key::seal`]): HMAC-SHA256 under the per-user [`Key`] of a label, the
//! file's name (which names the component's sha256 and the engine) and the
//! compiled bytes. A file is read into memory, its tag verified, and only
//! those verified bytes are deserialised (never the file again, which could
//! have changed in between). A file whose tag does not verify — planted,
//! copied from another plugin's name, damaged — is deleted with a warning
//! and the component is compiled again. The directory is also created with
//! mode 0700 and files are written whole (temporary name + rename), and
//! only private regular files are read. The engine hash covers wasmtime's
//! version and every setting that affects code, so a cache written by
//! another version or configuration is simply missed. The key is loaded on
//! the first compile; without one, components are compiled every time.
//! Each load that verifies sets the file's mtime ([`touch`]): its last use,
//! by which [`crate::cache::evict`] deletes the least recently used first.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::cache::{is_precompiled_name, private_dir, read_private, touch, write_atomic};
use crate::key::Key;
use crate::plugin::hex;

/// Label of a precompiled file's tag: no other tag of the runner verifies as one.
const LABEL: &[u8] = b"cleanroom precompiled component v1";

/// Where precompiled components live.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    /// The key, loaded on first use (`None` inside when it cannot be).
    key: OnceLock<Option<Key>>,
}

impl CompileCache {
    /// Opens (creating, mode 0700) the cache at `dir`.
    ///
    /// # Errors
    /// When the directory cannot be created, or exists but is not ours alone.
    pub fn open(dir: &Path) -> Result<CompileCache, String> {
        private_dir(dir)?;
        Ok(CompileCache { dir: dir.to_path_buf(), key: OnceLock::new() })
    }

    /// As [`CompileCache::open`], tagging and verifying with `key` rather
    /// than the state directory's.
    ///
    /// # Errors
    /// When the directory cannot be created, or exists but is not ours alone.
    pub fn open_with_key(dir: &Path, key: Key) -> Result<CompileCache, String> {
        let cache = CompileCache::open(dir)?;
        let _ = cache.key.set(Some(key));
        Ok(cache)
    }

    fn key(&self) -> Option<&Key> {
        self.key
            .get_or_init(|| {
                Key::load().map_err(|reason| tracing::warn!("{reason}; compiling without the compile cache")).ok()
            })
            .as_ref()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The compiled form of the component at `path` (whose sha256 is
    /// `sha256`): loaded from the cache when present, else compiled and
    /// stored. A cache entry that does not load is replaced.
    ///
    /// # Errors
    /// wasmtime's error when the component does not compile.
    pub fn component(&self, engine: &Engine, path: &Path, sha256: &str) -> wasmtime::Result<Component> {
        let Some(key) = self.key() else { return Component::from_file(engine, path) };
        let name = format!("{sha256}-{}.cwasm", engine_hash(engine));
        let file = self.dir.join(&name);
        if let Some(component) = self.load(engine, key, &file, &name) {
            return Ok(component);
        }
        let bytes = fs_err::read(path)?;
        let compiled = engine.precompile_component(&bytes)?;
        if let Err(e) = write_atomic(&file, &key.seal(LABEL, &name, &compiled)) {
            tracing::warn!("cannot write to the compile cache: {e}");
        }
        // SAFETY: as in `load`: these are the bytes wasmtime just produced,
        // in memory; the file is not read back.
        #[expect(unsafe_code, reason = "deserializing code this process just compiled, from memory")]
        let component = unsafe { Component::deserialize(engine, &compiled) };
        component.or_else(|_| Component::new(engine, &bytes))
    }

    /// The component in `file` (named `name`) if its tag verifies; a file
    /// that does not verify, or does not load, is deleted.
    #[expect(unsafe_code, reason = "deserializing precompiled code; only bytes whose tag verified")]
    fn load(&self, engine: &Engine, key: &Key, file: &Path, name: &str) -> Option<Component> {
        let bytes = read_private(file)?;
        let Some(compiled) = key.unseal(LABEL, name, &bytes) else {
            tracing::warn!(
                "the compile cache entry `{}` was not written by this runner; deleted, compiling again",
                file.display()
            );
            let _ = fs_err::remove_file(file);
            return None;
        };
        // SAFETY: these bytes are in memory (not the file, which may have
        // changed since), and their tag verified under the runner's key:
        // this runner's `component` produced them with wasmtime's
        // precompiler for this name; wasmtime also rejects blobs of another
        // version or configuration.
        match unsafe { Component::deserialize(engine, compiled) } {
            Ok(component) => {
                // A hit: used now, so evicted last.
                touch(file);
                Some(component)
            }
            Err(_) => {
                let _ = fs_err::remove_file(file);
                None
            }
        }
    }

    /// Number of entries and their total size in bytes.
    pub fn size(&self) -> (usize, u64) {
        self.entries()
            .iter()
            .fold((0, 0), |(n, bytes), path| (n + 1, bytes + fs_err::metadata(path).map(|m| m.len()).unwrap_or(0)))
    }

    /// Deletes every entry; returns how many.
    pub fn clean(&self) -> usize {
        self.entries().iter().filter(|path| fs_err::remove_file(path).is_ok()).count()
    }

    fn entries(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs_err::read_dir(&self.dir) else { return Vec::new() };
        entries
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(is_precompiled_name))
            .map(|e| e.path())
            .collect()
    }
}

/// A stable hex digest of the engine's precompile compatibility hash.
fn engine_hash(engine: &Engine) -> String {
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Sha(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex(&hasher.0.finalize()[..16])
}
