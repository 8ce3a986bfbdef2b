//! Keeping the cache directory under its size cap, least recently used first.
//!
//! The cache holds five kinds of entries, and eviction deletes nothing
//! else: precompiled plugins (top-level files named as
//! [`is_precompiled_name`] says), step results and remembered verdicts
//! (every file under `results/`), the files cached stages wrote (every file
//! under `blobs/`), steps' persistent build directories (each
//! `dirs/<entry>`, one unit with everything in it) and plugins pulled from
//! registries with their manifests and tag records (every file under
//! `oci/`; an evicted one is pulled again when next needed). A unit's last use is its
//! mtime: the runner sets it when it writes an entry and again on every hit
//! ([`super::touch`]); a build directory's is the mtime of `dirs/<entry>`
//! itself.
//!
//! Blobs are touched with the result that lists them, so the two age
//! together; but a blob may be shared by several results and is not deleted
//! with one: when a result is evicted, its blobs stay until they are
//! themselves the least recently used. That is acceptable: an orphaned blob
//! is only space, never read without an authenticated result naming it.
//!
//! The cap is the `max-size` file in the cache directory
//! (`cleanroom cache max-size SIZE`), [`DEFAULT_MAX_SIZE`] when not set. Over
//! it, units go oldest first until the cache holds at most 90% of the cap,
//! so a cache hovering near the cap is not trimmed after every run. Under
//! it, eviction costs one pass of metadata (no file is opened) and deletes
//! nothing.
//!
//! Symlinks are never followed: one under `results/`, `blobs/` or `dirs/` is
//! a unit removed itself, never its target, and one in the top level is not
//! a unit. Spared always: everything else in the cache directory (the
//! `max-size` file, a worker's directory, files of unknown names), and
//! temporary files younger than an hour, which a concurrent writer may be
//! about to rename into place; older ones are leftovers of a writer that
//! died and go like any other unit of their kind. A unit that cannot be
//! deleted is skipped, not an error.

use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{dirs_dir, is_precompiled_name, is_precompiled_stem, is_private, read_private, write_atomic};
use crate::manifest::units::{human_size, ByteSize};

/// The cap when `max-size` is not set: 2 GiB, room for many plugins and
/// results and a few build directories without filling a laptop's disk.
pub const DEFAULT_MAX_SIZE: u64 = 2 << 30;

/// The file in the cache directory that holds the cap, as the size was
/// given (`5GiB`); written whole by `cleanroom cache max-size SIZE`.
pub const MAX_SIZE_FILE: &str = "max-size";

/// How long a temporary file is left alone: a writer may be renaming it.
const TEMPORARY_GRACE: Duration = Duration::from_secs(60 * 60);

/// What one eviction deleted, to report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Units deleted: files, and each build directory counted once.
    pub files: u64,
    /// Bytes they held (a build directory's whole contents).
    pub bytes: u64,
}

/// How many units of one kind the cache holds and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Units: files, or build directories counted once each.
    pub count: u64,
    /// Their total size in bytes (a build directory's whole contents).
    pub bytes: u64,
}

/// The cache's contents per kind, exactly as eviction counts them, for
/// `cleanroom cache size`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Precompiled plugins (top level).
    pub plugins: Tally,
    /// Step results and remembered verdicts (`results/`).
    pub results: Tally,
    /// Files cached stages wrote (`blobs/`).
    pub blobs: Tally,
    /// Persistent build directories (`dirs/<entry>`).
    pub build_dirs: Tally,
    /// Plugins pulled from registries, their manifests and tag records (`oci/`).
    pub pulled: Tally,
}

impl Usage {
    /// Bytes of all five kinds: what the cap is compared with.
    pub fn total(&self) -> u64 {
        [self.plugins, self.results, self.blobs, self.build_dirs, self.pulled]
            .iter()
            .map(|t| t.bytes)
            .fold(0, u64::saturating_add)
    }
}

/// The five kinds of cache entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plugin,
    Result,
    Blob,
    BuildDir,
    Pulled,
}

/// One thing eviction may delete.
#[derive(Debug)]
struct Unit {
    path: PathBuf,
    kind: Kind,
    bytes: u64,
    /// Last use: the mtime of the file, or of `dirs/<entry>` itself.
    used: SystemTime,
    /// A build directory, deleted with everything in it.
    directory: bool,
}

