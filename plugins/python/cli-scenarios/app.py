"""cli-scenarios: a Cleanroom evaluator, written in Python, that judges a
command-line program (the step's `subject`) against holdout scenarios kept
as JSON files. `scripts/build-python-plugins` builds it with componentize-py
(world `evaluator` of wit/) to plugins/dist/cli_scenarios.wasm; the example
is pipelines/python-evaluator.toml.

Config (unknown keys are an error):
  scenarios = "/scenarios"  required: guest path of the scenario directory,
                            inside one of the step's `read` mounts
  quote = false             whether summaries quote values (see below)

Scenarios: each `NAME.json` directly in that directory is scenario NAME, one
JSON object whose keys are all optional (unknown keys are an error):
  args          list of strings, the subject's arguments (default [])
  stdin         string, the subject's stdin (default "")
  exit_code     integer, the expected exit code (default 0)
  stdout        string, the exact expected stdout
  stdout_regex  Python `re` pattern searched (re.search) in stdout
  stderr_regex  Python `re` pattern searched in stderr
  description   string, shown in the detail only
e.g. {"args": ["2", "3", "+"], "stdout": "5\\n"}. A scenario passes when
every expectation it states holds.

Verdicts: the summary names the first failure on one line, with
`quote = true` e.g. `expected stdout "5\\n"`, `stdout line 7: expected
"Fizz\\n"` (long outputs) or `expected exit code 0, got another`, and counts
the others; the detail has every failure with full values, what the subject
printed and a diff of stdout. A summary never holds anything the subject
chose (its exit code or output): that would be a channel from the program
under test to the stage.

A summary is what a stage retried on this evaluator (`retry = ...`) is told,
and the runner withholds quoted holdout text only from 6 characters up. So
by default (`quote = false`) summaries name only the kind of failure
(`stdout differs from the expected output at line 2`) and values stay in the
detail, which only humans see; set `quote = true` where no stage is retried
on the verdicts, to see values in the one-line summaries.

Bad config, an unreadable scenario directory or an invalid scenario file
make `scenarios()` return an error naming the file and the problem (never a
scenario value); the step is then reported as `error`.
"""

import difflib
import json
import os
import re
import traceback
from typing import Any, Dict, List, Optional

import wit_world
from componentize_py_types import Err
from wit_world.imports import subject, types

# Longest summary, in characters (the runner cuts feedback lines at 200,
# after prefixing `scenario NAME: failed K/N: `).
SUMMARY_CHARS = 150
# Longest excerpt of one value quoted in a summary.
QUOTE_CHARS = 40
# Longest excerpt of one value shown in a detail.
DETAIL_CHARS = 4000
# Outputs with more lines than this are not diffed (difflib is quadratic in
# the worst case; the subject may print up to the step's output cap).
DIFF_LINES = 2000

CONFIG_KEYS = {"scenarios", "quote"}
SCENARIO_KEYS = {"description", "args", "stdin", "exit_code", "stdout", "stdout_regex", "stderr_regex"}


class ConfigError(Exception):
    """The step's config or the scenario directory cannot be used."""


class Config:
    """The step's `config` table, checked."""

    def __init__(self, text: str):
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"invalid config: not JSON: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError("invalid config: expected a table")
        unknown = sorted(set(raw) - CONFIG_KEYS)
        if unknown:
            raise ConfigError(
                f"invalid config: unknown key `{unknown[0]}` (known: {', '.join(sorted(CONFIG_KEYS))})"
            )
        directory = raw.get("scenarios")
        if not isinstance(directory, str) or not directory:
            raise ConfigError(
                'invalid config: `scenarios` is required: the guest path of the scenario directory, e.g. "/scenarios"'
            )
        if not directory.startswith("/"):
            raise ConfigError(
                f"invalid config: `scenarios` must be an absolute guest path such as /{directory.lstrip('./')}"
            )
        quote = raw.get("quote", False)
        if not isinstance(quote, bool):
            raise ConfigError("invalid config: `quote` must be true or false")
        self.directory: str = directory.rstrip("/") or "/"
        self.quote: bool = quote


