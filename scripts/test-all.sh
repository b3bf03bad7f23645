#!/usr/bin/env bash
# Runs every test of the crate: unit, integration, end-to-end against the real
# collectors and a real backend (rotel, the OpenTelemetry Collector built from its Go
# modules, and Phoenix, installed first, pinned, into .tools/; Prometheus from the
# system's packages),
# through a real TLS terminator (nginx from the system's packages), doc tests, and smoke
# runs of the examples and benches, and the core's races under loom. The README's
# "run every test" command.
set -euo pipefail
cd "$(dirname "$0")/.."
ROTEL_BIN="$(bash scripts/install-collector.sh)"
PHOENIX_BIN="$(bash scripts/install-phoenix.sh)"
NGINX_BIN="$(bash scripts/install-tls-proxy.sh)"
OTELCOL_BIN="$(bash scripts/install-otelcol.sh)"
PROMETHEUS_BIN="$(bash scripts/install-prometheus.sh)"
export ROTEL_BIN PHOENIX_BIN NGINX_BIN OTELCOL_BIN PROMETHEUS_BIN
# The end-to-end tests run examples as child programs (examples/e2e_child.rs and
# the quickstart): build them as programs first (`cargo test` builds examples as
# test harnesses only).
cargo build --examples
# The memory test measures the quickstart as users ship it (a release build).
cargo build --release --example quickstart
# tests/release_builds.rs runs a program built with fat LTO, identical-code
# folding and panic = "abort" (tests/probe, its own build in .tools/).
PROBE_BIN="$(bash scripts/build-probe.sh)"
export PROBE_BIN
cargo test --all-targets
cargo test --doc
# The core's races under loom (every interleaving, its own build in .tools/).
bash scripts/loom.sh
