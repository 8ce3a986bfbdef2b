//! `cleanroom plugin inspect | new | test`.

use super::{fail, out, InspectFormat, KindArg, Output, PluginAction, EXIT_FAILED, EXIT_OK};
use crate::exec::RunOptions;
use crate::report;

pub(super) fn plugin(action: PluginAction, output: Output) -> i32 {
    match action {
        PluginAction::Inspect { file, format } => match crate::plugin::inspect(&file) {
            Ok(info) => {
                out(&match format {
                    InspectFormat::Human => inspect_text(&info),
                    InspectFormat::Json => {
                        let mut text = serde_json::to_string_pretty(&info).unwrap_or_default();
                        text.push('\n');
                        text
                    }
                });
                EXIT_OK
            }
            Err(e) => fail(
                &crate::diag::Diagnostic::new(crate::diag::Code::CR026, e.to_string())
                    .hint("give a WebAssembly component built for wasm32-wasip2")
                    .into(),
                output,
            ),
        },
        PluginAction::New { name, kind, lang, dir } => {
            let kind = match kind {
                KindArg::Check => crate::plan::StepKind::Check,
                KindArg::Stage => crate::plan::StepKind::Stage,
                KindArg::Evaluator => crate::plan::StepKind::Evaluator,
            };
            match crate::authoring::new::scaffold(&name, kind, lang, &dir) {
                Ok((created, files)) => {
                    out(&format!("created {} ({} files)\n", created.display(), files.len()));
                    out(&format!(
                        "next: cd {} && ./build.sh && cleanroom plugin test {name}.wasm tests\n",
                        created.display()
                    ));
                    EXIT_OK
                }
                Err(diags) => fail(&diags, output),
            }
        }
        PluginAction::Test { plugin, cases } => {
            let options = RunOptions { ctrl_c: false, ..RunOptions::default() };
            let results = match crate::authoring::test::run_cases(&plugin, &cases, &options) {
                Ok(results) => results,
                Err(diags) => return fail(&diags, output),
            };
            let style = report::human::Style { color: output.color, ..Default::default() };
            let width = results.iter().map(|r| r.name.len()).max().unwrap_or(0).max(20) + 4;
            let mut failed = 0;
            let mut text = String::new();
            for result in &results {
                let dots = ".".repeat(width.saturating_sub(result.name.len() + 1));
                let ok = result.problems.is_empty();
                let word = style.verdict(ok);
                text.push_str(&format!("{} {dots} {word}\n", result.name));
                for problem in &result.problems {
                    text.push_str(&format!("  {problem}\n"));
                }
                if !ok || output.verbose > 0 {
                    for line in result.report.stdout.lines().chain(result.report.stderr.lines()) {
                        text.push_str(&format!("  | {line}\n"));
                    }
                }
                failed += usize::from(!ok);
            }
            text.push_str(&format!("\n{} cases: {} passed, {failed} failed\n", results.len(), results.len() - failed));
            out(&text);
            if failed == 0 {
                EXIT_OK
            } else {
                EXIT_FAILED
            }
        }
    }
}

/// `plugin inspect`'s aligned lines.
fn inspect_text(info: &crate::plugin::PluginInfo) -> String {
    let world = match &info.world {
        crate::plugin::World::Check => "check".to_string(),
        crate::plugin::World::Stage => "stage".to_string(),
        crate::plugin::World::Evaluator => "evaluator".to_string(),
        crate::plugin::World::Command => "wasi:cli/command (a program, usable as an evaluator's subject)".to_string(),
        other => other.to_string(),
    };
    let mut text = format!(
        "file      {}\nworld     {world}\ncontract  {}\nsize      {:.1} KiB ({} bytes)\nsha256    {}\n",
        info.path.display(),
        info.contract.as_deref().map_or("-".to_string(), |v| format!("cleanroom:plugin@{v}")),
        info.size as f64 / 1024.0,
        info.size,
        info.sha256
    );
    text.push_str(&format!("exports   {}\n", info.exports.join(", ")));
    text.push_str("imports\n");
    for import in &info.imports {
        text.push_str(&format!("  {import}\n"));
    }
    let foreign = info.foreign_imports();
    if !foreign.is_empty() {
        text.push_str(&format!("refused   a step cannot use it: it imports {}\n", foreign.join(", ")));
    }
    text.push_str(&format!("pin       sha256 = \"{}\"\n", info.sha256));
    text
}
