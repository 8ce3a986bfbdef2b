//! The per-user secret key that authenticates what the runner reads back.
//!
//! Journals (`.cleanroom/runs/*/events.jsonl`), precompiled plugins and
//! cached step results all live where someone other than the runner may
//! write: the workspace is the coding stage's playground, and a jailed
//! native stage may run as the same user (even root) as the runner, so file
//! ownership proves nothing. What the runner wrote itself is recognised by
//! an HMAC-SHA256 tag under a key only the runner can read: 32 random bytes
//! in `key`, in a private state directory (`CLEANROOM_STATE_DIR`, else
//! `$XDG_STATE_HOME/cleanroom`, else `~/.local/state/cleanroom`; mode 0700,
//! the file 0600). A run refuses to start ([`for_run`]) when that directory
//! — or the cache directory — lies inside the workspace or under any path a
//! step is granted, since a step that can read the key can forge anything.
//! The state directory also holds each run's *head* (see
//! [`crate::journal`]), so it is where the runner remembers what it did.

use std::io::{ErrorKind, Read, Write};

use fs_err::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Environment variable naming the state directory.
pub const STATE_DIR_VAR: &str = "CLEANROOM_STATE_DIR";

/// The key file's name in the state directory.
const KEY_FILE: &str = "key";

/// Key length in bytes.
const KEY_LEN: usize = 32;

/// The state directory this process would use, from the environment;
/// `None` when neither the variable nor `XDG_STATE_HOME` nor `HOME` is set.
pub fn state_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(STATE_DIR_VAR).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    if let Some(xdg) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(xdg).join("cleanroom"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local").join("state").join("cleanroom"))
}

/// The runner's secret key, and the private directory it lives in.
///
/// `Debug` never shows the bytes: the key must not reach a log line.
#[derive(Clone)]
pub struct Key {
    bytes: [u8; KEY_LEN],
    dir: PathBuf,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Key {
    /// The key of the state directory this process would use
    /// ([`state_dir`]), created on first use.
    ///
    /// # Errors
    /// A sentence naming the directory or file and what is wrong.
    pub fn load() -> Result<Key, String> {
        let dir = state_dir().ok_or_else(|| {
            format!("no state directory for the runner's key: set {STATE_DIR_VAR}, XDG_STATE_HOME or HOME")
        })?;
        Key::load_from(&dir)
    }

    /// The key in `dir`, created (with `dir`, mode 0700) if missing.
    ///
    /// Creation is atomic and safe against a concurrent creator: the
    /// random bytes are written and synced under a temporary name, then
    /// hard-linked to `key`, which fails if another process got there
    /// first; then that process's key is read. Nobody ever sees a partly
    /// written key.
    ///
    /// # Errors
    /// A sentence naming the directory or file and what is wrong: not
    /// private to this user, not a regular file, not 32 bytes, unreadable.
    pub fn load_from(dir: &Path) -> Result<Key, String> {
        crate::cache::private_dir_for(dir, "state directory")?;
        let file = dir.join(KEY_FILE);
        for _ in 0..3 {
            match read_key(&file) {
                Ok(bytes) => return Ok(Key { bytes, dir: dir.to_path_buf() }),
                Err(e) if e.kind() == ErrorKind::NotFound => create_key(&file)?,
                Err(e) => return Err(format!("cannot use the runner's key `{}`: {e}", file.display())),
            }
        }
        Err(format!("cannot create the runner's key `{}`", file.display()))
    }

    /// A key from raw bytes (tests).
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN], dir: &Path) -> Key {
        Key { bytes, dir: dir.to_path_buf() }
    }

    /// The private directory the key lives in (run heads live there too).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// HMAC-SHA256 of `parts`, each prefixed with its length (8 bytes, big
    /// endian), so that no two lists of parts give the same message. Every
    /// caller starts with a label naming what is tagged ("cleanroom journal
    /// v1", ...) so a tag of one kind never verifies as another.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // The parts are hashed where they lie (a compiled plugin is
        // megabytes): only the length prefixes are made here.
        let lengths: Vec<[u8; 8]> = parts.iter().map(|p| (p.len() as u64).to_be_bytes()).collect();
        let message: Vec<&[u8]> = lengths.iter().zip(parts).flat_map(|(len, part)| [len.as_slice(), part]).collect();
        hmac_sha256(&self.bytes, &message)
    }

    /// Whether `tag` is [`Key::mac`] of `parts`, compared in constant time.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        constant_time_eq(&self.mac(parts), tag)
    }

    /// `payload` behind its tag, as a line of hex ([`Key::mac`] of
    /// `label`, `name` and the payload): how the caches store what only
    /// this runner may have written (a text payload stays text).
    /// [`Key::unseal`] gives the payload back.
    pub fn seal(&self, label: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
        let mut sealed = to_hex(&self.mac(&[label, name.as_bytes(), payload])).into_bytes();
        sealed.push(b'\n');
        sealed.extend_from_slice(payload);
        sealed
    }

    /// The payload of `sealed` when its tag verifies for `label` and
    /// `name` (so a sealed file moved under another name does not), else
    /// `None`.
    pub fn unseal<'s>(&self, label: &[u8], name: &str, sealed: &'s [u8]) -> Option<&'s [u8]> {
        let (tag, payload) = sealed.split_at_checked(SEAL_HEADER)?;
        let tag = std::str::from_utf8(tag.strip_suffix(b"\n")?).ok().and_then(from_hex)?;
        self.verify(&[label, name.as_bytes(), payload], &tag).then_some(payload)
    }
}

