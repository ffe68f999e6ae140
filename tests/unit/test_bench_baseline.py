"""The ratio rows `parley bench --baseline` prints: Parley's figures over the baseline's."""

from __future__ import annotations

from parley.bench.baseline import ratios


def _step(rate: float, cpu_ms: float, sustainable: bool = True) -> dict[str, object]:
    return {"offered_rate": rate, "server_cpu_ms_per_message": cpu_ms, "sustainable": sustainable}


def test_ratios_compare_cpu_at_the_highest_rate_both_sustained():
    parley_steps = [_step(100, 2.0), _step(200, 1.0), _step(400, 0.9, sustainable=False)]
    baseline = {
        "deliveries_per_s": 4000.0,
        "sustainable_rate": 200,
        "rss_per_connection_kib": 25.0,
        "server_cpu_ms_per_message": 0.1,
        "steps": [_step(100, 0.2), _step(200, 0.25), _step(400, 0.1)],
    }
    summary = {
        "sustainable": True,
        "deliveries_per_s": 2000.0,
        "rss_per_connection_kib": 50.0,
        "server_cpu_ms_per_message": 1.0,
    }

    rows = {row["figure"]: row for row in ratios(summary, parley_steps, baseline)}

    deliveries = rows["deliveries/s (best sustainable step)"]
    assert (deliveries["ratio"], deliveries["met"]) == (0.5, True)
    cpu = rows["server CPU ms per message at 200/s"]
    assert (cpu["parley"], cpu["baseline"], cpu["ratio"], cpu["met"]) == (1.0, 0.25, 4.0, False)
    memory = rows["memory per idle WebSocket (KiB)"]
    assert (memory["ratio"], memory["target"], memory["met"]) == (2.0, "<= 1.2", False)


def test_a_figure_missing_on_either_side_has_no_ratio():
    rows = ratios({"rss_per_connection_kib": 40.0}, [], {"rss_per_connection_kib": float("nan")})

    assert all(row["ratio"] is None and row["met"] is None for row in rows)


def test_no_verdict_on_deliveries_when_a_side_sustained_no_step():
    baseline = {"deliveries_per_s": 2000.0, "sustainable_rate": None, "steps": []}
    summary = {"sustainable": True, "deliveries_per_s": 2000.0}

    (deliveries, *_) = ratios(summary, [], baseline)

    assert deliveries["ratio"] == 1.0 and deliveries["met"] is None
    assert "sustained none" in deliveries["figure"]
