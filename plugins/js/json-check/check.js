// json-check: a Cleanroom check plugin, written in JavaScript, that reports
// JSON files which do not parse.
//
// Built into a WebAssembly component with componentize-js (through jco) by
// scripts/build-js-plugins, against world.wit beside this file: Cleanroom's
// `check` world plus `wasi:filesystem/preopens`, which is how this module
// reaches the files (componentize-js has no `fs` module).
//
// Config (the step's `config` table; unknown keys are an error):
//   include = ["**/*.json"]   globs of workspace-relative paths to check
//                             (an empty list selects every file)
//   exclude = []              globs of paths to skip; `dir/**` skips the
//                             whole directory without reading it
// Globs: `*` any characters but `/`, `?` one character but `/`, `**` as a
// whole path segment any number of directories (`**/*.json` also matches
// `a.json`). Every other character matches itself.
//
// Findings:
//   invalid-json  (error)    the first syntax error of a file, with its line
//                            and column (1-based; columns count characters),
//                            or bytes that are not UTF-8
//   duplicate-key (warning)  an object key repeated in the same object
//                            (JSON.parse silently keeps the last value)
//
// The step is an `error` (the plugin returns err) on bad config or when a
// selected file cannot be read.
//
// Files are checked by the validating scanner at the end of this file
// (RFC 8259 grammar), not by JSON.parse: JSON.parse says neither where an
// error is nor whether a key repeats, and builds the whole value in memory.
// The scanner agrees with JSON.parse on validity (tested against it on half
// a million generated and mutated documents) and keeps memory to a few
// times the file's size. Its per-character work is done by sticky regexes:
// this module runs in SpiderMonkey's interpreter (componentize-js has no
// JIT), where it checks about 2 MB of JSON a second.

import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

const KNOWN_KEYS = ['include', 'exclude'];
const DEFAULTS = { include: ['**/*.json'], exclude: [] };
const READ_CHUNK = 1n << 20n;

/**
 * The `check` export. Returning an array is `ok(findings)`; throwing a
 * string is `err(string)`. (componentize-js turns a thrown string into the
 * `err` case; a thrown Error object would make the component trap.)
 */
export function check(invocation) {
  try {
    const config = parseConfig(invocation.config);
    const select = selector(config.include, config.exclude);
    const findings = [];
    for (const guest of walk(invocation.mounts.map((m) => m.path), select)) {
      findings.push(...checkFile(guest, readFile(guest)));
    }
    return findings;
  } catch (e) {
    throw typeof e === 'string' ? e : `json-check: internal error: ${e}`;
  }
}

// ---------------------------------------------------------------- config --

function parseConfig(text) {
  let raw;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw `config is not JSON: ${e.message}`;
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw 'config must be a table';
  for (const key of Object.keys(raw)) {
    if (!KNOWN_KEYS.includes(key)) throw `unknown config key \`${key}\` (known: ${KNOWN_KEYS.join(', ')})`;
  }
  const config = { ...DEFAULTS };
  for (const key of KNOWN_KEYS) {
    if (!(key in raw)) continue;
    const value = raw[key];
    if (!Array.isArray(value) || !value.every((g) => typeof g === 'string')) {
      throw `config \`${key}\` must be a list of glob strings`;
    }
    config[key] = value;
  }
  return config;
}

// ----------------------------------------------------------------- globs --

/** Compiles a glob (see the header) to an anchored RegExp. */
function globToRegExp(glob) {
  if (glob === '') throw 'an empty glob matches nothing; remove it';
  if (glob.startsWith('/')) throw `glob \`${glob}\` must be relative to the workspace root (no leading /)`;
  const segments = glob.split('/');
  let re = '';
  segments.forEach((segment, k) => {
    const last = k === segments.length - 1;
    if (segment === '**') {
      re += last ? '.*' : '(?:[^/]+/)*';
      return;
    }
    for (let i = 0; i < segment.length; i++) {
      const c = segment[i];
      if (c === '*') {
        while (segment[i + 1] === '*') i++;
        re += '[^/]*';
      } else if (c === '?') {
        re += '[^/]';
      } else {
        re += c.replace(/[\\^$.|+(){}[\]]/g, '\\$&');
      }
    }
    if (!last) re += '/';
  });
  return new RegExp(`^${re}$`);
}

