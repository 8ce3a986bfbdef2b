//! The compile cache: components compiled once, loaded in a millisecond after.
//!
//! Compiled components are stored as `<sha256 of the .wasm>-<engine
//! hash>.cwasm` in the cache directory (`CLEANROOM_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/cleanroom`, else `~/.cache/cleanroom`). Loading a
//! precompiled file runs machine code without validating it, so only files
//! this runner wrote are ever loaded: the directory is created with mode
//! 0700, files are written to a temporary name and renamed into place, and a
//! file is loaded only if it is a regular file owned by this user and
//! writable by nobody else. The engine hash covers wasmtime's version and
//! every setting that affects code, so a cache written by another version
//! or configuration is simply missed.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::cache::{is_private, private_dir, write_atomic};
use crate::plugin::hex;

/// Where precompiled components live.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    /// Opens (creating, mode 0700) the cache at `dir`.
    ///
    /// # Errors
    /// When the directory cannot be created, or exists but is not ours alone.
    pub fn open(dir: &Path) -> Result<CompileCache, String> {
        private_dir(dir)?;
        Ok(CompileCache { dir: dir.to_path_buf() })
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
        let file = self.dir.join(format!("{sha256}-{}.cwasm", engine_hash(engine)));
        if let Some(component) = self.load(engine, &file) {
            return Ok(component);
        }
        let bytes = fs_err::read(path)?;
        let compiled = engine.precompile_component(&bytes)?;
        if let Err(e) = write_atomic(&file, &compiled) {
            tracing::warn!("cannot write to the compile cache: {e}");
            return Component::new(engine, &bytes);
        }
        self.load(engine, &file).map_or_else(|| Component::new(engine, &bytes), Ok)
    }

    #[expect(unsafe_code, reason = "deserializing precompiled code; only files this runner wrote, checked first")]
    fn load(&self, engine: &Engine, file: &Path) -> Option<Component> {
        let meta = fs_err::symlink_metadata(file).ok()?;
        if !meta.is_file() || !is_private(&meta) {
            return None;
        }
        // SAFETY: the file is a regular file in a directory only this user
        // can write, owned by this user and writable by nobody else, and was
        // written whole (temporary name + rename) by `store`; wasmtime also
        // rejects blobs of another version or configuration.
        match unsafe { Component::deserialize_file(engine, file) } {
            Ok(component) => Some(component),
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
        entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "cwasm")).collect()
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
