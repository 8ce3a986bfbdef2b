//! The two messages that open the conversation: the system message (the
//! agent's role and rules) and the user message (the spec, the files, the
//! attempt and, on a retry, the feedback that caused it).

use crate::tools::Sandbox;

/// Most files listed in the user message, per list.
const MAX_LISTED: usize = 300;

/// The system message: who the model is, what it can touch, how it ends.
pub fn system(sandbox: &Sandbox, extra: Option<&str>) -> String {
    let readable = sandbox.mount_paths(false).join(", ");
    let writable = sandbox.mount_paths(true).join(", ");
    let mut text = format!(
        "You are a coding agent working inside a sandbox. The task is in the user message.\n\
         \n\
         Rules:\n\
         - Only the tools can touch files: list_files, read_file, write_file and apply_patch. \
         Code you put in a message changes nothing.\n\
         - You can read files below: {readable}.\n\
         - You can write files only below: {writable}. Everything else is read-only.\n\
         - Paths are absolute, e.g. {example}.\n\
         - You cannot run programs or tests. When you finish, your work is checked by tests you \
         cannot see; if they fail, you are run again with one line per failure.\n\
         - When the work is complete, reply without calling a tool. Make the first line of that \
         reply a one-line summary of what you did.",
        example = example_path(sandbox),
    );
    if let Some(extra) = extra.map(str::trim).filter(|e| !e.is_empty()) {
        text.push_str("\n\nAdditional instructions:\n");
        text.push_str(extra);
    }
    text
}

fn example_path(sandbox: &Sandbox) -> String {
    match sandbox.mount_paths(true).first() {
        Some(mount) => format!("{}/main.rs", mount.trim_end_matches('/')),
        None => "/src/main.rs".to_string(),
    }
}

/// The user message.
///
/// `specs` are (guest path, text) pairs; `writable` and `readable` list the
/// files below the writable mounts and the other files the step can read,
/// with their sizes.
pub fn user(
    attempt: u32,
    feedback: &[String],
    specs: &[(String, String)],
    writable: &[(String, u64)],
    readable: &[(String, u64)],
) -> String {
    let mut text = format!("This is attempt {attempt}.\n");
    if attempt > 1 {
        if feedback.is_empty() {
            text.push_str("\nThe previous attempt failed; no details were given.\n");
        } else {
            text.push_str("\nThe previous attempt failed these checks:\n");
            for line in feedback {
                text.push_str(&format!("- {line}\n"));
            }
        }
    }
    if specs.is_empty() {
        text.push_str("\nNo specification files were given: find the task in the files you can read.\n");
    } else {
        text.push_str("\n# Specification\n");
        for (path, content) in specs {
            text.push_str(&format!("\n## {path}\n\n{}\n", fenced(content)));
        }
    }
    text.push_str("\n# Files you can write\n\n");
    list(&mut text, writable, "none yet");
    text.push_str("\n# Other files you can read\n\n");
    list(&mut text, readable, "none");
    text
}

fn list(text: &mut String, files: &[(String, u64)], empty: &str) {
    if files.is_empty() {
        text.push_str(&format!("({empty})\n"));
    }
    for (path, size) in files.iter().take(MAX_LISTED) {
        text.push_str(&format!("{path} ({size} bytes)\n"));
    }
    if files.len() > MAX_LISTED {
        text.push_str(&format!("... and {} more (use list_files)\n", files.len() - MAX_LISTED));
    }
}

/// `content` in a Markdown code fence longer than any backtick run in it.
fn fenced(content: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in content.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat((longest + 1).max(3));
    format!("{fence}\n{}\n{fence}", content.trim_end_matches('\n'))
}

