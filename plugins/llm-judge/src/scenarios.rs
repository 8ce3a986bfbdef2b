//! Plain-English scenarios: Markdown files in which each `## Scenario:
//! <name>` heading starts a scenario that runs to the next heading of
//! level 1 or 2 (or the end of the file). Its lines say, in Given/When/Then
//! form, what a user does and what they must observe:
//!
//! ```markdown
//! ## Scenario: expired link
//! Given a user requested a reset 16 minutes ago
//! When they open the link
//! Then they see "This link has expired" and their password is unchanged
//! ```
//!
//! One file may hold several scenarios; text outside them (a title, notes)
//! is ignored. Names must be unique across the files, and every scenario
//! needs at least one `Then` line (what to observe), so a judge is never
//! asked to grade nothing.

use std::collections::BTreeMap;

/// One scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// Its name, from the heading.
    pub name: String,
    /// Its text: the heading and every line to the next heading, trimmed.
    pub text: String,
    /// The file (guest path) and 1-based line of its heading.
    pub file: String,
    /// See `file`.
    pub line: usize,
}

/// The scenarios in one file's `text` (named `file` in errors).
///
/// # Errors
/// An empty name, or a scenario without a `Then` line, with file:line.
pub fn parse(file: &str, text: &str) -> Result<Vec<Scenario>, String> {
    let mut scenarios: Vec<Scenario> = Vec::new();
    let mut current: Option<(Scenario, Vec<&str>)> = None;
    let finish = |current: Option<(Scenario, Vec<&str>)>, scenarios: &mut Vec<Scenario>| -> Result<(), String> {
        let Some((mut scenario, lines)) = current else { return Ok(()) };
        let body = lines.join("\n");
        scenario.text = body.trim().to_string();
        if !lines.iter().any(|l| keyword(l).is_some_and(|k| k == "then")) {
            return Err(format!(
                "{}:{}: scenario `{}` has no `Then` line: say what must be observed (e.g. `Then they see ...`)",
                scenario.file, scenario.line, scenario.name
            ));
        }
        scenarios.push(scenario);
        Ok(())
    };
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_end();
        if let Some(name) = heading(trimmed) {
            finish(current.take(), &mut scenarios)?;
            let name = name.trim().to_string();
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(format!("{file}:{}: a `## Scenario:` heading needs a name after the colon", index + 1));
            }
            let scenario = Scenario { name, text: String::new(), file: file.to_string(), line: index + 1 };
            current = Some((scenario, vec![trimmed]));
        } else if trimmed.starts_with("# ") || trimmed.starts_with("## ") || trimmed == "#" || trimmed == "##" {
            finish(current.take(), &mut scenarios)?;
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(trimmed);
        }
    }
    finish(current.take(), &mut scenarios)?;
    Ok(scenarios)
}

/// The name after a `## Scenario:` heading (`scenario` in any case).
fn heading(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("## ")?.trim_start();
    let (word, name) = rest.split_once(':')?;
    word.trim().eq_ignore_ascii_case("scenario").then_some(name)
}

/// The Given/When/Then/And/But keyword a line starts with (lowercase),
/// after list markers and emphasis.
fn keyword(line: &str) -> Option<String> {
    let line = line.trim_start().trim_start_matches(['-', '*', '+', '>', ' ']).trim_start_matches(['*', '_']);
    let word: String = line.chars().take_while(|c| c.is_alphabetic()).collect::<String>().to_lowercase();
    ["given", "when", "then", "and", "but"].contains(&word.as_str()).then_some(word)
}

/// Every scenario in `files` (guest path, text), in file order.
///
/// # Errors
/// A file's own error, a name used twice (with both places), or no
/// scenario at all.
pub fn collect(files: &[(String, String)]) -> Result<Vec<Scenario>, String> {
    let mut all: Vec<Scenario> = Vec::new();
    let mut seen: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for (file, text) in files {
        for scenario in parse(file, text)? {
            if let Some((first, line)) = seen.get(&scenario.name) {
                return Err(format!(
                    "{}:{}: scenario `{}` is also defined at {first}:{line}: give each scenario its own name",
                    scenario.file, scenario.line, scenario.name
                ));
            }
            seen.insert(scenario.name.clone(), (scenario.file.clone(), scenario.line));
            all.push(scenario);
        }
    }
    if all.is_empty() {
        let where_ = if files.is_empty() {
            "no Markdown (`.md`) file was found".to_string()
        } else {
            format!("{} Markdown files were read", files.len())
        };
        return Err(format!(
            "no `## Scenario: <name>` section found ({where_}): put the scenarios in `.md` files under the step's `read` paths"
        ));
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "# Password reset\nNotes for people.\n\n## Scenario: expired link\nGiven a user requested a reset 16 minutes ago\nWhen they open the link\nThen they see \"This link has expired\"\n  And their password is unchanged\n\n## Scenario: valid link\n- **Given** a fresh link\n- **When** they set a new password\n- **Then** they can log in with it\n\n## Notes\nnot part of a scenario\n";

    #[test]
    fn sections_become_scenarios_up_to_the_next_heading() {
        let scenarios = parse("/holdout/reset.md", TWO).unwrap();
        assert_eq!(scenarios.len(), 2);
        assert_eq!(scenarios[0].name, "expired link");
        assert_eq!(scenarios[0].line, 4);
        assert!(scenarios[0].text.starts_with("## Scenario: expired link\nGiven a user"));
        assert!(scenarios[0].text.ends_with("And their password is unchanged"));
        assert_eq!(scenarios[1].name, "valid link");
        assert!(!scenarios[1].text.contains("not part of a scenario"), "{}", scenarios[1].text);
    }

    #[test]
    fn a_scenario_needs_a_name_and_a_then_line() {
        let nameless = parse("/s/a.md", "## Scenario:   \nThen x\n").unwrap_err();
        assert_eq!(nameless, "/s/a.md:1: a `## Scenario:` heading needs a name after the colon");
        let thenless = parse("/s/a.md", "intro\n## Scenario: vague\nGiven something\nWhen it happens\n").unwrap_err();
        assert!(thenless.starts_with("/s/a.md:2: scenario `vague` has no `Then` line"), "{thenless}");
    }

    #[test]
    fn names_are_unique_across_files_and_some_scenario_must_exist() {
        let files = vec![
            ("/s/a.md".to_string(), "## Scenario: one\nThen a\n".to_string()),
            ("/s/b.md".to_string(), "\n## Scenario: one\nThen b\n".to_string()),
        ];
        let twice = collect(&files).unwrap_err();
        assert!(twice.starts_with("/s/b.md:2: scenario `one` is also defined at /s/a.md:1"), "{twice}");
        let none = collect(&[("/s/readme.md".to_string(), "# Nothing\n".to_string())]).unwrap_err();
        assert!(none.contains("1 Markdown files were read"), "{none}");
        assert!(collect(&[]).unwrap_err().contains("no Markdown (`.md`) file was found"));
    }
}
