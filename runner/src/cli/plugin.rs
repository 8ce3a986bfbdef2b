//! `cleanroom plugin inspect | new | test`.

use std::io::Read;

use super::{fail, out, InspectFormat, KindArg, Output, PluginAction, RegistryLogin, EXIT_FAILED, EXIT_OK};
use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::exec::RunOptions;
use crate::report;

pub(super) fn plugin(action: PluginAction, output: Output) -> i32 {
    match action {
        PluginAction::Inspect { file, format, login } => {
            // A file that exists is a file; anything else may be a reference.
            let remote = !file.exists() && crate::oci::Reference::parse(&file.to_string_lossy()).is_ok();
            let info = if !remote {
                crate::plugin::inspect(&file).map_err(|e| {
                    Diagnostic::new(Code::CR026, e.to_string())
                        .hint("give a WebAssembly component built for wasm32-wasip2, or an OCI reference host[:port]/repository:tag")
                        .into()
                })
            } else {
                pull(&file.to_string_lossy(), &login)
            };
            match info {
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
                Err(diags) => fail(&diags, output),
            }
        }
        PluginAction::Pull { reference, login } => match pull(&reference, &login) {
            Ok(info) => {
                let origin = info.origin.as_ref();
                out(&format!(
                    "pulled {reference}\nmanifest   {}\ncomponent  {}\nworld      {}\ncached     {}\n",
                    origin.and_then(|o| o.manifest.as_deref()).unwrap_or("-"),
                    origin.map_or("-", |o| o.component.as_str()),
                    crate::oci::artifact::world_name(&info.world),
                    info.path.display()
                ));
                EXIT_OK
            }
            Err(diags) => fail(&diags, output),
        },
        PluginAction::Push { file, reference, description, source, login } => {
            let pushed = (|| {
                let reference = crate::oci::Reference::parse(&reference).map_err(registry_error)?;
                let credentials = credentials(&reference, &login)?;
                let metadata = crate::oci::artifact::Metadata { description, source };
                crate::oci::push(&file, &reference, &metadata, &created(), credentials)
                    .map(|pushed| (reference, pushed))
                    .map_err(|e| {
                        Diagnostics::from(Diagnostic::new(Code::CR038, e).hint(
                            "check that the file is a component (`cleanroom plugin inspect FILE`), the reference, that the registry is up, and the credentials",
                        ))
                    })
            })();
            match pushed {
                Ok((reference, pushed)) => {
                    let name =
                        file.file_stem().map_or_else(|| "plugin".into(), |s| s.to_string_lossy().replace('_', "-"));
                    out(&format!(
                        "pushed {reference} ({} of 2 blobs were already there)\nmanifest   {}\ncomponent  {}\nuse it:    {name} = {{ oci = \"{}\" }}\n",
                        pushed.reused,
                        pushed.manifest,
                        pushed.component,
                        reference.pinned(&pushed.manifest)
                    ));
                    EXIT_OK
                }
                Err(diags) => fail(&diags, output),
            }
        }
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
                    out(&format!(
                        "publish: cleanroom plugin push {name}.wasm REGISTRY/NAMESPACE/{name}:0.1.0 (see PUBLISH.md)\n"
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

/// Fetches `reference` into the cache (its tag asked of the registry
/// again) and inspects it.
fn pull(reference: &str, login: &RegistryLogin) -> Result<crate::plugin::PluginInfo, Diagnostics> {
    let reference = crate::oci::Reference::parse(reference).map_err(registry_error)?;
    let given = credentials(&reference, login)?;
    let source = |registry: &str| match &given {
        Some(credentials) => Ok(Some(credentials.clone())),
        None => crate::oci::docker_credentials(registry),
    };
    let store = crate::oci::Store::default_store().map_err(registry_error)?;
    crate::oci::fetch_inspected(&store, &reference, None, &crate::oci::Mode::Refresh, &source)
        .map_err(|e| registry_error(e.to_string()))
}

/// `--username` with the password from stdin, if given.
fn credentials(
    reference: &crate::oci::Reference,
    login: &RegistryLogin,
) -> Result<Option<crate::oci::Credentials>, Diagnostics> {
    let Some(username) = &login.username else {
        return crate::oci::docker_credentials(&reference.registry).map_err(registry_error);
    };
    let mut password = String::new();
    std::io::stdin()
        .take(64 << 10)
        .read_to_string(&mut password)
        .map_err(|e| registry_error(format!("cannot read the password from stdin: {e}")))?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(registry_error("--password-stdin, but stdin held no password".into()));
    }
    Ok(Some(crate::oci::Credentials::new(username.clone(), password)))
}

fn registry_error(message: String) -> Diagnostics {
    Diagnostic::new(Code::CR038, message)
        .hint("check the reference (host[:port]/repository:tag), that the registry is up, and the credentials")
        .into()
}

/// The artifact's creation time: `SOURCE_DATE_EPOCH` when set (so a
/// rebuild pushes the same manifest), else now.
fn created() -> String {
    match std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.trim().parse::<u64>().ok()) {
        Some(seconds) => crate::governance::time::format_ms(seconds.saturating_mul(1000)),
        None => crate::governance::time::now(),
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
    if let Some(sdk) = &info.sdk {
        text.push_str(&format!("sdk       {}\n", printable(sdk)));
    }
    if let Some(origin) = &info.origin {
        text.push_str(&format!("reference {}\n", origin.reference));
        text.push_str(&format!("manifest  {}\n", origin.manifest.as_deref().unwrap_or("-")));
        text.push_str("annotations\n");
        for (key, value) in &origin.annotations {
            text.push_str(&format!("  {} = {}\n", printable(key), printable(value)));
        }
        if let Some(manifest) = &origin.manifest {
            let pinned = crate::oci::Reference::parse(&origin.reference).map(|r| r.pinned(manifest).to_string());
            if let Ok(pinned) = pinned {
                text.push_str(&format!("pin       oci = \"{pinned}\"\n"));
            }
        }
    }
    text.push_str(&format!("pin       sha256 = \"{}\"\n", info.sha256));
    text
}

/// Text a registry supplied, made safe for a terminal: control characters
/// (escape sequences, newlines that would fake more lines) shown escaped.
fn printable(text: &str) -> String {
    text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}
