"""`parley audit tail | search | export`: the audit log from a terminal (read-only)."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from parley.assembly import Services
from parley.core.audit import AuditEntry, AuditFilter, Target
from parley.runner import cli_actor, run_with_services
from parley.services.audit import EXPORT_FORMATS, entry_json

audit_app = typer.Typer(
    help="The audit log of staff actions: follow it, search it, export it.", no_args_is_help=True
)
console = Console()

JsonOut = Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")]
ActorOpt = Annotated[str | None, typer.Option(help="Only this actor (a user name, cli:<login>).")]
ActionOpt = Annotated[
    str | None, typer.Option(help="Only actions starting with this (e.g. flag. or rollout.kill).")
]
TargetOpt = Annotated[
    str | None, typer.Option(help="Only this target, KIND or KIND:ID (e.g. inbox:3).")
]
SinceOpt = Annotated[
    datetime | None, typer.Option(help="From this UTC time on (e.g. 2026-12-01T00:00:00).")
]
UntilOpt = Annotated[datetime | None, typer.Option(help="Before this UTC time.")]


def _query(
    actor: str | None,
    action: str | None,
    target: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int = 100,
    after_id: int | None = None,
) -> AuditFilter:
    kind, _, ident = (target or "").partition(":")
    return AuditFilter(
        actor=actor,
        action=action,
        target_kind=kind or None,
        target_id=ident or None,
        since=_utc(since),
        until=_utc(until),
        limit=limit,
        after_id=after_id,
    )


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _short(value: object, width: int = 60) -> str:
    text = "" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(entries: list[AuditEntry]) -> Table:
    table = Table("id", "time (UTC)", "actor", "action", "target", "before → after", "reason")
    for e in entries:
        change = f"{_short(e.before, 40)} → {_short(e.after, 40)}" if e.before or e.after else ""
        table.add_row(
            str(e.id),
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            e.actor,
            e.action,
            f"{e.target_kind}:{e.target_id}",
            change,
            e.reason,
        )
    return table


def _print(entries: list[AuditEntry], as_json: bool) -> None:
    if as_json:
        for entry in entries:
            print(json.dumps(entry_json(entry), ensure_ascii=False))
    elif entries:
        console.print(_table(entries))


@audit_app.command("tail")
def tail(
    lines: Annotated[int, typer.Option("-n", "--lines", min=1, max=10_000)] = 20,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new entries.")
    ] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between checks.")] = 2.0,
    json_out: JsonOut = False,
) -> None:
    """The newest entries, oldest of them first; `--follow` keeps printing (Ctrl+C stops)."""

    async def newest(services: Services) -> list[AuditEntry]:
        return await services.audit.search(None, AuditFilter(limit=lines))

    entries = list(reversed(run_with_services(newest)))
    _print(entries, json_out)
    last = entries[-1].id if entries else 0
    while follow:
        time.sleep(interval)

        async def newer(services: Services, after: int = last) -> list[AuditEntry]:
            return await services.audit.search(None, AuditFilter(after_id=after, limit=1000))

        fresh = run_with_services(newer)
        _print(fresh, json_out)
        if fresh:
            last = fresh[-1].id


@audit_app.command("search")
def search(
    actor: ActorOpt = None,
    action: ActionOpt = None,
    target: TargetOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    json_out: JsonOut = False,
) -> None:
    """Entries matching every filter given, newest first."""
    query = _query(actor, action, target, since, until, limit)

    async def run(services: Services) -> list[AuditEntry]:
        return await services.audit.search(None, query)

    entries = run_with_services(run)
    if not entries and not json_out:
        console.print("No audit entries match.")
    _print(entries, json_out)


@audit_app.command("export")
def export(
    out: Annotated[Path, typer.Option(help="The file to write ('-' for standard output).")],
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    actor: ActorOpt = None,
    action: ActionOpt = None,
    target: TargetOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
) -> None:
    """Every matching entry, oldest first, to a JSON-lines or CSV file (the export is logged)."""
    if fmt not in EXPORT_FORMATS:
        raise typer.BadParameter(f"--format is one of {', '.join(EXPORT_FORMATS)}")
    query = _query(actor, action, target, since, until)

    async def run(services: Services) -> int:
        await services.audit.record(
            cli_actor(),
            "audit.export",
            Target.of("audit_log", "*"),
            after={"format": fmt, "file": str(out)},
        )
        written = 0
        stream = sys.stdout if str(out) == "-" else out.open("w", encoding="utf-8", newline="")
        try:
            with Progress(console=Console(stderr=True), transient=True) as progress:
                task = progress.add_task("exporting", total=None)
                async for chunk in await services.audit.export(None, query, fmt):
                    stream.write(chunk)
                    written += 1
                    progress.update(task, completed=written)
        finally:
            if stream is not sys.stdout:
                stream.close()
        return written - (1 if fmt == "csv" else 0)

    count = run_with_services(run)
    if str(out) != "-":
        console.print(f"Exported {count} entr{'y' if count == 1 else 'ies'} to {out}")
