#!/usr/bin/env bash
# Builds this {{kind}} plugin (src/lib.rs) into the WebAssembly component
# {{name}}.wasm, against the plugin contract in wit/plugin.wit (world
# `{{kind}}`, through the vendored SDK in sdk/); an evaluator's test subject
# (subject/, a `wasi:cli` command) goes into tests/subject.wasm.
#
# Needs Rust (https://rustup.rs). Installs the wasm32-wasip2 target through
# rustup when it is missing.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v cargo >/dev/null; then
  echo "build.sh: cargo is not on PATH; install Rust from https://rustup.rs" >&2
  exit 1
fi
if command -v rustup >/dev/null; then
  if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "build.sh: installing the wasm32-wasip2 target" >&2
    rustup target add wasm32-wasip2
  fi
fi

# The plugin. The cdylib is named after the crate, with `-` turned into `_`.
cargo build --quiet --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{snake}}.wasm" "{{name}}.wasm.tmp"
mv "{{name}}.wasm.tmp" "{{name}}.wasm"
echo "build.sh: built {{name}}.wasm ($(wc -c <"{{name}}.wasm") bytes)" >&2

# The subject: a Rust binary for wasm32-wasip2 is a `wasi:cli` command component.
if [[ -d subject ]]; then
  cargo build --quiet --release --target wasm32-wasip2 --manifest-path subject/Cargo.toml
  cp "${CARGO_TARGET_DIR:-subject/target}/wasm32-wasip2/release/subject.wasm" tests/subject.wasm.tmp
  mv tests/subject.wasm.tmp tests/subject.wasm
  echo "build.sh: built tests/subject.wasm ($(wc -c <tests/subject.wasm) bytes)" >&2
fi
