#!/usr/bin/env bash
# Starts the real collector (rotel) in the foreground on 127.0.0.1, installing it
# first if needed. It prints everything it receives (sessions included).
#   bash scripts/start-collector.sh                 # free ports, print only
#   FORWARD_TO=127.0.0.1:4317 bash scripts/start-collector.sh   # also forward (e.g. to Phoenix)
#   GRPC_PORT=4317 HTTP_PORT=4318 bash scripts/start-collector.sh
# The endpoints to give your program are printed first. Ctrl-C (SIGTERM) flushes and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(bash scripts/install-collector.sh)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
GRPC_PORT="${GRPC_PORT:-$(free_port)}"
HTTP_PORT="${HTTP_PORT:-$(free_port)}"
args=(start
  --otlp-grpc-endpoint "127.0.0.1:$GRPC_PORT"
  --otlp-http-endpoint "127.0.0.1:$HTTP_PORT"
  --debug-log traces --debug-log logs --debug-log metrics
  --debug-log-verbosity detailed
  --pid-file "${TMPDIR:-/tmp}/rotel-$GRPC_PORT.pid")
if [ -n "${FORWARD_TO:-}" ]; then
  args+=(--exporter otlp --otlp-exporter-endpoint "http://$FORWARD_TO")
else
  args+=(--exporter blackhole)
fi
# The endpoints on stderr: rotel's own output (what it received) is stdout.
echo "OTLP/HTTP: OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$HTTP_PORT" >&2
echo "OTLP/gRPC: OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$GRPC_PORT OTEL_EXPORTER_OTLP_PROTOCOL=grpc" >&2
for v in $(env | grep -o '^ROTEL_[A-Z_]*' || true); do unset "$v"; done
exec "$BIN" "${args[@]}"
