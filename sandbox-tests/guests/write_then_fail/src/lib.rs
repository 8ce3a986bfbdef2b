//! Writes into its write mount `/out` (changes `keep.txt`, deletes `gone.txt`, creates `new.txt`), then fails as config `how` says: `error` returns an error, `panic` traps, `spin` loops until the deadline, `succeed` returns ok.

wit_bindgen::generate!({ path: "../../../wit", world: "stage" });

use cleanroom_plugin_sdk::parse_config;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    how: String,
}

struct WriteThenFail;

impl Guest for WriteThenFail {
    fn run(invocation: Invocation) -> Result<String, String> {
        let config: Config = parse_config(&invocation.config)?;
        std::fs::write("/out/keep.txt", "overwritten").map_err(|e| e.to_string())?;
        std::fs::remove_file("/out/gone.txt").map_err(|e| e.to_string())?;
        std::fs::write("/out/new.txt", "new").map_err(|e| e.to_string())?;
        match config.how.as_str() {
            "error" => Err("gave up after writing".into()),
            "panic" => panic!("crashed after writing"),
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            _ => Ok("wrote three changes".into()),
        }
    }
}

export!(WriteThenFail);
