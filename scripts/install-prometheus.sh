#!/usr/bin/env bash
# Installs Prometheus for the crash-free-rate test: Debian's `prometheus`
# package (2.42), which scrapes the collector's Prometheus exporter. The
# package's service is not started (the test runs its own Prometheus on a free
# 127.0.0.1 port, with its own data directory). Idempotent and quick when it is
# already there; needs apt-get (as root or through sudo) and the package
# registry. Prints the prometheus binary's path.
set -euo pipefail

find_prometheus() {
  for candidate in "${PROMETHEUS_BIN:-}" /usr/bin/prometheus "$(command -v prometheus 2>/dev/null || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if BIN="$(find_prometheus)"; then
  echo "$BIN"
  exit 0
fi
bash "$(dirname "$0")/apt-install.sh" prometheus

if BIN="$(find_prometheus)"; then
  echo "$BIN"
else
  echo "install-prometheus: the prometheus package installed no /usr/bin/prometheus" >&2
  exit 1
fi
