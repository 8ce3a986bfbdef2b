//! Writes without end into its write mount `/out`: config `mode` `big` grows one file, `many` creates files. Only the step's write quota can stop it.

wit_bindgen::generate!({ path: "../../../wit", world: "stage" });

use cleanroom_plugin_sdk::parse_config;
use std::io::Write;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    mode: String,
}

struct FileFlood;

impl Guest for FileFlood {
    fn run(invocation: Invocation) -> Result<String, String> {
        let config: Config = parse_config(&invocation.config)?;
        let chunk = vec![b'x'; 1 << 20];
        if config.mode == "big" {
            let mut file = std::fs::File::create("/out/big.bin").map_err(|e| e.to_string())?;
            loop {
                file.write_all(&chunk).map_err(|e| format!("write failed: {e}"))?;
            }
        }
        let mut n: u64 = 0;
        loop {
            std::fs::write(format!("/out/f{n}"), b"x").map_err(|e| format!("create failed after {n} files: {e}"))?;
            n += 1;
        }
    }
}

export!(FileFlood);