class Scenario:
    """One scenario file, checked: how to run the subject and what to expect."""

    def __init__(self, name: str, path: str):
        self.name = name
        # Messages raised from here name the file and the problem but never a
        # value from it (key names aside): they may reach a retried stage as the
        # step's reason.
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ConfigError(f"cannot read scenario `{name}` ({path}): {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"scenario `{name}` ({path}) is not UTF-8") from None
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"scenario `{name}` is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"scenario `{name}` must be a JSON object")
        unknown = sorted(set(raw) - SCENARIO_KEYS)
        if unknown:
            raise ConfigError(
                f"scenario `{name}`: unknown key `{one_line(unknown[0], 40)}` (known: {', '.join(sorted(SCENARIO_KEYS))})"
            )

        def typed(key: str, kind: type, default: Any) -> Any:
            value = raw.get(key, default)
            # bool is an int in Python: refuse it where a number is meant.
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                what = {str: "a string", int: "an integer", list: "a list of strings"}[kind]
                raise ConfigError(f"scenario `{name}`: `{key}` must be {what}")
            return value

        self.description: str = typed("description", str, "")
        self.args: List[str] = typed("args", list, [])
        if not all(isinstance(a, str) for a in self.args):
            raise ConfigError(f"scenario `{name}`: `args` must be a list of strings")
        self.stdin: str = typed("stdin", str, "")
        self.exit_code: int = typed("exit_code", int, 0)
        if not 0 <= self.exit_code <= 0xFFFFFFFF:
            raise ConfigError(f"scenario `{name}`: `exit_code` must be between 0 and 4294967295")
        self.stdout: Optional[str] = typed("stdout", str, None) if "stdout" in raw else None
        self.stdout_regex = self._pattern(raw, "stdout_regex")
        self.stderr_regex = self._pattern(raw, "stderr_regex")

    def _pattern(self, raw: Dict[str, Any], key: str) -> Optional["re.Pattern[str]"]:
        if key not in raw:
            return None
        if not isinstance(raw[key], str):
            raise ConfigError(f"scenario `{self.name}`: `{key}` must be a string")
        try:
            return re.compile(raw[key])
        except re.error as e:
            raise ConfigError(f"scenario `{self.name}`: `{key}` is not a valid pattern: {e.msg} at position {e.pos}") from None


def scenario_names(directory: str) -> List[str]:
    """The scenario names in `directory`, sorted."""
    try:
        entries = os.listdir(directory)
    except OSError as e:
        raise ConfigError(
            f"cannot read the scenario directory {directory}: {e.strerror or e}: check `scenarios` and the step's `read`"
        ) from None
    names = []
    for entry in entries:
        stem, ext = os.path.splitext(entry)
        if ext != ".json" or not stem or entry.startswith("."):
            continue
        if not os.path.isfile(os.path.join(directory, entry)):
            continue
        if "\\" in stem or not stem.isprintable():
            raise ConfigError(f"scenario file {json.dumps(entry)} has an unusable name: rename it")
        names.append(stem)
    if not names:
        raise ConfigError(f"no scenarios in {directory}: add NAME.json files")
    return sorted(names)


def quoted(value: str, limit: int = QUOTE_CHARS) -> str:
    """`value` as a one-line double-quoted string, cut to `limit` characters."""
    text = json.dumps(value, ensure_ascii=False)
    if len(value) > limit:
        text = json.dumps(value[:limit], ensure_ascii=False)[:-1] + '"…'
    return text


def clip(value: str) -> str:
    """`value` cut to DETAIL_CHARS characters, saying so when cut."""
    if len(value) <= DETAIL_CHARS:
        return value
    return value[:DETAIL_CHARS] + f"\n… (truncated: {len(value)} characters in all)"


def stdout_summary(expected: str, actual: str, quote: bool) -> str:
    """One line saying how stdout `actual` departs from `expected` (which
    differ): both values when they are short, else the first differing line;
    with `quote` false, only where and how they differ."""
    if quote and len(expected) <= QUOTE_CHARS:
        return f"expected stdout {quoted(expected)}"
    want = expected.splitlines(keepends=True)
    got = actual.splitlines(keepends=True)
    line = 0
    while line < min(len(want), len(got)) and want[line] == got[line]:
        line += 1
    if not quote:
        if line >= len(got):
            hint = " (the output ends early)"
        elif line >= len(want):
            hint = " (the output has extra lines)"
        elif want[line].rstrip("\r\n") == got[line].rstrip("\r\n"):
            hint = " (only the line ending differs)"
        else:
            hint = ""
        return f"stdout differs from the expected output at line {line + 1}{hint}"
    if line >= len(got):
        return f"stdout ends early: line {line + 1} should be {quoted(want[line])}"
    if line >= len(want):
        return f"stdout has extra lines from line {line + 1}"
    return f"stdout line {line + 1}: expected {quoted(want[line])}"


class Failure:
    """One expectation that did not hold: a one-line summary and a detail."""

    def __init__(self, summary: str, detail: str = ""):
        self.summary = summary
        self.detail = detail


def judge(scenario: Scenario, out: subject.Output, quote: bool) -> List[Failure]:
    """Every expectation of `scenario` that `out` does not meet, in order:
    exit code, exact stdout, stdout pattern, stderr pattern."""
    stdout = out.stdout.decode("utf-8", errors="replace")
    stderr = out.stderr.decode("utf-8", errors="replace")
    failures = []
    if out.exit_code != scenario.exit_code:
        summary = f"expected exit code {scenario.exit_code}, got another"
        failures.append(Failure(summary, f"exit code: {out.exit_code}"))
    if scenario.stdout is not None and stdout != scenario.stdout:
        summary = stdout_summary(scenario.stdout, stdout, quote)
        want, got = scenario.stdout.splitlines(keepends=True), stdout.splitlines(keepends=True)
        if max(len(want), len(got)) <= DIFF_LINES:
            lines = difflib.unified_diff(want, got, "expected", "actual")
            # A last line without its newline gets one, and a note saying so.
            text = "".join(line if line.endswith("\n") else line + "\n\\ (no newline at the end)\n" for line in lines)
            diff = "stdout diff:\n" + clip(text)
        else:
            diff = f"expected stdout ({len(want)} lines):\n{clip(scenario.stdout)}"
        failures.append(Failure(summary, diff))
    for stream, pattern, text in (("stdout", scenario.stdout_regex, stdout), ("stderr", scenario.stderr_regex, stderr)):
        if pattern is not None and not pattern.search(text):
            if quote:
                summary = f"expected {stream} to match /{pattern.pattern}/"
            else:
                summary = f"{stream} does not match the expected pattern"
            failures.append(Failure(summary, f"pattern: {clip(pattern.pattern)}"))
    return failures


# What the host's `subject.run` may answer when a run produced nothing to
# judge (wit/plugin.wit documents the set).
SUBJECT_FAILURES = {
    "could not start": "could not start",
    "trapped": "trapped",
    "timed out": "timed out",
    "out of memory": "ran out of memory",
    "output cut": "printed more than the output cap",
}

def one_line(text: str, limit: int = SUMMARY_CHARS) -> str:
    """`text` on one line of at most `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def summarize(failures: List[Failure]) -> str:
    """`passed`, or the first failure and a count of the others."""
    if not failures:
        return "passed"
    more = len(failures) - 1
    suffix = "" if more == 0 else f" (and {more} more failure{'s' if more > 1 else ''})"
    # Cut the first failure, not the count, when the line is too long.
    return one_line(failures[0].summary, SUMMARY_CHARS - len(suffix)) + suffix


def describe(scenario: Scenario) -> str:
    """The scenario's description and inputs, for a detail."""
    lines = []
    if scenario.description:
        lines.append(f"scenario: {scenario.description}")
    lines.append(f"args: {json.dumps(scenario.args, ensure_ascii=False)}")
    if scenario.stdin:
        lines.append("stdin:\n" + clip(scenario.stdin))
    return "\n".join(lines)


def run_scenario(name: str, invocation: types.Invocation) -> types.Verdict:
    """Runs scenario `name` once against the subject and judges the run."""
    try:
        config = Config(invocation.config)
        if name not in scenario_names(config.directory):
            return types.Verdict(False, f"unknown scenario `{one_line(name, 60)}`", "")
        scenario = Scenario(name, os.path.join(config.directory, name + ".json"))
    except ConfigError as e:
        return types.Verdict(False, one_line(str(e)), "")
    try:
        out = subject.run(scenario.args, scenario.stdin.encode("utf-8"))
    except Err as e:
        reason = str(e.value)
        # Only the host's fixed words, never other text, reach the summary.
        word = SUBJECT_FAILURES.get(reason, "could not run")
        return types.Verdict(False, f"the subject {word}", describe(scenario) + "\n\n" + reason)
    failures = judge(scenario, out, config.quote)
    detail = [describe(scenario)]
    for failure in failures:
        detail.append(f"FAILED: {failure.summary}" + (f"\n{failure.detail}" if failure.detail else ""))
    detail.append(
        f"exit code: {out.exit_code}\n"
        f"stdout:\n{clip(out.stdout.decode('utf-8', errors='replace'))}\n"
        f"stderr:\n{clip(out.stderr.decode('utf-8', errors='replace'))}"
    )
    return types.Verdict(not failures, summarize(failures), "\n\n".join(detail))


class WitWorld(wit_world.WitWorld):
    """The exports of the `evaluator` world."""

    def scenarios(self, invocation: types.Invocation) -> List[str]:
        # Parse every file up front, so that a broken scenario is an error of
        # the step (with a clear message) rather than a failing scenario.
        try:
            config = Config(invocation.config)
            names = scenario_names(config.directory)
            for name in names:
                Scenario(name, os.path.join(config.directory, name + ".json"))
        except ConfigError as e:
            raise Err(str(e)) from None
        return names

    def evaluate(self, scenario: str, invocation: types.Invocation) -> types.Verdict:
        try:
            return run_scenario(scenario, invocation)
        except Exception as e:  # a bug here must not trap: report it instead
            return types.Verdict(False, one_line(f"the evaluator failed: {type(e).__name__}: {e}"), traceback.format_exc())