/// Reads the key file: a regular file, private to this user, of 32 bytes.
fn read_key(file: &Path) -> std::io::Result<[u8; KEY_LEN]> {
    let meta = fs_err::symlink_metadata(file)?;
    if !meta.is_file() || !crate::cache::is_private(&meta) {
        return Err(std::io::Error::other("it is not a regular file owned by this user alone (mode 0600)"));
    }
    let bytes = fs_err::read(file)?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        std::io::Error::other(format!("it holds {} bytes, not {KEY_LEN}: delete it to make a new key", b.len()))
    })
}

/// Bytes in front of a sealed payload: the tag in hex and a newline.
const SEAL_HEADER: usize = 2 * 32 + 1;

/// `N` bytes from the kernel's random source.
///
/// # Errors
/// When `/dev/urandom` cannot be read.
pub fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    fs_err::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes))?;
    Ok(bytes)
}

/// Writes 32 fresh random bytes to `file` unless it exists.
fn create_key(file: &Path) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot create the runner's key `{}`: {e}", file.display());
    let bytes = random_bytes::<{ KEY_LEN + 8 }>().map_err(fail)?;
    let (key, nonce) = bytes.split_at(KEY_LEN);
    // A name no other creator (process or thread) uses.
    let temporary = file.with_extension(format!("new-{}-{}", std::process::id(), to_hex(nonce)));
    let written = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut out| out.write_all(key).and_then(|()| out.sync_all()));
    if let Err(e) = written {
        let _ = fs_err::remove_file(&temporary);
        return Err(fail(e));
    }
    let linked = fs_err::hard_link(&temporary, file);
    let _ = fs_err::remove_file(&temporary);
    match linked {
        Ok(()) => fs_err::File::open(file.parent().unwrap_or(Path::new("."))).and_then(|d| d.sync_all()).map_err(fail),
        // Another process created it first: use theirs.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(fail(e)),
    }
}

/// HMAC-SHA256 (RFC 2104) of the concatenation of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in message {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lowercase hex of a tag.
pub fn to_hex(bytes: &[u8]) -> String {
    crate::plugin::hex(bytes)
}

/// The bytes of a lowercase hex string; `None` unless it is exactly that.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    text.as_bytes().chunks(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