impl Unit {
    fn new(path: PathBuf, kind: Kind, meta: &Metadata, bytes: u64) -> Unit {
        Unit { path, kind, bytes, used: modified(meta), directory: meta.is_dir() }
    }

    /// Deletes it (a symlink itself, never its target); false when it cannot be.
    fn remove(&self) -> bool {
        let removed = if self.directory { fs_err::remove_dir_all(&self.path) } else { fs_err::remove_file(&self.path) };
        removed.map_err(|e| tracing::debug!("cache eviction skipped an entry: {e}")).is_ok()
    }
}

/// Keeps the cache directory `cache` under its cap (`max-size`, else
/// [`DEFAULT_MAX_SIZE`]): see [`enforce_to`]. Called once a run has stored
/// its results, so the cache cannot grow without bound.
pub fn enforce(cache: &Path) -> Evicted {
    enforce_to(cache, max_size(cache))
}

/// When the units in `cache` hold more than `max` bytes, deletes them least
/// recently used first until they hold at most 90% of `max`; under `max`,
/// only reads metadata. Nothing happens when `cache` is not a directory
/// private to this user. Deletion errors skip the unit.
pub fn enforce_to(cache: &Path, max: u64) -> Evicted {
    let mut units = units(cache, SystemTime::now());
    let mut total = units.iter().map(|u| u.bytes).fold(0, u64::saturating_add);
    let mut evicted = Evicted::default();
    if total <= max {
        return evicted;
    }
    let target = low_water(max);
    // Oldest first; the path breaks ties so the order never depends on the listing.
    units.sort_by(|a, b| a.used.cmp(&b.used).then_with(|| a.path.cmp(&b.path)));
    for unit in &units {
        if total <= target {
            break;
        }
        if unit.remove() {
            evicted.files += 1;
            evicted.bytes = evicted.bytes.saturating_add(unit.bytes);
            total = total.saturating_sub(unit.bytes);
        }
    }
    evicted
}

/// What the cache holds per kind, counted as [`enforce_to`] counts it.
pub fn contents(cache: &Path) -> Usage {
    let mut usage = Usage::default();
    for unit in units(cache, SystemTime::now()) {
        let tally = match unit.kind {
            Kind::Plugin => &mut usage.plugins,
            Kind::Result => &mut usage.results,
            Kind::Blob => &mut usage.blobs,
            Kind::BuildDir => &mut usage.build_dirs,
            Kind::Pulled => &mut usage.pulled,
        };
        tally.count += 1;
        tally.bytes = tally.bytes.saturating_add(unit.bytes);
    }
    usage
}

/// The cap set in `cache`'s `max-size` file; `None` when it is not set (or
/// cannot be used: a file that is not a private regular file, or does not
/// hold a size, which is also logged as a warning), meaning
/// [`DEFAULT_MAX_SIZE`].
pub fn configured_max_size(cache: &Path) -> Option<u64> {
    let file = cache.join(MAX_SIZE_FILE);
    let bytes = read_private(&file)?;
    parse_size(&String::from_utf8_lossy(&bytes))
        .map_err(|reason| {
            tracing::warn!(
                "`{}`: {reason}; using the default max-size, {}: set it with `cleanroom cache max-size SIZE`",
                file.display(),
                human_size(DEFAULT_MAX_SIZE)
            );
        })
        .ok()
}

/// The cap of the cache `cache`: its `max-size`, else [`DEFAULT_MAX_SIZE`].
pub fn max_size(cache: &Path) -> u64 {
    configured_max_size(cache).unwrap_or(DEFAULT_MAX_SIZE)
}

/// Sets the cap of the cache `cache` (`Some`: written whole to `max-size`
/// as an exact size such as `5GiB`), or restores the default (`None`:
/// `max-size` is deleted, so a later default applies). Does not evict:
/// call [`enforce_to`] for a lower cap to take effect at once.
///
/// # Errors
/// The I/O error, with the file named.
pub fn set_max_size(cache: &Path, max: Option<u64>) -> std::io::Result<()> {
    let file = cache.join(MAX_SIZE_FILE);
    match max {
        Some(max) => write_atomic(&file, format!("{}\n", ByteSize(max)).as_bytes()),
        None => match fs_err::remove_file(&file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            removed => removed,
        },
    }
}

