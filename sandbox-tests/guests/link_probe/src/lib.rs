//! A stage with a read-only and a writable mount that tries to move or link files across them. Each config target is `FROM->TO`: it tries a hard link, then writing through the link, then a rename. Every attempt is an error finding ruled `succeeded` or `denied`.

wit_bindgen::generate!({ path: "../../../wit", world: "stage" });

use cleanroom::plugin::types::Finding;
use probe_common::targets;

probe_common::define_verdict!();

fn write_through(to: &str) -> Result<String, std::io::Error> {
    std::fs::OpenOptions::new().write(true).truncate(true).open(to)?;
    Ok("truncated through the link".into())
}

struct LinkProbe;

impl Guest for LinkProbe {
    fn run(invocation: Invocation) -> Result<String, String> {
        let mut findings = Vec::new();
        for target in targets(&invocation.config)? {
            let Some((from, to)) = target.split_once("->") else {
                return Err(format!("target `{target}` is not FROM->TO"));
            };
            findings.push(verdict(&target, "hard link", std::fs::hard_link(from, to).map(|()| "linked".into())));
            findings.push(verdict(&target, "write through link", write_through(to)));
            findings.push(verdict(
                &target,
                "rename",
                std::fs::rename(from, format!("{to}.renamed")).map(|()| "renamed".into()),
            ));
        }
        let summary: Vec<String> = findings.iter().map(|f| format!("{}: {}", f.rule, f.message)).collect();
        Err(summary.join(" | "))
    }
}

export!(LinkProbe);