/// `path` with symlinks resolved as far as it exists (the rest appended),
/// so that a directory not created yet is still compared by where it will be.
pub fn resolve(path: &Path) -> PathBuf {
    let absolute =
        if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(path) };
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = fs_err::canonicalize(existing) {
            return rest.iter().rev().fold(real, |acc: PathBuf, part| acc.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            // `..` or the root: give up resolving, compare it lexically.
            _ => return lexical(&absolute),
        }
    }
}

/// `path` with `.` and `..` removed without looking at the disk.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        let tag = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(to_hex(&tag), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // Test case 6: a key longer than the block.
        let tag = hmac_sha256(&[0xaa; 131], &[b"Test Using Larger Than Block-Size Key - Hash Key First"]);
        assert_eq!(to_hex(&tag), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    #[test]
    fn parts_are_unambiguous_and_verified_in_constant_time() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::from_bytes([7; 32], dir.path());
        let tag = key.mac(&[b"ab", b"c"]);
        assert_ne!(tag, key.mac(&[b"a", b"bc"]));
        assert!(key.verify(&[b"ab", b"c"], &tag));
        assert!(!key.verify(&[b"ab", b"c"], &tag[..31]));
        assert!(!Key::from_bytes([8; 32], dir.path()).verify(&[b"ab", b"c"], &tag));
        assert_eq!(from_hex(&to_hex(&tag)).as_deref(), Some(&tag[..]));
        assert_eq!(from_hex("0g"), None);
        assert!(!format!("{key:?}").contains("bytes"));
    }

    #[test]
    fn the_key_is_created_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let state = state.clone();
                std::thread::spawn(move || Key::load_from(&state).unwrap().bytes)
            })
            .collect();
        let keys: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(keys.windows(2).all(|w| w[0] == w[1]), "concurrent creators disagree");
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs_err::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join(KEY_FILE)), 0o600);
        assert_eq!(Key::load_from(&state).unwrap().bytes, keys[0]);
        let leftovers: Vec<_> = fs_err::read_dir(&state).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(leftovers, [KEY_FILE]);
    }

    #[test]
    fn a_damaged_or_shared_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        Key::load_from(&state).unwrap();
        fs_err::write(state.join(KEY_FILE), b"short").unwrap();
        assert!(Key::load_from(&state).unwrap_err().contains("5 bytes"));
        use std::os::unix::fs::PermissionsExt;
        fs_err::write(state.join(KEY_FILE), [1u8; 32]).unwrap();
        fs_err::set_permissions(state.join(KEY_FILE), std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(Key::load_from(&state).unwrap_err().contains("owned by this user alone"));
    }

    #[test]
    fn resolve_follows_symlinks_of_the_existing_part() {
        let dir = tempfile::tempdir().unwrap();
        let real = fs_err::canonicalize(dir.path()).unwrap();
        fs_err::create_dir(real.join("ws")).unwrap();
        std::os::unix::fs::symlink(real.join("ws"), real.join("link")).unwrap();
        assert_eq!(resolve(&real.join("link/not/yet")), real.join("ws/not/yet"));
    }

    #[test]
    fn sealed_payloads_open_only_under_their_label_name_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::from_bytes([7; 32], dir.path());
        let sealed = key.seal(b"label", "entry", b"payload");
        assert_eq!(key.unseal(b"label", "entry", &sealed), Some(&b"payload"[..]));
        assert_eq!(key.unseal(b"label", "other", &sealed), None, "moved under another name");
        assert_eq!(key.unseal(b"other", "entry", &sealed), None, "another kind of tag");
        assert_eq!(Key::from_bytes([8; 32], dir.path()).unseal(b"label", "entry", &sealed), None);
        let mut edited = sealed.clone();
        *edited.last_mut().unwrap() ^= 1;
        assert_eq!(key.unseal(b"label", "entry", &edited), None);
        assert_eq!(key.unseal(b"label", "entry", b"payload"), None, "no tag");
    }
}
