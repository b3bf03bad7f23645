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
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-prometheus: apt-get not found; install Prometheus 2.x and set PROMETHEUS_BIN" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install-prometheus: not root and no sudo; install prometheus and set PROMETHEUS_BIN" >&2
    exit 1
  fi
fi
# Keep the post-install step from starting Prometheus as a system service (port
# 9090): the standard policy-rc.d switch, only for this install.
POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=""
if [ ! -e "$POLICY" ]; then
  $SUDO sh -c "printf '#!/bin/sh\nexit 101\n' > $POLICY && chmod 755 $POLICY"
  ADDED_POLICY=1
fi
cleanup() { if [ -n "$ADDED_POLICY" ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
install() { $SUDO apt-get install -y -q --no-install-recommends prometheus >&2; }
# A fresh machine may have no package lists yet.
if ! install; then
  $SUDO apt-get update -q >&2
  install
fi
if BIN="$(find_prometheus)"; then
  echo "$BIN"
else
  echo "install-prometheus: the prometheus package installed no /usr/bin/prometheus" >&2
  exit 1
fi
