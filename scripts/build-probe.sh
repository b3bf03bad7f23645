#!/usr/bin/env bash
# Builds tests/probe (fat LTO, one codegen unit, panic = "abort") linked with
# identical-code folding (`--icf=all`; rust-lld is the default linker on
# x86_64 Linux since Rust 1.90), into .tools/probe-target, and prints the
# binary's path. Cached: cargo rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
export CARGO_TARGET_DIR="$root/.tools/probe-target"
export RUSTFLAGS="-C link-arg=-Wl,--icf=all"
cargo build --quiet --release --manifest-path tests/probe/Cargo.toml >&2
echo "$CARGO_TARGET_DIR/release/otel-session-probe"
