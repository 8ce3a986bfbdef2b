// {{name}}: a Cleanroom check plugin written in JavaScript.
//
// It reads every file in the step's mounts and reports each line that
// contains one of the configured words as an `error` finding `{{name}}`, so
// the step fails while any is left. Config (the step's `config` table):
//
//   words = ["FIXME"]   # optional; the words to look for (default ["FIXME"])
//
// build.sh turns this module into a WebAssembly component with
// componentize-js, for world.wit (the `check` world of wit/plugin.wit plus
// the WASI filesystem). The host calls `check` once with an `invocation`:
// the step id, the config as JSON text and the mounts. The plugin sees only
// those mounts, at their guest paths (`read = ["."]` appears as `/`,
// `read = ["src"]` as `/src`), and nothing else: no network, no environment.
//
// Two things to know about componentize-js:
// - The top level of this module runs at BUILD time (the engine is
//   snapshotted after it), so do not touch files or the invocation there.
// - Return a value for `ok`; throw a STRING for `err`. A thrown Error object
//   (a bug, a WASI call that failed) makes the component trap, which the
//   step reports as `error` without your message: `check` below turns any
//   exception into a string.

import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

// The rule name every finding carries: users filter reports on it.
const RULE = '{{name}}';

/** The export of the `check` world: the findings, or throws a string. */
export function check(invocation) {
  try {
    const words = parseConfig(invocation.config);
    const findings = [];
    for (const mount of invocation.mounts) {
      for (const path of filesUnder(mount.path)) {
        const text = readText(path);
        if (text === null) continue; // unreadable or not UTF-8: not ours to judge
        text.split(/\r\n|\r|\n/).forEach((line, index) => {
          for (const word of words) {
            const at = line.indexOf(word);
            if (at < 0) continue;
            findings.push({
              rule: RULE,
              severity: 'error', // an enum is its name as a string
              message: `\`${word}\` left in the file: resolve it or remove it`,
              path, // the guest path; reports show it workspace-relative
              line: index + 1,
              column: [...line.slice(0, at)].length + 1, // 1-based, in characters
            });
          }
        });
      }
    }
    return findings;
  } catch (e) {
    throw typeof e === 'string' ? e : `{{name}}: ${e}`;
  }
}

/**
 * The words to look for, from the step's config JSON. Unknown keys are
 * refused: a misspelt key should be an error the user sees, not a setting
 * silently ignored.
 */
function parseConfig(text) {
  const config = JSON.parse(text);
  for (const key of Object.keys(config)) {
    if (key !== 'words') throw `invalid config: unknown key \`${key}\` (known: words)`;
  }
  const words = config.words ?? ['FIXME'];
  if (!Array.isArray(words) || words.length === 0 || !words.every((w) => typeof w === 'string' && w !== '')) {
    throw 'invalid config: `words` must be a non-empty list of non-empty strings';
  }
  return words;
}

// --- Files, through WASI -------------------------------------------------
//
// The host preopens one directory per mount, at the mount's guest path. A
// path is opened relative to the preopen with the longest matching prefix
// (`/.cleanroom`, an empty preopen the host adds when `/` is mounted, hides
// the run directory). WASI calls throw an Error whose `payload` is the error
// code (`no-entry`, `access`, ...). `[Symbol.dispose]()` releases a handle.

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

/** Every regular file at or below the guest path `path`, sorted. Symbolic links are not followed. */
function filesUnder(path) {
  const [base, rel] = resolve(path);
  const type = rel === '' ? 'directory' : base.statAt({}, rel).type;
  if (type === 'regular-file') return [path];
  if (type !== 'directory') return [];
  const dir = rel === '' ? base : base.openAt({}, rel, { directory: true }, { read: true });
  const entries = [];
  const stream = dir.readDirectory();
  for (let e = stream.readDirectoryEntry(); e !== undefined; e = stream.readDirectoryEntry()) entries.push(e);
  stream[Symbol.dispose]();
  if (dir !== base) dir[Symbol.dispose]();
  const files = [];
  for (const { type: kind, name } of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const child = path === '/' ? `/${name}` : `${path}/${name}`;
    if (kind === 'directory') files.push(...filesUnder(child));
    else if (kind === 'regular-file') files.push(child);
  }
  return files;
}

/** The contents of a file as text, or null if it cannot be read or is not UTF-8. */
function readText(path) {
  let file = null;
  try {
    const [base, rel] = resolve(path);
    file = base.openAt({}, rel, {}, { read: true });
    const bytes = new Uint8Array(Number(file.stat().size));
    let size = 0;
    while (size < bytes.length) {
      const [chunk, end] = file.read(BigInt(bytes.length - size), BigInt(size));
      bytes.set(chunk, size);
      size += chunk.length;
      if (end || chunk.length === 0) break;
    }
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, size));
  } catch {
    return null;
  } finally {
    file?.[Symbol.dispose]();
  }
}
