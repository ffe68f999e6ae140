"""The `parley bench` command: start or target servers, run a scenario, print and save results."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from collections.abc import Callable, Coroutine
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from parley.bench import report
from parley.bench.baseline import ratios, run_baseline
from parley.bench.rest import RestConfig, run_rest
from parley.bench.scenarios import BenchConfig, run_scenario
from parley.bench.servers import (
    ServerSet,
    load_users,
    provision_users,
    raise_fd_limit,
    start_servers,
)
from parley.bench.soak import SoakConfig, create_widget_inbox, run_soak, write_chart
from parley.bench.soak import document as soak_document
from parley.bench.stats import json_safe

HELP = """Load-test a Parley server from a separate process (loopback only,
bounded in time and count).

\b
Scenarios:
  rooms   C clients (--clients) in rooms of K (--room-size); S of them
          (--senders, default all) send R messages/s in total (--rate)
          for D seconds (--duration), as WebSocket `send` frames.
  direct  the same with 1:1 conversations (rooms of 2).
  idle    C connections (default 10,000) that only hold their stream
          for D seconds: connections held, server memory per connection.
  ramp    rooms at each rate of --rates in turn until a step is not
          sustainable (< 99.9 % delivered, any error, or delivered p95
          above --max-p95-ms); the last good step is the sustainable rate.
          With --baseline (also rooms, direct, idle), a minimal Starlette
          broadcast takes the same load first, and the table ends with
          the ratios Parley/baseline: deliveries/s, server CPU per
          message, memory per idle WebSocket.
  soak    a steady mixed load for --minutes: C WebSocket clients in
          rooms of 10 (default 100) sending --rate msgs/s (default 20),
          --visitors widget visitors (send + long-poll), --pollers
          long-pollers; every --sample-seconds (10) it records server
          RSS, open fds, DB connections and send->ack p50/p95, and says
          whether they stayed flat (last third vs middle third).
          --report DIR writes DIR/soak.png; --json prints every sample.
  rest    --concurrency C senders (default 16), each its own user and
          token, POST --messages N messages (default 2,000) in total to
          one conversation over keep-alive HTTP/1.1, each sending its
          next when the last is answered, for at most --duration
          seconds: sends/s, p50/p95/p99 request->201, server CPU per
          send, the writer's mean batch size; P0 if any seq or pos
          repeats, seqs have a gap, or last_seq differs from the 201s.

\b
Measured, from each send's scheduled moment: p50/p95/p99 of send->ack,
send->delivered (each member) and send->delivered-to-every-member;
persisted (acked) messages/s and deliveries/s; connections held; server
RSS before, connected, peak and after (and per connection); server CPU
per message; P0 counters: client-side repeats, reorders, seq gaps,
deliveries missing for acked messages, acks without receipt in 10 s,
plus the servers' /metrics (parley_client_reported_total,
parley_read_rollback_detected_total); and errors (error frames,
unexpected closes, sends never acked).