/// Reads the spec files: each configured path is a file or a directory
/// (every text file below it), and must lie below a mount.
///
/// # Errors
/// A path outside the mounts or that does not exist.
pub fn load_specs(sandbox: &Sandbox, paths: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut specs: Vec<(String, String)> = Vec::new();
    for raw in paths {
        let path = sandbox.readable(raw).map_err(|e| format!("config `spec`: {e}: add it to the step's `read`"))?;
        let files = if std::path::Path::new(&path).is_dir() {
            sandbox.files_below(&path).into_iter().map(|(p, _)| p).collect()
        } else if std::path::Path::new(&path).is_file() {
            vec![path.clone()]
        } else {
            return Err(format!("config `spec`: `{path}` does not exist"));
        };
        for file in files {
            if specs.iter().any(|(seen, _)| *seen == file) {
                continue;
            }
            // Binary and unreadable files are left out of the prompt.
            if let Ok(text) = sandbox.read_capped(&file) {
                specs.push((file, text));
            }
        }
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::tests::Tree;

    #[test]
    fn system_message_names_the_writable_roots_and_extra_instructions() {
        let tree = Tree::new("system");
        let text = system(&tree.sandbox(100), Some("Write /work/main.rs."));
        let work = tree.path("work");
        assert!(text.contains(&format!("You can write files only below: {work}.")), "{text}");
        assert!(text.contains(&format!(
            "You can read files below: {}, {}, {work}.",
            tree.path("specs"),
            tree.path("src")
        )));
        assert!(text.contains("Only the tools can touch files"));
        assert!(text.ends_with("Additional instructions:\nWrite /work/main.rs."));
        assert!(!system(&tree.sandbox(100), Some("  ")).contains("Additional"));
    }

    #[test]
    fn user_message_on_a_first_attempt() {
        let specs = vec![("/specs/a.md".to_string(), "# A\nuse ``` fences\n".to_string())];
        let text = user(1, &[], &specs, &[], &[("/src/main.rs".to_string(), 12)]);
        assert_eq!(
            text,
            "This is attempt 1.\n\n# Specification\n\n## /specs/a.md\n\n````\n# A\nuse ``` fences\n````\n\
             \n# Files you can write\n\n(none yet)\n\n# Other files you can read\n\n/src/main.rs (12 bytes)\n"
        );
    }

    #[test]
    fn user_message_on_a_retry_carries_the_feedback() {
        let feedback =
            vec!["holdout: 2 of 6 scenarios failed".to_string(), "no-stubs: a stub is left in main.rs".to_string()];
        let text = user(2, &feedback, &[], &[("/work/main.rs".to_string(), 40)], &[]);
        assert!(text.starts_with(
            "This is attempt 2.\n\nThe previous attempt failed these checks:\n- holdout: 2 of 6 scenarios failed\n\
             - no-stubs: a stub is left in main.rs\n"
        ));
        assert!(text.contains("# Files you can write\n\n/work/main.rs (40 bytes)\n"));
        assert!(user(3, &[], &[], &[], &[]).contains("The previous attempt failed; no details were given."));
    }

    #[test]
    fn specs_from_files_and_directories_inside_the_mounts() {
        let tree = Tree::new("specs");
        std::fs::create_dir_all(tree.path("specs/more")).unwrap();
        std::fs::write(tree.path("specs/a.md"), "alpha").unwrap();
        std::fs::write(tree.path("specs/more/b.md"), "beta").unwrap();
        std::fs::write(tree.path("specs/logo.png"), b"\x89PNG\0").unwrap();
        let sandbox = tree.sandbox(100);
        let specs = load_specs(&sandbox, &[tree.path("specs/a.md"), tree.path("specs")]).unwrap();
        let got: Vec<(&str, &str)> = specs.iter().map(|(p, t)| (p.rsplit('/').next().unwrap(), t.as_str())).collect();
        assert_eq!(got, [("a.md", "alpha"), ("b.md", "beta")]);
        let outside = load_specs(&sandbox, &[tree.path("other")]).unwrap_err();
        assert!(
            outside.starts_with("config `spec`: ") && outside.contains("outside what this step can read"),
            "{outside}"
        );
        let missing = load_specs(&sandbox, &[tree.path("specs/none.md")]).unwrap_err();
        assert!(missing.ends_with("does not exist"), "{missing}");
    }
}
