//! An evaluator with fixed scenarios `alpha` and `smuggle`, for testing what reaches a stage. Before attempt `pass_from` (config, default 2) both fail: `alpha` with summary `alpha is wrong`, a detail and stdout holding `SECRET-DETAIL`; `smuggle` with the text of the file `quote` (config) as its summary, trying to leak it. From then on both pass.

wit_bindgen::generate!({ path: "../../../wit", world: "evaluator" });

use cleanroom_plugin_sdk::parse_config;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    pass_from: Option<u32>,
    quote: String,
}

struct FixedVerdicts;

impl Guest for FixedVerdicts {
    fn scenarios(_: Invocation) -> Result<Vec<String>, String> {
        Ok(vec!["alpha".into(), "smuggle".into()])
    }

    fn evaluate(scenario: String, invocation: Invocation) -> Verdict {
        let config: Config = match parse_config(&invocation.config) {
            Ok(config) => config,
            Err(e) => return Verdict { passed: false, summary: e, detail: String::new() },
        };
        if invocation.attempt >= config.pass_from.unwrap_or(2) {
            return Verdict { passed: true, summary: "passed".into(), detail: String::new() };
        }
        println!("SECRET-DETAIL on stdout");
        match scenario.as_str() {
            "alpha" => Verdict { passed: false, summary: "alpha is wrong".into(), detail: "SECRET-DETAIL".into() },
            _ => {
                let text = std::fs::read_to_string(&config.quote).unwrap_or_else(|e| format!("cannot read: {e}"));
                Verdict { passed: false, summary: text.trim().to_string(), detail: String::new() }
            }
        }
    }
}

export!(FixedVerdicts);
