//! Writes 8 MiB to stdout and 8 MiB to stderr, then passes: the host must truncate, not kill it.

wit_bindgen::generate!({ path: "../../../wit", world: "check" });

use std::io::Write;

struct OutputFlood;

impl Guest for OutputFlood {
    fn check(_: Invocation) -> Result<Vec<Finding>, String> {
        let line = [b'x'; 1023];
        for _ in 0..8 * 1024 {
            std::io::stdout().write_all(&line).map_err(|e| e.to_string())?;
            std::io::stdout().write_all(b"\n").map_err(|e| e.to_string())?;
            std::io::stderr().write_all(&line).map_err(|e| e.to_string())?;
            std::io::stderr().write_all(b"\n").map_err(|e| e.to_string())?;
        }
        Ok(Vec::new())
    }
}

export!(OutputFlood);
