// {{name}}: a Cleanroom evaluator plugin written in JavaScript.
//
// An evaluator judges a program, the step's `subject` (a `wasi:cli` command
// component built by earlier steps), against scenarios of its own. This one
// has two:
// - `echo-hello`: runs the subject with the argument `hello` and expects it
//   to print `hello` and a newline (or the step's `config.expect_stdout`);
// - `exit-zero`: runs it with no arguments and expects exit code 0.
// Config (the step's `config` table):
//
//   expect_stdout = "hello\n"   # optional; what `echo-hello` expects
//
// build.sh turns this module into a WebAssembly component with
// componentize-js, for world.wit (the `evaluator` world of wit/plugin.wit).
// The host calls `scenarios` once per attempt, then `evaluate` for each
// scenario, each time in a fresh instance. `run` from the imported `subject`
// interface starts the subject in a sandbox of its own and returns its exit
// code, stdout and stderr. A verdict's `summary` is the one line a retried
// stage is told: in a real evaluator, say what failed without giving the
// scenario away.
//
// Two things to know about componentize-js:
// - The top level of this module runs at BUILD time (the engine is
//   snapshotted after it), so do not call the subject there.
// - Return a value for `ok`; throw a STRING for `err`. A thrown Error object
//   makes the component trap. Imported functions that return a `result`
//   throw on `err`, with the error value in the exception's `payload`.

import { run as runSubject } from 'cleanroom:plugin/subject@0.1.3';

const SCENARIOS = ['echo-hello', 'exit-zero'];

/** The export `scenarios`: the scenario names, or throws a string (the step is then an `error`). */
export function scenarios(invocation) {
  try {
    parseConfig(invocation.config); // bad config is an error before anything runs
    return SCENARIOS;
  } catch (e) {
    throw typeof e === 'string' ? e : `{{name}}: ${e}`;
  }
}

/** The export `evaluate`: runs one scenario against the subject and returns its verdict. */
export function evaluate(scenario, invocation) {
  try {
    const expected = parseConfig(invocation.config);
    if (scenario === 'echo-hello') {
      const out = run(['hello']);
      const got = new TextDecoder().decode(out.stdout);
      if (got === expected) return verdict(true, 'passed');
      return verdict(false, `expected stdout ${JSON.stringify(expected)}, got ${JSON.stringify(got.slice(0, 60))}`, got);
    }
    if (scenario === 'exit-zero') {
      const out = run([]);
      if (out.exitCode === 0) return verdict(true, 'passed');
      // Never what the subject chose in a summary: the summary reaches the stage.
      return verdict(false, 'expected exit code 0, got another', `exit code ${out.exitCode}\n${new TextDecoder().decode(out.stderr)}`);
    }
    return verdict(false, `unknown scenario ${JSON.stringify(scenario)}`);
  } catch (e) {
    // A string from parseConfig or run(); anything else is a bug in here.
    return verdict(false, typeof e === 'string' ? e : `{{name}}: ${e}`);
  }
}

/** Runs the subject with `args` and no stdin; throws a string when it could not run at all. */
function run(args) {
  try {
    return runSubject(args, new Uint8Array());
  } catch (e) {
    throw `the subject could not run: ${e.payload ?? e}`;
  }
}

function verdict(passed, summary, detail = '') {
  return { passed, summary, detail };
}

/**
 * What `echo-hello` expects on stdout, from the step's config JSON. Unknown
 * keys are refused: a misspelt key should be an error the user sees, not a
 * setting silently ignored.
 */
function parseConfig(text) {
  const config = JSON.parse(text);
  for (const key of Object.keys(config)) {
    if (key !== 'expect_stdout') throw `invalid config: unknown key \`${key}\` (known: expect_stdout)`;
  }
  const expected = config.expect_stdout ?? 'hello\n';
  if (typeof expected !== 'string') throw 'invalid config: `expect_stdout` must be a string';
  return expected;
}
