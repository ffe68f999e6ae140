#!/usr/bin/env bash
# Issue 18's table, every row beside its baseline in one sitting (docs/benchmarks.md, "Issue 18").
# Run it on a machine doing nothing else; it takes about 15 minutes, loopback only, bounded.
#
#   bench/issue18.sh [OUT_DIR]
#
# Rows: WebSocket rooms (deliveries/s at p95 <= 100 ms, CPU per message, memory per idle socket)
# with the minimal Starlette broadcast (`--baseline`); durable writes, embedded (1:1 ramp) beside
# `../shared/baselines/sqlite_write.py` when that file is there; PostgreSQL (one node) beside
# `pg_write.py`; REST sends at 16 and 1 senders; Locust live chat on both configurations.
# Needs the `bench` extra, PostgreSQL at PARLEY_BENCH_PG (default 127.0.0.1:5432, user postgres)
# and Redis at 127.0.0.1:6379 for the PostgreSQL rows (skipped when unreachable).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d /tmp/parley-issue18-XXXX)}
mkdir -p "$out"
py=${PYTHON:-.venv/bin/python}
baselines=${PARLEY_BASELINES:-../shared/baselines}
pg_host=${PARLEY_BENCH_PG:-127.0.0.1}

row() {  # row NAME COMMAND...: run one row, keep its output, go on if it fails
  local name=$1; shift
  printf '\n== %s (load %s)\n$ %s\n' "$name" "$(cut -d' ' -f1-3 /proc/loadavg)" "$*" | tee -a "$out/summary.txt"
  "$@" >"$out/$name.txt" 2>"$out/$name.log"
  local status=$?
  tail -n 25 "$out/$name.txt" | tee -a "$out/summary.txt"
  [ "$status" = 0 ] || echo "(exit $status; see $out/$name.log)" | tee -a "$out/summary.txt"
}

row ws-ramp "$py" -m parley bench ramp --clients 1000 --room-size 10 \
  --rates 250,500,1000,2000,4000 --duration 4 --drain 5 --settle 1 --max-p95-ms 100 --baseline
row ws-rooms "$py" -m parley bench rooms --clients 1000 --rate 500 --duration 10 --baseline
row ws-idle "$py" -m parley bench idle --clients 1000 --duration 3 --baseline
row durable-embedded "$py" -m parley bench ramp --clients 1000 --room-size 2 \
  --rates 1000,2000,3000,4000,5000,6000 --duration 4 --drain 5 --settle 1
if [ -f "$baselines/sqlite_write.py" ]; then
  row sqlite-baseline "$py" "$baselines/sqlite_write.py" --n-single 3000 --n-batch 50000 --cap 10
fi
row rest-16-embedded "$py" -m parley bench rest --concurrency 16 --messages 6000
row rest-1-embedded "$py" -m parley bench rest --concurrency 1 --messages 1500

if pg_isready -q -h "$pg_host" -p 5432 && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  db="parley_issue18_$$"
  createdb -h "$pg_host" -U postgres "$db"
  trap 'dropdb -h "$pg_host" -U postgres --if-exists "$db"' EXIT
  export PARLEY_DATABASE_URL="postgresql+asyncpg://postgres@$pg_host/$db"
  export PARLEY_REDIS_URL=redis://127.0.0.1:6379/0 PARLEY_REDIS_PREFIX="issue18-$$:"
  row durable-postgres "$py" -m parley bench ramp --start postgres --clients 1000 --room-size 2 \
    --rates 1000,1500,2000,3000,4000 --duration 4 --drain 5 --settle 1
  # Two nodes sharing the database: how long their batches wait for the stream head's lock.
  "$py" bench/pg_waits.py --dsn "postgresql://postgres@$pg_host/$db" --seconds 8 \
    >"$out/pg-waits-2-nodes.txt" 2>&1 &
  waits=$!
  row durable-postgres-2-nodes "$py" -m parley bench direct --start postgres --servers 2 \
    --clients 1000 --rate 3000 --duration 12 --drain 5
  wait "$waits"; cat "$out/pg-waits-2-nodes.txt" | tee -a "$out/summary.txt"
  if [ -f "$baselines/pg_write.py" ]; then
    bdb="parley_pgwrite_$$"
    createdb -h "$pg_host" -U postgres "$bdb"
    row pg-baseline "$py" "$baselines/pg_write.py" --dsn "postgresql://postgres@$pg_host/$bdb" \
      --n 20000 --cap 10 --conc 16 --modes insert,seq-cte
    dropdb -h "$pg_host" -U postgres --if-exists "$bdb"
  fi
  row rest-16-postgres "$py" -m parley bench rest --start postgres --concurrency 16 --messages 6000
  row locust-postgres bench/locust.sh postgres 2 200 20 60 "$out/locust-postgres"
  unset PARLEY_DATABASE_URL PARLEY_REDIS_URL PARLEY_REDIS_PREFIX
fi
row locust-embedded bench/locust.sh embedded 1 200 20 60 "$out/locust-embedded"
echo "all output in $out (summary.txt)"
