// {{name}}: a Cleanroom stage plugin written in JavaScript.
//
// It writes `GREETING.txt`, one line holding the configured greeting, into
// the top of the step's first writable mount. Config (the step's `config`
// table):
//
//   greeting = "hello"   # optional; one line of text (default "hello")
//
// build.sh turns this module into a WebAssembly component with
// componentize-js, for world.wit (the `stage` world of wit/plugin.wit plus
// the WASI filesystem). The host calls `run` once with an `invocation`: the
// step id, the config as JSON text, the mounts (reads first, then writes;
// `writable` tells them apart), the attempt number and, on a retry, the
// feedback lines. Writes are transactional: the stage works on a copy, and
// the workspace changes only when `run` returns; throwing discards every
// write.
//
// Two things to know about componentize-js:
// - The top level of this module runs at BUILD time (the engine is
//   snapshotted after it), so do not touch files or the invocation there.
// - Return a value for `ok`; throw a STRING for `err`. A thrown Error object
//   (a bug, a WASI call that failed) makes the component trap, which the
//   step reports as `error` without your message: `run` below turns any
//   exception into a string.

import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

/** The export of the `stage` world: a one-line note, or throws a string. */
export function run(invocation) {
  try {
    const greeting = parseConfig(invocation.config);
    const target = invocation.mounts.find((mount) => mount.writable);
    if (target === undefined) throw 'no writable mount: give the step `write = ["DIR"]`';
    const path = target.path === '/' ? '/GREETING.txt' : `${target.path}/GREETING.txt`;
    writeText(path, `${greeting}\n`);
    return `wrote ${path}`;
  } catch (e) {
    throw typeof e === 'string' ? e : `{{name}}: ${e}`;
  }
}

/**
 * The greeting, from the step's config JSON. Unknown keys are refused: a
 * misspelt key should be an error the user sees, not a setting silently
 * ignored.
 */
function parseConfig(text) {
  const config = JSON.parse(text);
  for (const key of Object.keys(config)) {
    if (key !== 'greeting') throw `invalid config: unknown key \`${key}\` (known: greeting)`;
  }
  const greeting = config.greeting ?? 'hello';
  if (typeof greeting !== 'string' || greeting === '' || /[\r\n]/.test(greeting)) {
    throw 'invalid config: `greeting` must be one non-empty line of text';
  }
  return greeting;
}

// --- Files, through WASI -------------------------------------------------
//
// The host preopens one directory per mount, at the mount's guest path, read
// and write for the `write` mounts. A path is opened relative to the preopen
// with the longest matching prefix. WASI calls throw an Error whose `payload`
// is the error code (`no-entry`, `access`, ...). `[Symbol.dispose]()`
// releases a handle.

let preopens = null;

/** [preopened directory, path relative to it] for a guest path. */
function resolve(path) {
  preopens ??= getDirectories(); // once per run, never at build time
  let best = null;
  for (const [dir, at] of preopens) {
    const inside = at === '/' || path === at || path.startsWith(`${at}/`);
    if (inside && (best === null || at.length > best[1].length)) best = [dir, at];
  }
  if (best === null) throw `no mount holds ${path}`;
  return [best[0], path.slice(best[1].length).replace(/^\/+/, '')];
}

/** Creates or replaces the file at the guest path `path` with `text` (UTF-8). */
function writeText(path, text) {
  const [base, rel] = resolve(path);
  let file = null;
  try {
    file = base.openAt({}, rel, { create: true, truncate: true }, { write: true });
    const bytes = new TextEncoder().encode(text);
    let done = 0;
    while (done < bytes.length) {
      done += Number(file.write(bytes.subarray(done), BigInt(done)));
    }
  } catch (e) {
    throw `cannot write ${path}: ${e.payload ?? e}`;
  } finally {
    file?.[Symbol.dispose]();
  }
}
