//! Reports every environment variable and argument it can see as `escaped`; a contained run sees none and reports one `denied` finding. Every finding is an error.

wit_bindgen::generate!({ path: "../../../wit", world: "check" });

use cleanroom::plugin::types::Severity;

fn escaped(message: String) -> Finding {
    Finding { rule: "escaped".into(), severity: Severity::Error, message, path: None, line: None, column: None }
}

struct EnvProbe;

impl Guest for EnvProbe {
    fn check(_: Invocation) -> Result<Vec<Finding>, String> {
        let mut findings: Vec<Finding> =
            std::env::vars().map(|(k, v)| escaped(format!("sees variable {k}={v}"))).collect();
        findings.extend(std::env::args().map(|a| escaped(format!("sees argument `{a}`"))));
        if let Ok(dir) = std::env::current_dir() {
            if std::fs::read_dir(&dir).is_ok() {
                findings.push(escaped(format!("can list its working directory {}", dir.display())));
            }
        }
        if findings.is_empty() {
            findings.push(Finding {
                rule: "denied".into(),
                severity: Severity::Error,
                message: "no environment variables, arguments or working directory are visible".into(),
                path: None,
                line: None,
                column: None,
            });
        }
        Ok(findings)
    }
}

export!(EnvProbe);
