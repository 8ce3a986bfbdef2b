//! The filesystem side of `apply-patch`: reading originals, resetting the
//! target directory to a copy of `base`, and writing a finished plan.
//!
//! Only regular files and directories are copied; symbolic links and other
//! special files in `base` are skipped.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use crate::apply::{Change, Plan};

/// Reads `root/rel`; `Ok(None)` when it does not exist.
pub fn read_optional(root: &str, rel: &str) -> Result<Option<Vec<u8>>, String> {
    let path = Path::new(root).join(rel);
    match fs::read(&path) {
        Ok(content) => Ok(Some(content)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read `{}`: {e}", path.display())),
    }
}

/// Empties `target` (the directory itself stays: it is a mount) and copies
/// every file and directory of `base` into it.
pub fn reset(target: &str, base: &str) -> Result<(), String> {
    let entries = fs::read_dir(target).map_err(|e| format!("cannot list `target` `{target}`: {e}"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list `target` `{target}`: {e}"))?;
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let removed = if is_dir { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        removed.map_err(|e| format!("cannot clear `{}` before copying `base`: {e}", path.display()))?;
    }
    copy_dir(Path::new(base), Path::new(target))
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    let entries = fs::read_dir(from).map_err(|e| format!("cannot list `{}`: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list `{}`: {e}", from.display()))?;
        let Ok(kind) = entry.file_type() else { continue };
        let dest = to.join(entry.file_name());
        if kind.is_dir() {
            fs::create_dir(&dest).map_err(|e| format!("cannot create `{}`: {e}", dest.display()))?;
            copy_dir(&entry.path(), &dest)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &dest).map_err(|e| format!("cannot copy to `{}`: {e}", dest.display()))?;
        }
    }
    Ok(())
}

/// Writes every change of `plan` below `target`, creating directories as needed.
pub fn write(target: &str, plan: &Plan) -> Result<(), String> {
    for (rel, change) in plan {
        let path = Path::new(target).join(rel);
        match change {
            Change::Write(content) => {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
                }
                fs::write(&path, content).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
            }
            Change::Delete => match fs::remove_file(&path) {
                // Created and deleted again by the same patch.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                other => other.map_err(|e| format!("cannot delete `{}`: {e}", path.display()))?,
            },
        }
    }
    Ok(())
}