/// Parses a size as a pipeline's `memory = "256MiB"` takes it: `1048576`,
/// `512KiB`, `256MiB`, `5GiB` (powers of 1024) or `500KB`, `1MB`, `1GB`
/// (powers of 1000), greater than zero.
///
/// # Errors
/// A sentence saying what is wrong, with an example.
pub fn parse_size(text: &str) -> Result<u64, String> {
    ByteSize::try_from(toml::Value::String(text.trim().to_string())).map(|size| size.0)
}

/// 90% of `max`, rounded down: where eviction stops.
fn low_water(max: u64) -> u64 {
    u64::try_from(u128::from(max) * 9 / 10).unwrap_or(max)
}

/// Every unit in `cache` (none when it is not a directory private to this
/// user), with young temporary files left out.
fn units(cache: &Path, now: SystemTime) -> Vec<Unit> {
    let mut units = Vec::new();
    if !fs_err::symlink_metadata(cache).is_ok_and(|meta| meta.is_dir() && is_private(&meta)) {
        return units;
    }
    // Top level: precompiled plugins (and their leftover temporary files)
    // that are regular files; nothing else there is the cache's to delete.
    for (path, name, meta) in entries(cache) {
        let plugin = is_precompiled_name(&name) || temporary_stem(&name).is_some_and(is_precompiled_stem);
        if meta.is_file() && plugin && !young_temporary(&name, &meta, now) {
            units.push(Unit::new(path, Kind::Plugin, &meta, meta.len()));
        }
    }
    files_under(&cache.join("results"), Kind::Result, now, &mut units);
    files_under(&cache.join("blobs"), Kind::Blob, now, &mut units);
    files_under(&cache.join("oci"), Kind::Pulled, now, &mut units);
    for (path, name, meta) in entries(&dirs_dir(cache)) {
        if young_temporary(&name, &meta, now) {
            continue;
        }
        let bytes = if meta.is_dir() { tree_bytes(&path) } else { meta.len() };
        units.push(Unit::new(path, Kind::BuildDir, &meta, bytes));
    }
    units
}

/// Every file (and symlink, as itself) under `dir`, recursively, as units
/// of `kind`.
fn files_under(dir: &Path, kind: Kind, now: SystemTime, units: &mut Vec<Unit>) {
    for (path, name, meta) in entries(dir) {
        if meta.is_dir() {
            files_under(&path, kind, now, units);
        } else if !young_temporary(&name, &meta, now) {
            units.push(Unit::new(path, kind, &meta, meta.len()));
        }
    }
}

/// Bytes under `dir`, recursively; a symlink counts as itself.
fn tree_bytes(dir: &Path) -> u64 {
    entries(dir)
        .iter()
        .map(|(path, _, meta)| if meta.is_dir() { tree_bytes(path) } else { meta.len() })
        .fold(0, u64::saturating_add)
}

/// The entries of `dir`, each with its name and its own metadata (a symlink
/// is itself, never its target); nothing when `dir` is not a directory (a
/// symlink to one included) or cannot be read.
fn entries(dir: &Path) -> Vec<(PathBuf, String, Metadata)> {
    if !fs_err::symlink_metadata(dir).is_ok_and(|meta| meta.is_dir()) {
        return Vec::new();
    }
    let Ok(listing) = fs_err::read_dir(dir) else { return Vec::new() };
    listing
        .flatten()
        .filter_map(|entry| {
            // DirEntry::metadata does not follow symlinks.
            let meta = entry.metadata().ok()?;
            Some((entry.path(), entry.file_name().to_string_lossy().into_owned(), meta))
        })
        .collect()
}

/// The last modification, or the epoch (oldest) when the system has none.
fn modified(meta: &Metadata) -> SystemTime {
    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)
}

/// A temporary file (or directory) changed within the last hour (or in the future).
fn young_temporary(name: &str, meta: &Metadata, now: SystemTime) -> bool {
    is_temporary_name(name) && !now.duration_since(modified(meta)).is_ok_and(|age| age >= TEMPORARY_GRACE)
}

/// A temporary name: [`write_atomic`]'s `<name>.tmp<pid>`, or `.tmp…` as
/// the `tempfile` crate makes them.
fn is_temporary_name(name: &str) -> bool {
    name.starts_with(".tmp") || temporary_stem(name).is_some()
}

