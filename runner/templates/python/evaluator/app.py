"""{{name}}: a Cleanroom evaluator plugin written in Python.

An evaluator judges a program, the step's `subject` (a `wasi:cli` command
component built by earlier steps), against scenarios. This one has two:

- `echo-hello`: runs the subject with the argument `hello` and expects it
  to print `hello` and a newline (or the step's `config.expect_stdout`);
- `exit-zero`: runs it with no arguments and expects exit code 0.

Config (the step's `config` table):

    expect_stdout = "hello\n"   # optional; what `echo-hello` expects (default "hello\n")

componentize-py turns this module into a WebAssembly component for the
`evaluator` world of wit/plugin.wit (see build.sh). The host calls
`scenarios` once for the list of names, then `evaluate` for each scenario,
each time in a fresh instance. `subject.run(args, stdin)` runs the subject
in a sandbox of its own and returns its exit code, stdout and stderr.
A verdict's `summary` is the one line a retried stage is told: in a real
evaluator whose scenarios are secret (holdout), keep their content out of
it and put it in `detail`, which only humans see.
"""

import json
from typing import List

import wit_world
from componentize_py_types import Err
from wit_world.imports import subject
from wit_world.imports.types import Invocation, Verdict

SCENARIOS = ["echo-hello", "exit-zero"]


def parse_config(text: str) -> str:
    """The stdout `echo-hello` expects, from the step's config JSON.
    Unknown keys are refused: a misspelt key should be an error."""
    config = json.loads(text)
    unknown = sorted(set(config) - {"expect_stdout"})
    if unknown:
        raise ValueError(f"invalid config: unknown key `{unknown[0]}` (known: expect_stdout)")
    expected = config.get("expect_stdout", "hello\n")
    if not isinstance(expected, str):
        raise ValueError("invalid config: `expect_stdout` must be a string")
    return expected


def run_subject(args: List[str]) -> subject.Output:
    """Runs the subject; raises `Err(reason)` when it could not run at all
    (it trapped, or ran out of time or memory)."""
    return subject.run(args, b"")


class WitWorld(wit_world.WitWorld):
    """The exports of the `evaluator` world."""

    def scenarios(self, invocation: Invocation) -> List[str]:
        # Raising `Err(message)` here makes the step an `error`: use it for
        # bad config, which would break every scenario alike.
        try:
            parse_config(invocation.config)
        except ValueError as e:
            raise Err(str(e)) from None
        return SCENARIOS

    def evaluate(self, scenario: str, invocation: Invocation) -> Verdict:
        try:
            expected = parse_config(invocation.config)
            if scenario == "echo-hello":
                out = run_subject(["hello"])
                got = out.stdout.decode("utf-8", errors="replace")
                if got == expected:
                    return Verdict(passed=True, summary="passed", detail="")
                return Verdict(
                    passed=False,
                    summary=f"expected stdout {json.dumps(expected)}, got {json.dumps(got[:60])}",
                    detail=f"args: [\"hello\"]\nstdout:\n{got}\nstderr:\n{out.stderr.decode('utf-8', errors='replace')}",
                )
            if scenario == "exit-zero":
                out = run_subject([])
                if out.exit_code == 0:
                    return Verdict(passed=True, summary="passed", detail="")
                return Verdict(
                    passed=False,
                    # Never what the subject chose (its exit code, its
                    # output) in a summary: the summary reaches the stage.
                    summary="expected exit code 0, got another",
                    detail=f"args: []\nexit code: {out.exit_code}\nstderr:\n{out.stderr.decode('utf-8', errors='replace')}",
                )
            return Verdict(passed=False, summary=f"unknown scenario {json.dumps(scenario)}", detail="")
        except Err as e:  # from subject.run
            # e.value is one of the host's fixed words (wit/plugin.wit).
            return Verdict(passed=False, summary=f"the subject {e.value}", detail="")
        except ValueError as e:  # bad config
            return Verdict(passed=False, summary=str(e), detail="")
