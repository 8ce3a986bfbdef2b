// The test subject of {{name}}: a tiny echo program, built by build.sh into
// the `wasi:cli` command component tests/subject.wasm (world.wit beside this
// file).
//
// It prints its arguments joined by spaces, and a newline, then exits with 0.
// A command exports `wasi:cli/run`: an object `run` whose `run()` method is
// the program. Returning ends it with exit code 0; throwing a string would
// end it with exit code 1. WASI gives the arguments with a program name
// first, so it is dropped.

import { getArguments } from 'wasi:cli/environment@0.2.12';
import { getStdout } from 'wasi:cli/stdout@0.2.12';

export const run = {
  run() {
    const line = `${getArguments().slice(1).join(' ')}\n`;
    const stdout = getStdout();
    stdout.blockingWriteAndFlush(new TextEncoder().encode(line));
    stdout[Symbol.dispose]();
  },
};
