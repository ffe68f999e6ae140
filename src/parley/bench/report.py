"""What a run shows a person: the summary document (JSON), a table, and an HTML page of charts.

matplotlib is imported only when an HTML report is asked for: it is in the optional `bench`
extra (`pip install 'parley[bench]'`), not in the server's install.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from parley.bench.scenarios import Run
from parley.bench.stats import json_safe


def machine() -> dict[str, Any]:
    """The box the figures came from: they mean little without it."""
    mem_kib = 0
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def document(run: Run, *, machine_before: dict[str, Any]) -> dict[str, Any]:
    """The run as one JSON-ready document (what `--json` prints)."""
    return json_safe(
        {
            "scenario": run.config.scenario,
            "config": asdict(run.config),
            "machine": {**machine_before, "load_average_after": machine()["load_average"]},
            "servers": {
                "mode": run.servers.mode,
                "processes": len(run.servers.urls),
                "urls": run.servers.urls,
            },
            "summary": summary(run),
            "steps": run.steps,
            "rounds": run.rounds,
            "memory": run.memory,
            "connections": run.connections,
            "p0": run.p0,
            "errors": run.errors,
            "server_counters": run.server_counters,
            "timeseries": run.series.to_json(),
            "stopped_early": run.stopped_early or None,
        }
    )


def summary(run: Run) -> dict[str, Any]:
    """The headline figures: for a ramp, those of its highest sustainable step."""
    out: dict[str, Any] = {
        "connections_held": run.connections.get("held", 0),
        "rss_per_connection_kib": run.memory.get("per_connection_kib"),
        "rss_before_mb": run.memory.get("rss_before_mb"),
        "rss_after_mb": run.memory.get("rss_after_mb"),
        "p0_total": run.p0.get("total", 0),
        "errors_total": sum(run.errors.values()),
    }
    if not run.steps:
        return out
    sustainable = [s for s in run.steps if s["sustainable"]]
    best = max(sustainable, key=lambda s: s["offered_rate"]) if sustainable else run.steps[-1]
    out.update(
        offered_rate=best["offered_rate"],
        sustainable=bool(sustainable),
        sustainable_rate=best["offered_rate"] if sustainable else None,
        persisted_per_s=best["persisted_per_s"],
        deliveries_per_s=best["deliveries_per_s"],
        ack_p50_ms=best["ack_ms"]["p50"],
        ack_p95_ms=best["ack_ms"]["p95"],
        delivered_p50_ms=best["delivered_ms"]["p50"],
        delivered_p95_ms=best["delivered_ms"]["p95"],
        delivered_p99_ms=best["delivered_ms"]["p99"],
        delivered_all_p50_ms=best["delivered_all_ms"]["p50"],
        delivered_all_p95_ms=best["delivered_all_ms"]["p95"],
        max_persisted_per_s=max(s["persisted_per_s"] for s in sustainable or run.steps),
        max_deliveries_per_s=max(s["deliveries_per_s"] for s in sustainable or run.steps),
        server_cpu_ms_per_message=best["server_cpu_ms_per_message"],
    )
    return out


def print_table(doc: dict[str, Any], console: Console) -> None:
    """The human-readable result."""
    config, servers = doc["config"], doc["servers"]
    console.print(
        f"[bold]parley bench {doc['scenario']}[/bold]: {config['clients']} clients, "
        f"{servers['processes']} x {servers['mode']} server, "
        f"machine {doc['machine']['nproc']} cores / {doc['machine']['memory_gib']} GiB"
    )
    if doc["steps"]:
        table = Table(
            "rate/s",
            "sent",
            "persisted/s",
            "deliveries/s",
            "ack p50/p95/p99 ms",
            "delivered p50/p95/p99 ms",
            "all members p95 ms",
            "CPU srv/cli",
            "srv ms/msg",
            "ok",
        )
        for step in doc["steps"]:
            table.add_row(
                f"{step['offered_rate']:g}",
                f"{step['sent']}",
                f"{step['persisted_per_s']:,.0f}",
                f"{step['deliveries_per_s']:,.0f}",
                _triple(step["ack_ms"]),
                _triple(step["delivered_ms"]),
                _num(step["delivered_all_ms"]["p95"]),
                f"{step['server_cpu_cores']:.2f}/{step['client_cpu_cores']:.2f}",
                f"{step['server_cpu_ms_per_message']:.2f}",
                "[green]yes[/green]" if step["sustainable"] else "[red]no[/red]",
            )
        console.print(table)
    memory, p0 = doc["memory"], doc["p0"]
    connections = doc["connections"]
    console.print(
        f"connections held {connections['held']}/{connections['clients']} "
        f"(connect p95 {_num(connections['connect_ms']['p95'])} ms) · server RSS "
        f"before {_num(memory.get('rss_before_mb'))} MiB, connected "
        f"{_num(memory.get('rss_connected_mb'))} MiB "
        f"({_num(memory.get('per_connection_kib'))} KiB/connection), peak "
        f"{_num(memory.get('rss_peak_mb'))} MiB, after {_num(memory.get('rss_after_mb'))} MiB"
        + (
            f", growth between rounds {memory['growth_between_rounds_mb']} MiB"
            if memory.get("growth_between_rounds_mb") is not None
            else ""
        )
    )
    colour = "green" if p0["total"] == 0 else "red"
    console.print(
        f"[{colour}]P0 violations {p0['total']}[/{colour}] "
        f"(client {_nonzero(p0['client'])}; server-reported {_nonzero(p0['server'])}) · "
        f"errors {_nonzero(doc['errors'])}"
    )
    if doc.get("stopped_early"):
        console.print(f"[yellow]stopped early: {doc['stopped_early']}[/yellow]")
    if doc.get("baseline") is not None:
        print_baseline(doc["baseline"], doc.get("ratios", []), console)


def print_baseline(
    baseline: dict[str, Any], ratios: list[dict[str, Any]], console: Console
) -> None:
    """The baseline's steps, then Parley's figures over the baseline's."""
    if baseline["steps"]:
        table = Table(
            "rate/s",
            "sent",
            "deliveries/s",
            "delivered p50/p95/p99 ms",
            "CPU srv",
            "srv ms/msg",
            "ok",
            title=f"baseline: {baseline['server']}",
        )
        for step in baseline["steps"]:
            table.add_row(
                f"{step['offered_rate']:g}",
                f"{step['sent']}",
                f"{step['deliveries_per_s']:,.0f}",
                _triple(step["delivered_ms"]),
                f"{step['server_cpu_cores']:.2f}",
                f"{step['server_cpu_ms_per_message']:.3f}",
                "[green]yes[/green]" if step["sustainable"] else "[red]no[/red]",
            )
        console.print(table)
    console.print(
        f"baseline: {baseline['connections_held']} connections, "
        f"{_num(baseline['rss_per_connection_kib'])} KiB/connection"
        + ("" if baseline.get("ceiling_reached", True) else " (its ceiling was not reached)")
    )
    table = Table("figure", "Parley", "baseline", "ratio", "target", "met", title="ratios")
    for row in ratios:
        met = row["met"]
        table.add_row(
            row["figure"],
            _num(row["parley"]),
            _num(row["baseline"]),
            _num(row["ratio"]),
            row["target"],
            "-" if met is None else ("[green]yes[/green]" if met else "[red]no[/red]"),
        )
    console.print(table)


