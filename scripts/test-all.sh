#!/usr/bin/env bash
# Runs every test of the crate: unit, integration, doc tests, and the examples'
# and benches' builds. The README's "run every test" command.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-targets
cargo test --doc
