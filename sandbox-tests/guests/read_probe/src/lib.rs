//! Tries to read each configured path (a file's bytes, or a directory's listing). Reports every attempt as an error finding, ruled `succeeded` for every read that worked, `denied` for every one refused.

wit_bindgen::generate!({ path: "../../../wit", world: "check" });

use probe_common::targets;

probe_common::define_verdict!();

fn read(path: &str) -> Result<String, std::io::Error> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        let names: Vec<String> =
            std::fs::read_dir(path)?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        Ok(format!("listed {}", names.join(",")))
    } else {
        let bytes = std::fs::read(path)?;
        Ok(format!("read {} bytes: {}", bytes.len(), String::from_utf8_lossy(&bytes)))
    }
}

struct ReadProbe;

impl Guest for ReadProbe {
    fn check(invocation: Invocation) -> Result<Vec<Finding>, String> {
        let targets = targets(&invocation.config)?;
        Ok(targets.iter().map(|p| verdict(p, "read", read(p))).collect())
    }
}

export!(ReadProbe);