\b
Servers: --start embedded (default: SQLite + in-process bus, one
process) or --start postgres (needs PARLEY_DATABASE_URL, and
PARLEY_REDIS_URL for --servers 2+) runs `python -m parley serve`
subprocesses and stops them after. --url targets running servers
(with --users from `parley user add-many PREFIX N --json`, and
--server-pid to read their memory). Exit status 1 if any P0 counter
is not 0.
"""


T = TypeVar("T")


class Scenario(StrEnum):
    ROOMS = "rooms"
    DIRECT = "direct"
    IDLE = "idle"
    RAMP = "ramp"
    SOAK = "soak"
    REST = "rest"


class Start(StrEnum):
    EMBEDDED = "embedded"
    POSTGRES = "postgres"


class Loop(StrEnum):
    UVLOOP = "uvloop"
    ASYNCIO = "asyncio"


def bench(
    scenario: Annotated[
        Scenario, typer.Argument(help="rooms | direct | idle | ramp | soak | rest.")
    ],
    clients: Annotated[
        int | None,
        typer.Option("--clients", "-c", min=1, help="Connections (default 1,000; idle 10,000)."),
    ] = None,
    room_size: Annotated[
        int, typer.Option("--room-size", "-k", min=2, help="Members per room (rooms, ramp).")
    ] = 10,
    senders: Annotated[
        int, typer.Option(min=0, help="How many clients send (0: all of them).")
    ] = 0,
    rate: Annotated[
        float, typer.Option("--rate", "-r", min=1, help="Messages/s offered in total.")
    ] = 1000,
    rates: Annotated[
        str, typer.Option(help="ramp: comma-separated rates, tried in order.")
    ] = "250,500,1000,1500,2000,3000,4000,6000,8000",
    duration: Annotated[
        float,
        typer.Option("--duration", "-d", min=0.5, help="Seconds per step (idle: seconds held)."),
    ] = 10,
    body_bytes: Annotated[int, typer.Option(min=1, max=16000, help="Message body size.")] = 100,
    rounds: Annotated[
        int,
        typer.Option(min=1, max=20, help="Connect/load/disconnect this many times (leak check)."),
    ] = 1,
    drain: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for late acks and deliveries.")
    ] = 10,
    settle: Annotated[
        float, typer.Option(min=0, help="Seconds after disconnecting before memory is read.")
    ] = 3,
    connect_concurrency: Annotated[
        int, typer.Option(min=1, help="WebSocket handshakes in flight at once.")
    ] = 64,
    max_p95_ms: Annotated[
        float, typer.Option(help="Sustainable: delivered p95 at or under this (ms).")
    ] = 1000,
    max_seconds: Annotated[
        float, typer.Option(min=5, help="Hard cap on the whole run, in seconds.")
    ] = 300,
    deflate: Annotated[
        bool, typer.Option(help="Offer permessage-deflate like browsers (default: off).")
    ] = False,
    start: Annotated[
        Start | None, typer.Option(help="Start servers: embedded (default) or postgres.")
    ] = None,
    servers: Annotated[
        int, typer.Option("--servers", min=1, max=8, help="Server processes to start.")
    ] = 1,
    url: Annotated[
        list[str] | None, typer.Option(help="Target a running server (repeat for several).")
    ] = None,
    server_pid: Annotated[
        list[int] | None, typer.Option(help="With --url: server process ids, for memory.")
    ] = None,
    users: Annotated[
        Path | None,
        typer.Option(help="With --url: users JSON from `parley user add-many --json`."),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON on stdout.")
    ] = False,
    report_dir: Annotated[
        Path | None,
        typer.Option("--report", help="Write an HTML page with charts here (needs [bench])."),
    ] = None,
    loop: Annotated[Loop, typer.Option(help="The bench's own event loop.")] = Loop.UVLOOP,
    baseline: Annotated[
        bool,
        typer.Option(
            help="First load a minimal Starlette broadcast the same way; print Parley/it ratios."
        ),
    ] = False,
    minutes: Annotated[float, typer.Option(min=0.05, help="soak: how long to hold the load.")] = 30,
    sample_seconds: Annotated[
        float, typer.Option(min=0.5, help="soak: seconds between samples.")
    ] = 10,
    visitors: Annotated[int, typer.Option(min=0, help="soak: widget visitors.")] = 20,
    pollers: Annotated[int, typer.Option(min=0, help="soak: long-polling users.")] = 20,
    widget_token: Annotated[
        str | None, typer.Option(help="soak with --url: an inbox's widget token (bench.example).")
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, max=500, help="rest: senders, each one request at a time.")
    ] = 16,
    messages: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="rest: messages to send in total.")
    ] = 2000,
) -> None:
    if scenario is Scenario.REST:
        rest_config = RestConfig(
            messages=messages,
            concurrency=concurrency,
            duration=duration if duration != 10 else 30,
            body_bytes=body_bytes,
        )
        _rest(rest_config, url, server_pid, start, servers, users, json_out, loop)
        return
    if scenario is Scenario.SOAK:
        _soak(
            SoakConfig(
                minutes=minutes,
                sample_seconds=sample_seconds,
                chat_clients=clients or 100,
                rate=rate if rate != 1000 else 20,
                visitors=visitors,
                pollers=pollers,
                body_bytes=body_bytes,
            ),
            url,
            server_pid,
            start,
            servers,
            users,
            widget_token,
            json_out,
            report_dir,
            loop,
        )
        return
    count = clients or (10_000 if scenario is Scenario.IDLE else 1000)
    config = BenchConfig(
        scenario=scenario.value,
        clients=count,
        room_size=room_size,
        senders=senders,
        rate=rate,
        rates=[float(r) for r in rates.split(",") if r.strip()],
        duration=duration,
        body_bytes=body_bytes,
        rounds=rounds,
        drain_seconds=drain,
        settle_seconds=settle,
        connect_concurrency=connect_concurrency,
        max_p95_ms=max_p95_ms,
        max_seconds=max_seconds,
        deflate=deflate,
    )
    # Piped output is not a terminal: give the table room instead of 80 columns.
    err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)
    if report_dir is not None:
        _check_matplotlib()
    raise_fd_limit()
    machine_before = report.machine()
    yardstick = None
    if baseline:
        # Right before Parley's run, on the same box, so its noise mostly cancels in the ratios.
        err.print("baseline: a minimal Starlette broadcast under the same load")
        yardstick = _run_loop(loop, run_baseline(config, _progress(err)))
    target = _servers(url, server_pid, start, servers, err)
    try:
        if users is not None:
            bench_users = load_users(users.read_text())[:count]
        else:
            err.print(f"creating {count} users")
            bench_users = provision_users(f"bench{secrets.token_hex(3)}", count, target.env)
        progress = _progress(err)
        run = _run_loop(loop, run_scenario(config, target, bench_users, progress))
        progress("")
    finally:
        target.stop()
    doc = report.document(run, machine_before=machine_before)
    if yardstick is not None:
        doc["baseline"] = json_safe(yardstick)
        doc["ratios"] = json_safe(ratios(doc["summary"], doc["steps"], yardstick))
    if json_out:
        report.print_table(doc, err)
        print(json.dumps(doc, indent=2))
    else:
        report.print_table(doc, Console(width=None if sys.stdout.isatty() else 150))
    if report_dir is not None:
        page = report.write_html(doc, report_dir)
        err.print(f"report: {page}")
    if doc["p0"]["total"]:
        raise typer.Exit(1)


def _soak(
    config: SoakConfig,
    url: list[str] | None,
    pids: list[int] | None,
    start: Start | None,
    count: int,
    users: Path | None,
    widget_token: str | None,
    json_out: bool,
    report_dir: Path | None,
    loop: Loop,
) -> None:
    err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)
    if report_dir is not None:
        _check_matplotlib()
    raise_fd_limit()
    machine_before = report.machine()
    target = _servers(url, pids, start, count, err)
    needed = config.chat_clients + config.pollers + 1
    try:
        if users is not None:
            soak_users = load_users(users.read_text())[:needed]
        else:
            err.print(f"creating {needed} users")
            soak_users = provision_users(f"soak{secrets.token_hex(3)}", needed, target.env)
        if widget_token is None and not url and config.visitors:
            widget_token = create_widget_inbox(target.env, soak_users[-1].name)
        err.print(f"soaking for {config.minutes:g} min, a sample every {config.sample_seconds:g} s")
        soak = _run_loop(loop, run_soak(config, target, soak_users, widget_token, _progress(err)))
    finally:
        target.stop()
    after = report.machine()["load_average"]
    doc = soak_document(soak, {**machine_before, "load_average_after": after})
    if json_out:
        _print_soak(doc, err)
        print(json.dumps(doc, indent=2))
    else:
        _print_soak(doc, Console(width=None if sys.stdout.isatty() else 150))
    if report_dir is not None:
        err.print(f"chart: {write_chart(doc, report_dir / 'soak.png')}")


def _rest(
    config: RestConfig,
    url: list[str] | None,
    pids: list[int] | None,
    start: Start | None,
    count: int,
    users: Path | None,
    json_out: bool,
    loop: Loop,
) -> None:
    err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)
    machine_before = report.machine()
    target = _servers(url, pids, start, count, err)
    try:
        if users is not None:
            senders = load_users(users.read_text())[: config.concurrency]
        else:
            err.print(f"creating {config.concurrency} users")
            senders = provision_users(f"rest{secrets.token_hex(3)}", config.concurrency, target.env)
        if len(senders) < 1:
            raise typer.BadParameter("rest needs at least one user")
        doc = _run_loop(loop, run_rest(config, target, senders, _progress(err)))
    finally:
        target.stop()
    doc["machine"] = {**machine_before, "load_average_after": report.machine()["load_average"]}
    doc["servers"] = {"mode": target.mode, "count": len(target.urls)}
    if json_out:
        _print_rest(doc, err)
        print(json.dumps(json_safe(doc), indent=2))
    else:
        _print_rest(doc, Console(width=None if sys.stdout.isatty() else 150))
    if doc["p0"]["total"]:
        raise typer.Exit(1)


def _print_rest(doc: dict[str, Any], console: Console) -> None:
    config = doc["config"]
    table = Table(
        title=f"rest: {config['concurrency']} sender(s), {config['messages']} messages, "
        f"one conversation ({doc['servers']['mode']})"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in doc["summary"].items():
        table.add_row(name, str(value))
    console.print(table)
    console.print(
        f"load average before {doc['machine']['load_average']}, after "
        f"{doc['machine']['load_average_after']}"
    )
    for status, count in doc["errors"].items():
        console.print(f"  {count}: HTTP {status}")


def _print_soak(doc: dict[str, Any], console: Console) -> None:
    table = Table(title="soak: middle third vs last third of the run")
    for column in ("figure", "middle", "last", "growth", "flat"):
        table.add_column(column)
    verdict = doc["verdict"]
    for name in ("rss_mb", "fds", "db_connections", "ack_p95_ms"):
        row = verdict[name]
        table.add_row(
            name,
            str(row["middle"]),
            str(row["last"]),
            str(row["growth"]),
            "yes" if row["flat"] else "[red]NO[/red]",
        )
    console.print(table)
    totals = doc["totals"]
    console.print(
        f"sent {totals['sent']}, acked {totals['acked']}, deliveries {totals['deliveries']}, "
        f"errors {totals['errors']}; flat: {'yes' if verdict['flat'] else 'NO'}"
    )
    for kind, count in doc.get("errors", {}).items():
        console.print(f"  {count}: {kind}")


def _servers(
    url: list[str] | None, pids: list[int] | None, start: Start | None, count: int, err: Console
) -> ServerSet:
    if url:
        if start is not None:
            raise typer.BadParameter("use --url or --start, not both")
        return ServerSet(urls=[u.rstrip("/") for u in url], pids=list(pids or []))
    mode = start or Start.EMBEDDED
    err.print(f"starting {count} {mode.value} server(s)")
    try:
        started = start_servers(mode.value, count)  # type: ignore[arg-type]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    for server_url, pid in zip(started.urls, started.pids, strict=True):
        err.print(f"server {server_url} pid {pid}")
    return started


def _run_loop(loop: Loop, coro: Coroutine[Any, Any, T]) -> T:
    if loop is Loop.UVLOOP:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(coro)
        return uvloop.run(coro)
    return asyncio.run(coro)


def _progress(console: Console) -> Callable[[str], None]:
    """A live line on a terminal; elsewhere a line every few seconds."""
    tty = sys.stderr.isatty()
    last = [0.0]

    def show(line: str) -> None:
        if tty:
            sys.stderr.write("\r\x1b[2K" + line)
            sys.stderr.flush()
            return
        if not line:
            return
        now = time.monotonic()
        if line.startswith("t=") and now - last[0] < 5:
            return
        last[0] = now
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    return show


def _check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise typer.BadParameter(
            "--report needs matplotlib: pip install 'parley[bench]'", param_hint="--report"
        ) from None
