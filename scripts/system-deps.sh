#!/usr/bin/env bash
# The system parts the test suite uses, installed when missing: `make test` and `.ci/run` both
# call this script, so CI tests exactly the path the README gives.
#
#   chromium      the web console's browser tests (Playwright drives Debian's chromium)
#   wrk, nginx    the gateway and tracing benchmarks' smoke tests (load generator, reference proxy)
#   h2load        the gateway benchmark's gRPC leg (Debian's nghttp2-client: HTTP/2 load generator)
#   PostgreSQL    the PostgreSQL half of the store tests: started when installed but down
#
# Run as root it installs with apt-get; otherwise it stops and prints the exact command to run.
# `--check` only reports (exit 1 when something is missing).
set -euo pipefail

check_only=0
[ "${1:-}" = "--check" ] && check_only=1

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)

if [ ${#missing[@]} -gt 0 ]; then
  install="apt-get update && apt-get install -y ${missing[*]}"
  if [ "$check_only" = 1 ]; then
    echo "system-deps: missing ${missing[*]}; install with: sudo sh -c '$install'" >&2
    exit 1
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: the test suite needs ${missing[*]} (Debian packages)." >&2
    echo "system-deps: run this once, then make test again:" >&2
    echo "    sudo sh -c '$install'" >&2
    exit 1
  fi
  echo "system-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  # The nginx package may start the system's nginx on port 80; the benchmarks run an nginx of
  # their own, so stop that one (only the one the package started: its pid file).
  if [[ " ${missing[*]} " == *" nginx-light "* ]] && [ -s /run/nginx.pid ]; then
    nginx -s stop 2>/dev/null || kill "$(cat /run/nginx.pid)" 2>/dev/null || true
  fi
fi

# PostgreSQL: the machine's server at 127.0.0.1:5432 (trust). Start it when it is installed
# and down; a machine without it gets the command to run.
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  if [ "$check_only" = 0 ] && [ "$(id -u)" = 0 ] && command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "system-deps: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    for _ in $(seq 1 60); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.5; done
  fi
fi
if ! command -v pg_isready >/dev/null 2>&1 || ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  echo "system-deps: no PostgreSQL answers at 127.0.0.1:5432 (trust auth); the PostgreSQL" >&2
  echo "system-deps: tests need it: start it, e.g. sudo pg_ctlcluster 15 main start" >&2
  exit 1
fi
