"""`parley bench` runs end to end against an embedded server it starts (a smoke test only:
the suite never benchmarks and never asserts on speed)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_rooms_reports_its_figures_and_no_p0_violation(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "parley",
            "bench",
            "rooms",
            "--clients",
            "20",
            "--room-size",
            "10",
            "--rate",
            "20",
            "--duration",
            "2",
            "--settle",
            "0.5",
            "--max-seconds",
            "60",
            "--json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)

    assert result["scenario"] == "rooms"
    assert {"summary", "steps", "memory", "connections", "p0", "errors", "timeseries"} <= set(
        result
    )
    assert {
        "persisted_per_s",
        "deliveries_per_s",
        "ack_p95_ms",
        "delivered_p50_ms",
        "delivered_p95_ms",
        "connections_held",
        "rss_per_connection_kib",
        "p0_total",
    } <= set(result["summary"])
    (step,) = result["steps"]
    assert {"p50", "p95", "p99"} <= set(step["delivered_all_ms"])
    assert step["sent"] == step["acked"] == 40
    assert step["deliveries"] == step["expected_deliveries"] == 400
    assert result["connections"]["held"] == 20
    assert result["p0"]["total"] == 0, result["p0"]
    assert result["errors"] == {}
