#!/usr/bin/env bash
# Runs every test of the crate: unit, integration, end-to-end against the real
# collector and a real backend (rotel and Phoenix, installed first, pinned, into .tools/), doc tests, and smoke runs of
# the examples and benches. The README's "run every test" command.
set -euo pipefail
cd "$(dirname "$0")/.."
ROTEL_BIN="$(bash scripts/install-collector.sh)"
PHOENIX_BIN="$(bash scripts/install-phoenix.sh)"
export ROTEL_BIN PHOENIX_BIN
# --all-targets also builds examples/e2e_child.rs, the end-to-end tests' child program.
cargo test --all-targets
cargo test --doc
