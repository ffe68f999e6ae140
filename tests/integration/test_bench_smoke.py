"""`parley bench` runs end to end against an embedded server it starts (a smoke test only:
the suite never benchmarks and never asserts on speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def bench(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`parley bench ARGS` in its own process; it must exit 0."""
    done = subprocess.run(
        [sys.executable, "-m", "parley", "bench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_bench_rooms_reports_its_figures_and_no_p0_violation(tmp_path):
    done = bench(
        tmp_path,
        *("rooms", "--clients", "20", "--room-size", "10", "--rate", "20", "--duration", "2"),
        *("--settle", "0.5", "--max-seconds", "60", "--json"),
    )
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


def test_bench_soak_samples_memory_fds_connections_and_latency(tmp_path):
    """Seconds, not minutes: the command works and its samples carry every figure."""
    done = bench(
        tmp_path,
        *("soak", "--minutes", "0.15", "--sample-seconds", "2", "--clients", "10", "--rate", "10"),
        *("--visitors", "2", "--pollers", "2", "--json", "--report", str(tmp_path / "out")),
    )
    result = json.loads(done.stdout)

    assert result["scenario"] == "soak"
    assert len(result["samples"]) >= 3
    for sample in result["samples"]:
        assert sample["rss_mb"] > 0 and sample["fds"] > 0 and sample["db_connections"] >= 1
    assert result["totals"]["sent"] > 0
    assert result["totals"]["acked"] == result["totals"]["sent"]
    assert result["totals"]["errors"] == 0
    assert {"rss_mb", "fds", "db_connections", "ack_p95_ms", "flat"} <= set(result["verdict"])
    assert (tmp_path / "out" / "soak.png").stat().st_size > 10_000


def test_bench_with_baseline_prints_the_ratio_rows(tmp_path):
    """`--baseline` loads a minimal Starlette broadcast first and reports Parley over it."""
    done = bench(
        tmp_path,
        *("ramp", "--clients", "20", "--rates", "10,20", "--duration", "1", "--settle", "0.5"),
        *("--drain", "3", "--max-seconds", "60", "--baseline", "--json"),
    )
    result = json.loads(done.stdout)

    baseline = result["baseline"]
    assert baseline["connections_held"] == 20
    assert [s["offered_rate"] for s in baseline["steps"]] == [10, 20]
    assert baseline["steps"][0]["deliveries"] == baseline["steps"][0]["expected_deliveries"] == 100
    figures = [row["figure"] for row in result["ratios"]]
    assert figures[0].startswith("deliveries/s")
    assert figures[1].startswith("server CPU ms per message")
    assert figures[2].startswith("memory per idle WebSocket")
    for row in result["ratios"]:
        assert row["parley"] is not None and row["baseline"] is not None
        assert row["ratio"] is not None and row["target"]
    assert "ratios" in done.stderr and "baseline" in done.stderr


def test_bench_rest_sends_into_one_conversation_and_reports_its_figures(tmp_path):
    """`rest`: C senders POST N messages into one conversation; every one is answered 201."""
    done = bench(
        tmp_path, *("rest", "--concurrency", "3", "--messages", "30", "--duration", "60", "--json")
    )
    result = json.loads(done.stdout)

    assert result["scenario"] == "rest"
    summary = result["summary"]
    assert {
        "sends_per_s",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "server_cpu_ms_per_send",
        "writer_mean_batch",
        "p0_total",
    } <= set(summary)
    assert summary["sent"] == summary["ok"] == 30
    assert summary["writer_batches"] >= 1
    assert result["latency_ms"]["count"] == 30
    assert result["p0"]["total"] == 0, result["p0"]
    assert result["errors"] == {}
    assert "load_average_after" in result["machine"]
    assert "rest: 3 sender(s)" in done.stderr