/**
 * Which workspace-relative paths to check (`file`) and which directories
 * need not be entered at all (`prune`: those an exclude `dir/**` covers).
 */
function selector(include, exclude) {
  const inc = include.map(globToRegExp);
  const exc = exclude.map(globToRegExp);
  const pruned = exclude.filter((g) => g.endsWith('/**')).map((g) => globToRegExp(g.slice(0, -3)));
  return {
    file: (rel) => (inc.length === 0 || inc.some((r) => r.test(rel))) && !exc.some((r) => r.test(rel)),
    prune: (rel) => pruned.some((r) => r.test(rel)),
  };
}

// ----------------------------------------------------------- filesystem --
//
// The runner gives one WASI preopen per mount, at the mount's guest path
// (`/`, `/src`), plus an empty one at `/.cleanroom` when the workspace root
// is mounted. Like a C library would, a guest path is opened relative to the
// preopen with the longest matching prefix. WASI calls throw an Error whose
// `payload` is the error code (`no-entry`, `access`, ...). Handles are
// released with `Symbol.dispose` as soon as they are no longer needed.

let preopens = null;

/** [preopen descriptor, path relative to it] for a guest path, or null. */
function resolve(guest) {
  preopens ??= getDirectories();
  let best = null;
  for (const [descriptor, path] of preopens) {
    const inside = path === '/' || guest === path || guest.startsWith(`${path}/`);
    if (inside && (best === null || path.length > best[1].length)) best = [descriptor, path];
  }
  if (best === null) return null;
  const rel = guest.slice(best[1].length).replace(/^\/+/, '');
  return [best[0], rel];
}

function release(resource) {
  resource?.[Symbol.dispose]?.();
}

/** Opens a guest path, or returns null when it cannot be opened. */
function open(guest, openFlags) {
  const found = resolve(guest);
  if (found === null) return null;
  const [base, rel] = found;
  if (rel === '') return { descriptor: base, owned: false };
  try {
    return { descriptor: base.openAt({ symlinkFollow: false }, rel, openFlags, { read: true }), owned: true };
  } catch {
    return null;
  }
}

