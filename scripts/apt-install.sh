#!/usr/bin/env bash
# Installs Debian/Ubuntu packages for the test scripts (install-tls-proxy.sh,
# install-prometheus.sh): `bash scripts/apt-install.sh PACKAGE...`. Needs
# apt-get as root or through sudo and the package registry, nothing else. A
# package's post-install step does not start it as a system service (the
# standard policy-rc.d switch, only for this install and only if the machine has
# none of its own): the tests run their own servers on free 127.0.0.1 ports.
set -euo pipefail
if ! command -v apt-get >/dev/null 2>&1; then
  echo "apt-install: apt-get not found; install $* with your system's package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "apt-install: not root and no sudo; install $* yourself" >&2
    exit 1
  fi
fi
POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=""
if [ ! -e "$POLICY" ]; then
  $SUDO sh -c "printf '#!/bin/sh\nexit 101\n' > $POLICY && chmod 755 $POLICY"
  ADDED_POLICY=1
fi
cleanup() { if [ -n "$ADDED_POLICY" ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
install() { $SUDO apt-get install -y -q --no-install-recommends "$@" >&2; }
# A fresh machine may have no package lists yet.
if ! install "$@"; then
  $SUDO apt-get update -q >&2
  install "$@"
fi
