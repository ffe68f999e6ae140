#!/usr/bin/env bash
# Run the Locust live-chat scenario (bench/locustfile.py: widget visitors + operators) against
# servers this script starts, then stop them (by PID). Loopback only; bounded by --run-time.
#
#   bench/locust.sh embedded 1 [VISITORS] [OPERATORS] [SECONDS] [OUT_DIR]
#   PARLEY_DATABASE_URL=... PARLEY_REDIS_URL=... bench/locust.sh postgres 2 200 20 60
#
# Needs the `bench` extra (pip install -e '.[bench]'). Prints Locust's summary (p50/p95 per
# endpoint, failures) and the 5xx count; CSVs land in OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-embedded}; servers=${2:-1}; visitors=${3:-200}; operators=${4:-20}
seconds=${5:-60}; out=${6:-$(mktemp -d /tmp/parley-locust-XXXX)}
mkdir -p "$out"
py=${PYTHON:-.venv/bin/python}
work=$(mktemp -d /tmp/parley-locust-srv-XXXX)
export PARLEY_LOG_LEVEL=WARNING PARLEY_STREAM_MAX_PER_IP=1000000 PARLEY_DATA_DIR="$work/data"
# Every simulated visitor comes from 127.0.0.1: lift the per-IP widget limits for the run.
export PARLEY_WIDGET_BOOTSTRAP_RATE_PER_IP=1000000/minute PARLEY_WIDGET_SEND_RATE_PER_IP=1000000/minute
export PARLEY_WIDGET_BOOTSTRAP_RATE_PER_TOKEN=1000000/minute PARLEY_WIDGET_POLL_MIN_INTERVAL_SECONDS=0
export PARLEY_WIDGET_CHALLENGE_AFTER_PER_IP=""
if [ "$mode" = embedded ]; then
  unset PARLEY_DATABASE_URL PARLEY_REDIS_URL
  [ "$servers" = 1 ] || { echo "embedded is one process" >&2; exit 2; }
else
  "$py" -m parley migrate >/dev/null
fi
pids=(); hosts=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait; rm -rf "$work"; }
trap cleanup EXIT
for i in $(seq 1 "$servers"); do
  port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$py" -m parley serve --port "$port" >"$work/server-$port.log" 2>&1 &
  pids+=($!); hosts+=("http://127.0.0.1:$port")
done
for host in "${hosts[@]}"; do
  for _ in $(seq 1 300); do curl -sf "$host/readyz" >/dev/null && break; sleep 0.1; done
done
prefix="lc$RANDOM"
"$py" -m parley user add-many "$prefix" "$operators" --json >"$out/users.json"
operator_flags=$("$py" -c 'import json,sys; print(" ".join("--operator " + u["name"] for u in json.load(open(sys.argv[1]))["users"]))' "$out/users.json")
# shellcheck disable=SC2086
token=$("$py" -m parley inbox add "Bench $prefix" --domain bench.example $operator_flags | tail -n1)
PARLEY_BENCH_USERS="$out/users.json" PARLEY_BENCH_OPERATORS="$operators" \
PARLEY_BENCH_WIDGET_TOKEN="$token" \
PARLEY_BENCH_HOSTS=$(IFS=,; echo "${hosts[*]}") \
  "$(dirname "$py")/locust" -f bench/locustfile.py --headless \
  -u $((visitors + operators)) -r 50 --run-time "${seconds}s" --stop-timeout 15 \
  --host "${hosts[0]}" --only-summary --csv "$out/locust" 2>&1 | tee "$out/locust.txt"
echo "CSV and log: $out"