function joinGuest(dir, name) {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

/** The guest paths of every selected regular file below the mounts, sorted. */
function walk(mounts, select) {
  const found = new Set();
  const visitDir = (guest) => {
    if (guest !== '/' && select.prune(guest.slice(1))) return;
    const dir = open(guest, { directory: true });
    if (dir === null) return; // unreadable directories are skipped
    const entries = [];
    let stream = null;
    try {
      stream = dir.descriptor.readDirectory();
      for (let e = stream.readDirectoryEntry(); e !== undefined; e = stream.readDirectoryEntry()) {
        entries.push(e);
      }
    } catch {
      // keep what was read
    } finally {
      release(stream);
      if (dir.owned) release(dir.descriptor);
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const { type, name } of entries) {
      const child = joinGuest(guest, name);
      if (type === 'directory') visitDir(child);
      else if (type === 'regular-file' && select.file(child.slice(1))) found.add(child);
      // symbolic links are not followed; they cannot leave the mount anyway
    }
  };
  for (const mount of mounts) {
    const guest = mount.length > 1 ? mount.replace(/\/+$/, '') : mount;
    const resolved = resolve(guest);
    if (resolved === null) continue;
    const [base, rel] = resolved;
    let type = 'directory';
    if (rel !== '') {
      try {
        type = base.statAt({ symlinkFollow: false }, rel).type;
      } catch {
        continue;
      }
    }
    if (type === 'directory') visitDir(guest);
    else if (type === 'regular-file' && select.file(guest.slice(1))) found.add(guest);
  }
  return [...found].sort();
}

/** The bytes of a file; throws a string (the step becomes an error) if it cannot be read. */
function readFile(guest) {
  const file = open(guest, {});
  if (file === null) throw `cannot open ${guest}`;
  try {
    // Read into one buffer of the file's size (it cannot change under a
    // read-only mount; should it grow anyway, the rest is appended).
    let all = new Uint8Array(Number(file.descriptor.stat().size));
    let size = 0;
    for (;;) {
      const [bytes, end] = file.descriptor.read(READ_CHUNK, BigInt(size));
      if (size + bytes.length > all.length) {
        const grown = new Uint8Array(Math.max(all.length * 2, size + bytes.length));
        grown.set(all.subarray(0, size));
        all = grown;
      }
      all.set(bytes, size);
      size += bytes.length;
      if (end || bytes.length === 0) break;
    }
    return all.subarray(0, size);
  } catch (e) {
    throw `cannot read ${guest}: ${e.payload ?? e}`;
  } finally {
    if (file.owned) release(file.descriptor);
  }
}

// ------------------------------------------------------------- findings --

const MAX_DUPLICATES = 20;

function checkFile(guest, bytes) {
  let text;
  try {
    // Native and fast; drops a leading byte order mark, as RFC 8259 allows.
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    const bad = Math.max(0, firstInvalidUtf8(bytes));
    const [line, column] = lineColumn(new TextDecoder().decode(bytes.subarray(0, bad)));
    return [finding('invalid-json', 'error', `not UTF-8 text (byte 0x${hex(bytes[bad] ?? 0)}); JSON must be UTF-8`, guest, line, column)];
  }
  const { error, duplicates } = scanJson(text);
  const findings = [];
  if (error) {
    const [line, column] = lineColumn(text.slice(0, error.offset));
    findings.push(finding('invalid-json', 'error', error.message, guest, line, column));
  }
  for (const dup of duplicates.slice(0, MAX_DUPLICATES)) {
    const [line, column] = lineColumn(text.slice(0, dup.offset));
    const [firstLine] = lineColumn(text.slice(0, dup.first));
    const message = `key ${quote(dup.key)} repeats one at line ${firstLine} of the same object; JSON.parse keeps the last`;
    findings.push(finding('duplicate-key', 'warning', message, guest, line, column));
  }
  if (duplicates.length > MAX_DUPLICATES) {
    const more = duplicates.length - MAX_DUPLICATES;
    findings.push(finding('duplicate-key', 'warning', `${more} more duplicate keys in this file`, guest, undefined, undefined));
  }
  return findings;
}

function finding(rule, severity, message, path, line, column) {
  return { rule, severity, message, path, line, column };
}

function hex(byte) {
  return byte.toString(16).toUpperCase().padStart(2, '0');
}

function quote(key) {
  return JSON.stringify(key.length > 40 ? `${key.slice(0, 37)}...` : key);
}

/**
 * 1-based line and column just after `before` (the text up to a position).
 * Lines end at `\n`, `\r\n` or a lone `\r`; columns count characters (code
 * points), not UTF-16 units.
 */
function lineColumn(before) {
  const lines = before.split(/\r\n|\r|\n/);
  return [lines.length, [...lines[lines.length - 1]].length + 1];
}

/** Byte offset of the first byte that is not well-formed UTF-8, or -1. */
function firstInvalidUtf8(bytes) {
  const n = bytes.length;
  for (let i = 0; i < n; ) {
    const b = bytes[i];
    let need;
    let min = 0x80;
    let max = 0xbf;
    if (b < 0x80) {
      i++;
      continue;
    } else if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b === 0xe0) min = 0xa0; // no overlong forms
      if (b === 0xed) max = 0x9f; // no surrogates
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b === 0xf0) min = 0x90;
      if (b === 0xf4) max = 0x8f; // nothing above U+10FFFF
    } else return i;
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      const lo = k === 1 ? min : 0x80;
      const hi = k === 1 ? max : 0xbf;
      if (c === undefined || c < lo || c > hi) return i;
    }
    i += need + 1;
  }
  return -1;
}

