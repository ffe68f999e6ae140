"""What PostgreSQL's backends of one database wait on, sampled while a benchmark runs.

    python bench/pg_waits.py --dsn postgresql://postgres@127.0.0.1/parley_bench --seconds 10

Every `--interval` seconds it reads `pg_stat_activity` for the database and counts, per state
and wait event, how many backends were there. The share of samples in which a backend waited
for a lock (`Lock/transactionid`, `Lock/tuple`) says how much the stream head's row lock — the
one lock every node's batches share — holds the writers up; `Client/ClientRead` is a backend
waiting for its server process, `IO/WALSync` (or `LWLock/WALWrite`) the commit's fsync.

Sampling starts at the first message batch it sees (at most `--wait` s later) and lasts
`--seconds`. Loopback only. Prints a table, or `--json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter

import asyncpg

QUERY = """
SELECT state, coalesce(wait_event_type || '/' || wait_event, 'running') AS waiting,
       left(query, 40) AS query
  FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'
"""


async def sample(dsn: str, seconds: float, interval: float, wait: float) -> dict[str, object]:
    conn = await asyncpg.connect(dsn)
    counts: Counter[str] = Counter()
    head_lock: Counter[str] = Counter()
    samples = 0
    try:
        # Start with the first message batch seen (the benchmark's clients connect first).
        give_up = time.monotonic() + wait
        while time.monotonic() < give_up:
            if any("WITH input" in row["query"] for row in await conn.fetch(QUERY)):
                break
            await asyncio.sleep(interval)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            samples += 1
            for row in await conn.fetch(QUERY):
                counts[f"{row['state']}: {row['waiting']}"] += 1
                if row["waiting"].startswith("Lock/") and "WITH input" in row["query"]:
                    head_lock[row["waiting"]] += 1
            await asyncio.sleep(interval)
    finally:
        await conn.close()
    return {
        "samples": samples,
        "interval_s": interval,
        # mean number of backends in each state at any moment (1.0 = one backend all the time)
        "backends": {key: round(n / samples, 3) for key, n in counts.most_common()},
        "batch_waiting_for_lock": round(sum(head_lock.values()) / samples, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--wait", type=float, default=120.0, help="wait at most this long for the first batch"
    )
    parser.add_argument("--interval", type=float, default=0.005)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(sample(args.dsn, args.seconds, args.interval, args.wait))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['samples']} samples of pg_stat_activity, every {args.interval * 1000:g} ms")
    print(f"{'mean backends':>14}  state: wait event")
    for key, mean in result["backends"].items():  # type: ignore[union-attr]
        print(f"{mean:>14.3f}  {key}")
    print(f"{result['batch_waiting_for_lock']:>14.3f}  message batches waiting for a lock")


if __name__ == "__main__":
    main()
