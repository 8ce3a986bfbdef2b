"""{{name}}: a Cleanroom check plugin written in Python.

It reads every file in the step's mounts and reports each line that
contains one of the configured words as an `error` finding, so the step
fails while any is left. Config (the step's `config` table):

    words = ["FIXME"]   # optional; the words to look for (default ["FIXME"])

componentize-py turns this module into a WebAssembly component for the
`check` world of wit/plugin.wit (see build.sh). The host calls `check` once
with an `invocation`: the step id, the config as JSON text and the mounts.
The plugin sees only those mounts, at their guest paths (`read = ["."]`
appears as `/`, `read = ["src"]` as `/src`), and nothing else: no network,
no environment, no clock beyond WASI's.
"""

import json
import os
from typing import List

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import Finding, Invocation, Severity

# The rule name every finding carries: users filter reports on it.
RULE = "{{name}}"


def parse_config(text: str) -> List[str]:
    """The words to look for, from the step's config JSON.

    Unknown keys are refused: a misspelt key should be an error the user
    sees, not a setting silently ignored."""
    config = json.loads(text)
    unknown = sorted(set(config) - {"words"})
    if unknown:
        raise Err(f"invalid config: unknown key `{unknown[0]}` (known: words)")
    words = config.get("words", ["FIXME"])
    if not isinstance(words, list) or not words or not all(isinstance(w, str) and w for w in words):
        raise Err("invalid config: `words` must be a non-empty list of non-empty strings")
    return words


def files_under(root: str) -> List[str]:
    """Every regular file below the guest path `root`, sorted."""
    found = []
    for directory, subdirs, names in os.walk(root):
        subdirs.sort()
        found.extend(os.path.join(directory, name) for name in sorted(names))
    return found


class WitWorld(wit_world.WitWorld):
    """The export of the `check` world. Returning a list reports findings;
    raising `Err(message)` makes the step an `error` (use it for bad config,
    never for findings)."""

    def check(self, invocation: Invocation) -> List[Finding]:
        words = parse_config(invocation.config)
        findings = []
        for mount in invocation.mounts:
            for path in files_under(mount.path):
                try:
                    with open(path, encoding="utf-8") as f:
                        lines = f.read().splitlines()
                except (OSError, UnicodeDecodeError):
                    continue  # unreadable or binary: not ours to judge
                for number, line in enumerate(lines, start=1):
                    for word in words:
                        column = line.find(word)
                        if column >= 0:
                            findings.append(
                                Finding(
                                    rule=RULE,
                                    severity=Severity.ERROR,
                                    message=f"`{word}` left in the file: resolve it or remove it",
                                    path=path,  # the guest path; reports show it workspace-relative
                                    line=number,
                                    column=column + 1,  # 1-based, in characters
                                )
                            )
        return findings
