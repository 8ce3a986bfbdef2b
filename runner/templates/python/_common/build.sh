#!/usr/bin/env bash
# Builds this {{kind}} plugin, app.py, into the WebAssembly component
# {{name}}.wasm with componentize-py, against the plugin contract in
# wit/plugin.wit (world `{{kind}}`); an evaluator's test subject,
# subject/echo.py, goes into the `wasi:cli` command component tests/subject.wasm.
#
# Needs componentize-py on PATH. It is pinned at 0.25.1: another version may
# build a different component. To install it (Python 3.10 or newer):
#   python3 -m venv .venv && .venv/bin/pip install componentize-py==0.25.1
#   export PATH="$PWD/.venv/bin:$PATH"
set -euo pipefail
cd "$(dirname "$0")"

pinned="0.25.1"
if ! command -v componentize-py >/dev/null; then
  echo "build.sh: componentize-py is not on PATH; install it with:" >&2
  echo "  python3 -m venv .venv && .venv/bin/pip install componentize-py==$pinned" >&2
  echo "  export PATH=\"\$PWD/.venv/bin:\$PATH\"" >&2
  exit 1
fi
found="$(componentize-py --version | awk '{print $2}')"
if [[ "$found" != "$pinned" ]]; then
  echo "build.sh: warning: componentize-py $found found, this plugin is tested with $pinned" >&2
fi

# componentize-py runs each module once at build time (to snapshot the
# initialized interpreter), so an import error shows up here, not later.
componentize-py --quiet -d wit -w {{kind}} componentize app -o "{{name}}.wasm.tmp"
mv "{{name}}.wasm.tmp" "{{name}}.wasm"
echo "build.sh: built {{name}}.wasm ($(wc -c <"{{name}}.wasm") bytes)" >&2

if [[ -d subject ]]; then
  (cd subject && componentize-py --quiet -d wit -w echo componentize echo -o ../tests/subject.wasm.tmp)
  mv tests/subject.wasm.tmp tests/subject.wasm
  echo "build.sh: built tests/subject.wasm ($(wc -c <tests/subject.wasm) bytes)" >&2
fi