// -------------------------------------------------------------- scanner --
//
// An iterative validating scanner for RFC 8259 JSON (no recursion, so deep
// nesting cannot overflow the stack). It stops at the first error and returns
// { error: { offset, message } | null, duplicates: [{ key, offset, first }] }
// where offsets index the string.

function scanJson(text) {
  const n = text.length;
  const duplicates = [];
  const stack = []; // { close: '}' | ']', at, keys?: Map<key, offset> }
  let i = 0;

  class Fail {
    constructor(offset, message) {
      this.offset = offset;
      this.message = message;
    }
  }
  const fail = (offset, message) => {
    throw new Fail(offset, message);
  };
  const isWs = (c) => c === ' ' || c === '\t' || c === '\n' || c === '\r';
  // Sticky regexes do the per-character work in native code; the loops
  // below only run to explain an error.
  const WS = /[ \t\n\r]*/y;
  const STRING = /"(?:[^"\\\x00-\x1f]+|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
  const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?(?![0-9.eE])/y;
  const skipWs = (j) => {
    const c = text.charCodeAt(j);
    if (c > 0x20 || c !== c) return j; // not whitespace, or the end (NaN)
    WS.lastIndex = j;
    WS.test(text);
    return WS.lastIndex;
  };
  const isDigit = (c) => c >= '0' && c <= '9';
  const describe = (j) => {
    if (j >= n) return 'the end of the file';
    const cp = text.codePointAt(j);
    const u = `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
    if (cp < 0x20 || cp === 0x7f) return `control character ${u}`;
    if (cp > 0x7e) return `'${String.fromCodePoint(cp)}' (${u})`;
    return cp === 0x27 ? `"'"` : `'${String.fromCodePoint(cp)}'`;
  };
  const where = (frame) => `opened at line ${lineColumn(text.slice(0, frame.at))[0]}`;
  // Hints for mistakes people make with JSON.
  const hint = (j) => {
    const c = text[j];
    if (c === "'") return ' (strings and keys need double quotes)';
    if (c === '/' && (text[j + 1] === '/' || text[j + 1] === '*')) return ' (comments are not allowed in JSON)';
    return '';
  };

  // Scans the string starting at the quote at j; returns the index after it.
  const scanString = (j) => {
    STRING.lastIndex = j;
    if (STRING.test(text)) return STRING.lastIndex;
    const start = j++;
    for (;;) {
      if (j >= n) fail(start, 'unterminated string (it starts here)');
      const c = text[j];
      const code = text.charCodeAt(j);
      if (c === '"') return j + 1;
      if (c === '\n' || c === '\r') fail(j, 'line break inside a string: a string was not closed, or the break must be written \\n');
      if (code < 0x20) fail(j, `${describe(j)} inside a string must be escaped`);
      if (c === '\\') {
        const e = text[j + 1];
        if (e === 'u') {
          for (let k = 2; k < 6; k++) {
            if (!/[0-9a-fA-F]/.test(text[j + k] ?? '')) fail(j, 'invalid \\u escape: 4 hex digits must follow \\u');
          }
          j += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) {
          j += 2;
        } else {
          fail(j, j + 1 >= n ? 'unterminated string (it ends in a backslash)' : `invalid escape '\\${e}' in a string`);
        }
      } else {
        j++;
      }
    }
  };

  const scanNumber = (j) => {
    NUMBER.lastIndex = j;
    if (NUMBER.test(text)) return NUMBER.lastIndex;
    const start = j;
    if (text[j] === '-') j++;
    if (text[j] === '0') {
      j++;
      if (isDigit(text[j])) fail(start, 'numbers cannot have leading zeros');
    } else if (isDigit(text[j])) {
      while (isDigit(text[j])) j++;
    } else {
      fail(j, `expected a digit after '-', found ${describe(j)}`);
    }
    if (text[j] === '.') {
      j++;
      if (!isDigit(text[j])) fail(j, `expected a digit after the decimal point, found ${describe(j)}`);
      while (isDigit(text[j])) j++;
    }
    if (text[j] === 'e' || text[j] === 'E') {
      j++;
      if (text[j] === '+' || text[j] === '-') j++;
      if (!isDigit(text[j])) fail(j, `expected a digit in the exponent, found ${describe(j)}`);
      while (isDigit(text[j])) j++;
    }
    return j;
  };

  // At j (whitespace skipped) inside an object: a key, then ':'. Returns the
  // index after the colon.
  const scanKey = (j, frame) => {
    if (text[j] !== '"') {
      if (j >= n) fail(j, `unexpected end of file: '}' missing (object ${where(frame)})`);
      fail(j, `expected a key in double quotes, found ${describe(j)}${hint(j) || (/[A-Za-z_$]/.test(text[j]) ? ' (keys need double quotes)' : '')}`);
    }
    const end = scanString(j);
    const raw = text.slice(j + 1, end - 1);
    const key = raw.includes('\\') ? JSON.parse(text.slice(j, end)) : raw;
    if (frame.keys.has(key)) duplicates.push({ key, offset: j, first: frame.keys.get(key) });
    else frame.keys.set(key, j);
    const colon = skipWs(end);
    if (text[colon] !== ':') fail(colon, `expected ':' after the key, found ${describe(colon)}`);
    return colon + 1;
  };

  try {
    i = skipWs(i);
    if (i >= n) fail(i, 'empty file: no JSON value');
    for (;;) {
      // A value is expected at i.
      i = skipWs(i);
      const c = text[i];
      if (c === '{' || c === '[') {
        const frame = c === '{' ? { close: '}', at: i, keys: new Map() } : { close: ']', at: i };
        const j = skipWs(i + 1);
        if (text[j] === frame.close) {
          i = j + 1; // empty container: a complete value
        } else {
          stack.push(frame);
          i = c === '{' ? scanKey(j, frame) : j;
          continue;
        }
      } else if (c === '"') {
        i = scanString(i);
      } else if (c === '-' || isDigit(c)) {
        i = scanNumber(i);
      } else if (text.startsWith('true', i)) {
        i += 4;
      } else if (text.startsWith('false', i)) {
        i += 5;
      } else if (text.startsWith('null', i)) {
        i += 4;
      } else if (i >= n) {
        const top = stack[stack.length - 1];
        fail(i, `unexpected end of file: '${top.close}' missing (${top.close === '}' ? 'object' : 'array'} ${where(top)})`);
      } else {
        const top = stack[stack.length - 1];
        let before = i - 1;
        while (before >= 0 && isWs(text[before])) before--;
        const trailing = top && text[i] === top.close && text[before] === ',';
        fail(i, trailing ? `expected a value, found '${top.close}' (trailing commas are not allowed)` : `expected a value, found ${describe(i)}${hint(i)}`);
      }
      // A value ended: close containers until one needs another element.
      for (;;) {
        i = skipWs(i);
        const top = stack[stack.length - 1];
        if (top === undefined) {
          if (i < n) fail(i, `unexpected ${describe(i)} after the JSON value${hint(i)}`);
          return { error: null, duplicates };
        }
        if (text[i] === top.close) {
          stack.pop();
          i++;
          continue;
        }
        const kind = top.close === '}' ? 'object' : 'array';
        if (text[i] === ',') {
          i = skipWs(i + 1);
          if (kind === 'object') {
            if (text[i] === '}') fail(i, "expected a key, found '}' (trailing commas are not allowed)");
            i = scanKey(i, top);
          }
          break;
        }
        if (i >= n) fail(i, `unexpected end of file: '${top.close}' missing (${kind} ${where(top)})`);
        fail(i, `expected ',' or '${top.close}' after ${kind === 'object' ? 'a member' : 'an element'}, found ${describe(i)}${hint(i)}`);
      }
    }
  } catch (e) {
    if (e instanceof Fail) return { error: { offset: e.offset, message: e.message }, duplicates };
    throw e;
  }
}
