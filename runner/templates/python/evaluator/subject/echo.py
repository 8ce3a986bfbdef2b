"""The test subject of {{name}}: a tiny echo program, built by build.sh into
the `wasi:cli` command component tests/subject.wasm.

It prints its arguments joined by spaces, and a newline, then exits with 0.
componentize-py's CPython fills `sys.argv` (program name first) and
`sys.stdin`, `sys.stdout` and `sys.exit` work as usual.
"""

import sys

from wit_world import exports


class Run(exports.Run):
    """The export `wasi:cli/run`: the entry point of a command."""

    def run(self) -> None:
        print(" ".join(sys.argv[1:]))
