#!/usr/bin/env bash
# Builds the standard OpenTelemetry Collector the end-to-end tests run every
# collector-config/ file in: a distribution of our own, `otelcol-session`, from
# the Collector's Go modules (core v0.161.0 / v1.67.0, contrib v0.161.0, pinned in
# scripts/otelcol/go.mod and go.sum), in the shape the Collector Builder (ocb)
# generates. No prebuilt binary can be downloaded here; Go and its module proxy
# are all it needs. Into .tools/otelcol/, rebuilt only when the sources or the Go
# version change (a stamp of both next to the binary). Prints the binary's path.
#
# Why v0.161.0 and not the newest release: the load-balancing exporter, the
# file exporter and the processors that pass only up to v0.161.0 on this
# module proxy must all be at one release (collector modules must match).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=scripts/otelcol
OUT=.tools/otelcol
BIN="$OUT/otelcol-session"
if ! command -v go >/dev/null 2>&1; then
  echo "install-otelcol: go not found; install Go 1.26 or newer (the README's set-up names it)" >&2
  exit 1
fi
STAMP="$( (go version; cat "$SRC/go.mod" "$SRC/go.sum" "$SRC"/*.go) | sha256sum | cut -d' ' -f1)"
if [ -x "$BIN" ] && [ "$(cat "$OUT/stamp" 2>/dev/null)" = "$STAMP" ]; then
  echo "$(pwd)/$BIN"
  exit 0
fi
mkdir -p "$OUT"
echo "install-otelcol: building otelcol-session from the Collector's Go modules (a few minutes the first time)" >&2
# -mod=readonly: the pinned go.sum is the truth; a module the proxy no longer
# serves fails here, loudly, instead of resolving to something else.
(cd "$SRC" && GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -ldflags='-s -w' -o "../../$BIN.tmp" .) >&2
mv "$BIN.tmp" "$BIN"
"$BIN" --version >&2
echo "$STAMP" >"$OUT/stamp"
echo "$(pwd)/$BIN"
