#!/usr/bin/env bash
# Installs the TLS terminator the end-to-end TLS tests put in front of the
# collector (rotel speaks plaintext only): nginx from the Debian/Ubuntu packages,
# and the openssl command the tests make their certificates with.
# nginx negotiates ALPN h2 and proxies gRPC (grpc_pass) and OTLP/HTTP, as it
# would in front of a collector in production. Idempotent and quick when nginx
# is already there; needs apt-get (as root or through sudo) and the package
# registry, nothing else. The service is not started (the tests run their own
# nginx on free 127.0.0.1 ports). Prints the nginx binary's path.
set -euo pipefail

find_nginx() {
  for candidate in "${NGINX_BIN:-}" /usr/sbin/nginx "$(command -v nginx 2>/dev/null || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# nginx must have TLS, HTTP/2 and the gRPC proxy compiled in.
usable() {
  local bin="$1" built
  built="$("$bin" -V 2>&1)" || return 1
  grep -q -- "--with-http_ssl_module" <<<"$built" &&
    grep -q -- "--with-http_v2_module" <<<"$built" &&
    ! grep -q -- "--without-http_grpc_module" <<<"$built"
}

if BIN="$(find_nginx)" && usable "$BIN" && command -v openssl >/dev/null 2>&1; then
  echo "$BIN"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-tls-proxy: apt-get not found; install nginx (with ssl, http_v2 and grpc) and set NGINX_BIN" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install-tls-proxy: not root and no sudo; install nginx and set NGINX_BIN" >&2
    exit 1
  fi
fi

# Keep the package's post-install step from starting nginx as a system service
# (port 80): the standard policy-rc.d switch, only for this install and only if
# the machine has none of its own.
POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=""
if [ ! -e "$POLICY" ]; then
  $SUDO sh -c "printf '#!/bin/sh\nexit 101\n' > $POLICY && chmod 755 $POLICY"
  ADDED_POLICY=1
fi
cleanup() { if [ -n "$ADDED_POLICY" ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
install() { $SUDO apt-get install -y -q --no-install-recommends nginx openssl >&2; }
# A fresh machine may have no package lists yet.
if ! install; then
  $SUDO apt-get update -q >&2
  install
fi

if BIN="$(find_nginx)" && usable "$BIN"; then
  echo "$BIN"
else
  echo "install-tls-proxy: nginx installed but without ssl/http_v2/grpc support" >&2
  exit 1
fi