/// The name [`write_atomic`] wrote `<stem>.tmp<pid>` for, without its
/// extension: `<stem>`.
fn temporary_stem(name: &str) -> Option<&str> {
    let (stem, extension) = name.rsplit_once('.')?;
    let pid = extension.strip_prefix("tmp")?;
    pid.bytes().all(|b| b.is_ascii_digit()).then_some(stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plugin name as the compile cache writes them.
    const PLUGIN: &str = "0123456789abcdef-fedcba9876543210.cwasm";

    fn hours_ago(hours: u64) -> SystemTime {
        SystemTime::now() - Duration::from_secs(hours * 60 * 60)
    }

    /// Sets the last use of a file or directory.
    fn set_used(path: &Path, when: SystemTime) {
        fs_err::File::open(path).unwrap().set_modified(when).unwrap();
    }

    /// Writes `bytes` zero bytes to `path` (creating parents), last used `when`.
    fn file(path: &Path, bytes: usize, when: SystemTime) {
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, vec![0u8; bytes]).unwrap();
        set_used(path, when);
    }

    /// A private cache directory inside a temporary directory (kept for the test).
    fn cache() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        super::super::private_dir(&cache).unwrap();
        (root, cache)
    }

    fn exists(path: &Path) -> bool {
        fs_err::symlink_metadata(path).is_ok()
    }

    #[test]
    fn eviction_removes_the_least_recently_used_first_and_stops_at_90_percent_of_the_cap() {
        let (_root, cache) = cache();
        let oldest = cache.join(PLUGIN);
        let second = cache.join("blobs/aa11");
        let third = cache.join("results/bb22.json");
        let fourth = cache.join("results/verdicts/cc33.json");
        let newest = cache.join("blobs/dd44");
        // Written in another order than they were used.
        file(&third, 250, hours_ago(3));
        file(&newest, 250, hours_ago(1));
        file(&oldest, 250, hours_ago(5));
        file(&fourth, 250, hours_ago(2));
        file(&second, 250, hours_ago(4));
        // 1250 bytes over a cap of 1000: down to 900 at most, so two go.
        assert_eq!(enforce_to(&cache, 1000), Evicted { files: 2, bytes: 500 });
        assert!(!exists(&oldest) && !exists(&second));
        assert!(exists(&third) && exists(&fourth) && exists(&newest));
        assert_eq!(contents(&cache).total(), 750);
    }

    #[test]
    fn a_hit_makes_an_entry_the_last_to_be_evicted() {
        let (_root, cache) = cache();
        let hit = cache.join("results/hit.json");
        let missed = cache.join("results/missed.json");
        file(&hit, 600, hours_ago(9));
        file(&missed, 600, hours_ago(1));
        super::super::touch(&hit);
        assert_eq!(enforce_to(&cache, 1000), Evicted { files: 1, bytes: 600 });
        assert!(exists(&hit) && !exists(&missed));
    }

    #[test]
    fn a_build_directory_is_evicted_whole_by_the_time_of_the_directory_itself() {
        let (_root, cache) = cache();
        let old = dirs_dir(&cache).join("build-target");
        let new = dirs_dir(&cache).join("lint-target");
        file(&old.join("debug/deps/libx.rlib"), 400, hours_ago(1));
        file(&old.join("debug/y"), 200, hours_ago(1));
        file(&new.join("z"), 300, hours_ago(20));
        // The directories' own times decide, not their files'.
        set_used(&old, hours_ago(10));
        set_used(&new, hours_ago(2));
        let build_dirs = contents(&cache).build_dirs;
        assert_eq!(build_dirs, Tally { count: 2, bytes: 900 });
        assert_eq!(enforce_to(&cache, 800), Evicted { files: 1, bytes: 600 });
        assert!(!exists(&old), "the build directory was not removed whole");
        assert!(exists(&new.join("z")));
    }

    #[test]
    fn nothing_outside_the_four_kinds_is_evicted_and_symlinks_are_not_followed() {
        let (root, cache) = cache();
        set_max_size(&cache, Some(5 << 30)).unwrap();
        set_used(&cache.join(MAX_SIZE_FILE), hours_ago(100));
        let unrelated = [
            cache.join("notes.txt"),
            cache.join("not-hex.cwasm"),
            cache.join("max-size.tmp42"),
            cache.join("worker/job/file"),
        ];
        for path in &unrelated {
            file(path, 100, hours_ago(100));
        }
        let outside_file = root.path().join("outside/secret");
        let outside_dir = root.path().join("outside/tree");
        file(&outside_file, 100, hours_ago(100));
        file(&outside_dir.join("kept"), 100, hours_ago(100));
        let link_in_results = cache.join("results/link.json");
        let link_in_dirs = dirs_dir(&cache).join("linked");
        let link_as_plugin = cache.join("ffff-0000.cwasm");
        fs_err::create_dir_all(cache.join("results")).unwrap();
        fs_err::create_dir_all(dirs_dir(&cache)).unwrap();
        fs_err::os::unix::fs::symlink(&outside_file, &link_in_results).unwrap();
        fs_err::os::unix::fs::symlink(&outside_dir, &link_in_dirs).unwrap();
        fs_err::os::unix::fs::symlink(&outside_file, &link_as_plugin).unwrap();
        let result = cache.join("results/real.json");
        file(&result, 100, hours_ago(1));

        // A cap of one byte: everything that may go, goes.
        let evicted = enforce_to(&cache, 1);
        assert_eq!(evicted.files, 3, "{evicted:?}");
        assert!(!exists(&result) && !exists(&link_in_results) && !exists(&link_in_dirs));
        assert!(exists(&cache.join(MAX_SIZE_FILE)) && max_size(&cache) == 5 << 30);
        for path in &unrelated {
            assert!(exists(path), "`{}` was evicted", path.display());
        }
        assert!(exists(&link_as_plugin), "a top-level symlink is not a plugin");
        assert_eq!(fs_err::read(&outside_file).unwrap().len(), 100);
        assert!(exists(&outside_dir.join("kept")));
    }

    #[test]
    fn under_the_cap_nothing_is_deleted_or_touched() {
        let (_root, cache) = cache();
        let paths = [cache.join(PLUGIN), cache.join("results/r.json"), cache.join("blobs/b")];
        for (hours, path) in (1..).zip(&paths) {
            file(path, 100, hours_ago(hours));
        }
        let times = |paths: &[PathBuf]| {
            paths.iter().map(|p| fs_err::metadata(p).unwrap().modified().unwrap()).collect::<Vec<_>>()
        };
        let before = times(&paths);
        assert_eq!(enforce_to(&cache, 300), Evicted::default());
        assert_eq!(times(&paths), before);
        assert_eq!(contents(&cache).total(), 300);
    }

    #[test]
    fn a_young_temporary_file_survives_eviction_but_an_old_leftover_goes() {
        let (_root, cache) = cache();
        // Just written: a writer may be about to rename them into place.
        let young = [
            cache.join("results/abc.tmp123"),
            cache.join("blobs/.tmpXyZ12"),
            cache.join("0123-abcd.tmp77"),
            dirs_dir(&cache).join(".tmpBuild/file"),
        ];
        for path in &young {
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(path, vec![0u8; 100]).unwrap();
        }
        let old = [cache.join("results/def.tmp99"), cache.join("0123-abcd.tmp78")];
        for path in &old {
            file(path, 100, hours_ago(2));
        }
        assert_eq!(enforce_to(&cache, 1), Evicted { files: 2, bytes: 200 });
        for path in &young {
            assert!(exists(path), "`{}` was evicted while young", path.display());
        }
        for path in &old {
            assert!(!exists(path), "the leftover `{}` was kept", path.display());
        }
    }

    #[test]
    fn max_size_is_read_back_and_default_restores_2_gib() {
        let (_root, cache) = cache();
        assert_eq!((configured_max_size(&cache), max_size(&cache)), (None, DEFAULT_MAX_SIZE));
        set_max_size(&cache, Some(parse_size("5GiB").unwrap())).unwrap();
        assert_eq!(configured_max_size(&cache), Some(5 << 30));
        set_max_size(&cache, None).unwrap();
        assert_eq!(max_size(&cache), 2 << 30);
        set_max_size(&cache, None).unwrap();
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        let wrong = parse_size("5 gigs").unwrap_err();
        assert!(wrong.contains("e.g."), "{wrong}");
        assert!(parse_size("0GiB").unwrap_err().contains("greater than zero"));
    }
}
