//! Tries to change each configured path: create-or-append, truncate, create a new file inside (for a directory), remove. Reports every attempt as an error finding, ruled `succeeded` for every change that worked, `denied` for every one refused.

wit_bindgen::generate!({ path: "../../../wit", world: "check" });

use probe_common::targets;
use std::io::Write;

probe_common::define_verdict!();

fn append(path: &str) -> Result<String, std::io::Error> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(b"written by write_probe\n")?;
    Ok("appended".into())
}

fn truncate(path: &str) -> Result<String, std::io::Error> {
    std::fs::OpenOptions::new().write(true).truncate(true).open(path)?;
    Ok("truncated".into())
}

fn create_inside(path: &str) -> Result<String, std::io::Error> {
    std::fs::write(format!("{}/planted-by-probe", path.trim_end_matches('/')), b"x")?;
    Ok("created a file inside".into())
}

fn remove(path: &str) -> Result<String, std::io::Error> {
    if std::fs::metadata(path)?.is_dir() {
        std::fs::remove_dir_all(path)?;
    } else {
        std::fs::remove_file(path)?;
    }
    Ok("removed".into())
}

struct WriteProbe;

impl Guest for WriteProbe {
    fn check(invocation: Invocation) -> Result<Vec<Finding>, String> {
        let targets = targets(&invocation.config)?;
        let mut findings = Vec::new();
        for path in &targets {
            if std::fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false) {
                findings.push(verdict(path, "create inside", create_inside(path)));
            } else {
                findings.push(verdict(path, "truncate", truncate(path)));
                findings.push(verdict(path, "append", append(path)));
            }
            findings.push(verdict(path, "remove", remove(path)));
        }
        Ok(findings)
    }
}

export!(WriteProbe);
