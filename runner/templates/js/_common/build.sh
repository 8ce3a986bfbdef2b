#!/usr/bin/env bash
# Builds this {{kind}} plugin, {{kind}}.js, into the WebAssembly component
# {{name}}.wasm with `jco componentize` (componentize-js), against world.wit:
# the `{{kind}}` world of wit/plugin.wit plus the WASI filesystem.
#
# jco is taken from, in this order:
#   ./node_modules      after `npm install`: the versions package.json pins
#                       (jco 1.35.0 with componentize-js 0.23.0)
#   `jco` on PATH       whatever version that is (a warning if not 1.35.0)
#   npx                 jco 1.35.0, downloaded once into npm's cache (it
#                       brings the componentize-js it depends on, 0.22.0)
# Needs Node.js 20 or newer. The first build takes a while (it installs or
# loads a JavaScript engine of about 10 MB); later ones take 10-20 s.
set -euo pipefail
cd "$(dirname "$0")"

version="1.35.0"
# preview2-shim 0.26.1 stopped giving jco's WIT tools access to files, which
# breaks `jco componentize` 1.35.0; package.json pins 0.26.0 the same way.
shim="@bytecodealliance/preview2-shim@0.26.0"

if [[ -x node_modules/.bin/jco ]]; then
  bin="$PWD/node_modules/.bin"
elif command -v jco >/dev/null; then
  bin="$(dirname "$(command -v jco)")"
  found="$(jco --version)"
  [[ "$found" == "$version" ]] || echo "build.sh: warning: jco $found found, this plugin is tested with $version" >&2
elif command -v npx >/dev/null; then
  bin="$(npx --yes --loglevel=error -p "@bytecodealliance/jco@$version" -p "$shim" -c 'dirname "$(command -v jco)"')"
else
  echo "build.sh: no jco: run \`npm install\` here (needs Node.js 20+), or put jco $version on PATH" >&2
  exit 1
fi
jco="$bin/jco"

# The WIT directory: world.wit, the plugin contract as a dependency, and the
# WASI packages jco ships (all but wasi:http, which no plugin may import).
wasi="$(dirname "$(readlink -f "$jco")")/../lib/wit/builtin/0.2.12"
[[ -d "$wasi/wasi-filesystem" ]] || { echo "build.sh: no WASI 0.2.12 WIT beside $jco" >&2; exit 1; }
rm -rf build
mkdir -p build/wit/deps/cleanroom-plugin
cp world.wit build/wit/
cp wit/plugin.wit build/wit/deps/cleanroom-plugin/
for pkg in "$wasi"/wasi-*; do
  [[ "$(basename "$pkg")" == wasi-http ]] && continue
  mkdir -p "build/wit/deps/$(basename "$pkg")"
  cp "$pkg"/*.wit "build/wit/deps/$(basename "$pkg")/"
done

# componentize-js evaluates {{kind}}.js once at build time and snapshots the
# engine, so an error at the top level of the module shows up here.
# `--disable http fetch-event` leaves out fetch(), whose wasi:http imports
# the runner would refuse.
"$jco" componentize {{kind}}.js --wit build/wit --world-name {{kind}} \
  --disable http fetch-event -o "{{name}}.wasm.tmp" >/dev/null
mv "{{name}}.wasm.tmp" "{{name}}.wasm"
echo "build.sh: built {{name}}.wasm ($(wc -c <"{{name}}.wasm") bytes)" >&2
