#!/usr/bin/env bash
# Install what the tests need and run the whole suite: lint (ruff, ESLint) and pytest
# (unit, SQLite + PostgreSQL + Redis integration, real server processes, Chromium e2e).
# Used by the README's Quick start and by .ci/run. Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

say "Python environment (.venv)"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,bench]'  # bench: the soak test draws its chart

say "PostgreSQL and Redis (started if installed and down)"
if command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if command -v redis-server >/dev/null && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  as_root redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
fi

say "Debian packages the tests drive (installed when missing)"
# package:file — Chromium (browser tests), openssl (TLS-expiry checks), coturn (call tests),
# libfaketime (clock-skew tests), promtool / amtool / systemd-analyze (the deploy/ configs),
# pg_dump (backups). Only the tools are used: a policy-rc.d keeps packaged daemons from starting.
missing=()
for wanted in chromium:/usr/bin/chromium openssl:/usr/bin/openssl coturn:/usr/bin/turnserver \
    faketime:/usr/bin/faketime prometheus:/usr/bin/promtool \
    prometheus-alertmanager:/usr/bin/amtool systemd:/usr/bin/systemd-analyze \
    postgresql-client:/usr/bin/pg_dump; do
  [ -x "${wanted#*:}" ] || missing+=("${wanted%%:*}")
done
compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null || missing+=(libfaketime)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$guard" >/dev/null && as_root chmod +x "$guard"
  fi
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  [ -z "$guard" ] || as_root rm -f "$guard"
fi

say "Lint"
.venv/bin/ruff check src tests
.venv/bin/ruff format --check src tests
if [ -f package.json ] && command -v npm >/dev/null; then
  npm ci --no-audit --no-fund --silent
  npx eslint src/parley/static
fi

say "Tests"
for arg in "$@"; do
  # Paths or node ids given: run just those, in one process.
  [[ $arg == -* ]] || exec .venv/bin/python -m pytest "$@"
done
# Everything but the `serial` tests on two workers, the browser tests (marker `browser`) too:
# each worker has its own Chromium and servers. Fault tests pause, stop and fill private servers
# and volumes of their own. Then, alone, whatever is marked `serial` (pyproject.toml): pytest's
# exit status 5 says no test is.
status=0
.venv/bin/python -m pytest -n 2 -m "not serial" "$@" || status=$?
say "Tests that run alone (marker serial)"
.venv/bin/python -m pytest -m serial "$@" || { rc=$?; [ "$rc" = 5 ] || status=$rc; }
exit "$status"
