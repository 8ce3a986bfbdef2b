"""{{name}}: a Cleanroom stage plugin written in Python.

It writes `GREETING.txt`, one line holding the configured greeting, into
the first writable mount of the step. Config (the step's `config` table):

    greeting = "hello"   # optional; one line of text (default "hello")

componentize-py turns this module into a WebAssembly component for the
`stage` world of wit/plugin.wit (see build.sh). The host calls `run` once
with an `invocation`: the step id, the config as JSON text, the mounts (the
`write` ones have `writable` set), the attempt number and, on a retry, one
feedback line per failure that sent the stage back. Writes are
transactional: the stage works on a staged copy, and the workspace changes
only when `run` returns normally; raising `Err` discards every write.
"""

import json
import os

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import Invocation


def parse_config(text: str) -> str:
    """The greeting, from the step's config JSON. Unknown keys are refused:
    a misspelt key should be an error the user sees."""
    config = json.loads(text)
    unknown = sorted(set(config) - {"greeting"})
    if unknown:
        raise Err(f"invalid config: unknown key `{unknown[0]}` (known: greeting)")
    greeting = config.get("greeting", "hello")
    if not isinstance(greeting, str) or not greeting or "\n" in greeting:
        raise Err("invalid config: `greeting` must be one non-empty line of text")
    return greeting


class WitWorld(wit_world.WitWorld):
    """The export of the `stage` world. Return a one-line note for the
    report; raise `Err(message)` to fail the step (nothing is written)."""

    def run(self, invocation: Invocation) -> str:
        greeting = parse_config(invocation.config)
        writable = [mount.path for mount in invocation.mounts if mount.writable]
        if not writable:
            raise Err("no writable mount: give the step `write = [\"DIR\"]`")
        path = os.path.join(writable[0], "GREETING.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(greeting + "\n")
        return f"wrote {path}"
