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

bash "$(dirname "$0")/apt-install.sh" nginx openssl

if BIN="$(find_nginx)" && usable "$BIN"; then
  echo "$BIN"
else
  echo "install-tls-proxy: nginx installed but without ssl/http_v2/grpc support" >&2
  exit 1
fi
