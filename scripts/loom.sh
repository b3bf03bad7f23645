#!/usr/bin/env bash
# Explores every interleaving (loom, bounded preemptions) of the session core's
# races: the hot-path stamp publication against lookups, and threads racing
# past an expiry into one restart (src/core/machine/core.rs, `loom_tests`).
# Built with `--cfg loom` in its own target directory under .tools/ (the
# library alone, no optional stacks), so it never disturbs the normal build.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
cargo test --lib --release --no-default-features --target-dir .tools/loom-target -- loom_tests \
    --test-threads=1 "$@"