def _triple(summary: dict[str, Any]) -> str:
    return "/".join(_num(summary[k]) for k in ("p50", "p95", "p99"))


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    return str(value)


def _nonzero(counts: dict[str, Any]) -> str:
    found = {k: v for k, v in counts.items() if v}
    return ", ".join(f"{k}={v}" for k, v in found.items()) if found else "none"


# -- the HTML page -------------------------------------------------------------------------------


def write_html(doc: dict[str, Any], directory: Path) -> Path:
    """Write `index.html` (charts inline), the charts as PNG files, and `result.json`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "result.json").write_text(json.dumps(doc, indent=2))
    charts = {
        "latency-vs-rate.png": _latency_chart(plt, doc),
        "deliveries-over-time.png": _throughput_chart(plt, doc),
        "memory-over-time.png": _memory_chart(plt, doc),
    }
    images = []
    for name, figure in charts.items():
        if figure is None:
            continue
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(figure)
        (directory / name).write_bytes(buffer.getvalue())
        encoded = base64.b64encode(buffer.getvalue()).decode()
        images.append(f'<figure><img alt="{name}" src="data:image/png;base64,{encoded}"></figure>')
    page = directory / "index.html"
    page.write_text(_page(doc, images))
    return page


def _latency_chart(plt: Any, doc: dict[str, Any]) -> Any:
    steps = doc["steps"]
    if not steps:
        return None
    figure, axes = plt.subplots(figsize=(8, 4.2))
    rates = [s["offered_rate"] for s in steps]
    for key, label, style in (
        ("p50", "delivered p50", "o-"),
        ("p95", "delivered p95", "s-"),
        ("p99", "delivered p99", "^-"),
    ):
        axes.plot(rates, [s["delivered_ms"][key] for s in steps], style, label=label)
    axes.plot(rates, [s["ack_ms"]["p95"] for s in steps], "x--", label="ack p95")
    axes.set_yscale("log")
    axes.set_xlabel("offered rate (messages/s)")
    axes.set_ylabel("latency from scheduled send (ms)")
    axes.set_title("Latency percentiles against offered rate")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    return figure


def _throughput_chart(plt: Any, doc: dict[str, Any]) -> Any:
    series = doc["timeseries"]
    if not series["t"] or not doc["steps"]:
        return None
    figure, axes = plt.subplots(figsize=(8, 3.6))
    axes.plot(series["t"], _gaps(series.get("deliveries_per_s")), label="deliveries/s")
    axes.plot(series["t"], _gaps(series.get("acks_per_s")), label="persisted (acked)/s")
    axes.set_xlabel("seconds since start")
    axes.set_ylabel("per second")
    axes.set_title("Deliveries over time")
    axes.grid(True, alpha=0.3)
    axes.legend()
    return figure


def _memory_chart(plt: Any, doc: dict[str, Any]) -> Any:
    series = doc["timeseries"]
    columns = sorted(k for k in series if k.startswith("rss_mb_"))
    if not series["t"] or not columns:
        return None
    figure, axes = plt.subplots(figsize=(8, 3.6))
    for name in columns:
        axes.plot(series["t"], _gaps(series[name]), label=f"server {name.rsplit('_', 1)[1]} RSS")
    axes.set_xlabel("seconds since start")
    axes.set_ylabel("MiB")
    axes.set_title("Server memory over time")
    axes.grid(True, alpha=0.3)
    twin = axes.twinx()
    twin.plot(series["t"], _gaps(series.get("connections")), "k:", label="connections")
    twin.set_ylabel("connections")
    lines = axes.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    axes.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left")
    return figure


def _gaps(column: list[float | None] | None) -> list[float]:
    return [math.nan if v is None else v for v in column or []]


def _page(doc: dict[str, Any], images: list[str]) -> str:
    summary_rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_num(v))}</td></tr>"
        for k, v in doc["summary"].items()
    )
    config = html.escape(json.dumps(doc["config"]))
    machine_info = html.escape(json.dumps(doc["machine"]))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>parley bench {html.escape(doc["scenario"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }}
table {{ border-collapse: collapse; }} th, td {{ padding: .2rem .8rem; text-align: left; }}
tr:nth-child(odd) {{ background: #f4f4f4; }} figure {{ margin: 1.5rem 0; }}
img {{ max-width: 100%; }} code {{ font-size: .85rem; }}
</style></head><body>
<h1>parley bench: {html.escape(doc["scenario"])}</h1>
<p>{doc["servers"]["processes"]} &times; {html.escape(doc["servers"]["mode"])} server ·
P0 violations <strong>{doc["p0"]["total"]}</strong> · errors {sum(doc["errors"].values())}</p>
<h2>Summary</h2><table>{summary_rows}</table>
{"".join(images)}
<h2>Configuration</h2><p><code>{config}</code></p>
<h2>Machine</h2><p><code>{machine_info}</code></p>
<p>All numbers: <a href="result.json">result.json</a>.</p>
</body></html>
"""
