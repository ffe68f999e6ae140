"""`parley maintenance | backup | restore | migrate | deploy | rollback | alerts`: operations
from a terminal, each printing a readable table (or `--json`) and exiting non-zero on failure,
so a runbook step is one command whose output is its evidence (docs/operations.md)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from parley.core.audit import Target
from parley.core.errors import ParleyError
from parley.features.ops import backup as backups
from parley.features.ops.maintenance import MaintenanceState
from parley.runner import cli_actor, redacted, run_with_services
from parley.services.audit import AuditLog
from parley.settings import Settings
from parley.storage import migrate as migrations
from parley.storage.audit import AuditStore
from parley.storage.database import Database

console = Console()
T = TypeVar("T")

JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Actor = Annotated[str, typer.Option(help="Who is acting, for the audit log (default: cli:$USER).")]
Reason = Annotated[str, typer.Option(help="Why, for the audit log.")]


def _fail(exc: ParleyError) -> typer.Exit:
    console.print(f"[red]{exc.code}[/red]: {exc.message}")
    return typer.Exit(1)


def _run(coro: Awaitable[T]) -> T:
    """Run an operation that does not need the deployment's services (backup files, tools)."""
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except ParleyError as exc:
        raise _fail(exc) from None


@contextmanager
def _progress(enabled: bool) -> Iterator[backups.Progress]:
    """A progress bar per stage (database, attachments, verify) on a terminal; quiet for --json."""
    if not enabled:
        yield backups.no_progress
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total or None)
            bar.update(tasks[stage], completed=done, total=total or None)

        yield update


def _audit(action: str, target: Target, *, actor: str = "", **details: Any) -> None:
    """Record an operation in the deployment's audit log.

    Straight through the audit store, not `run_with_services`: that migrates the embedded
    database to the newest schema, which `parley migrate down` must not have undone behind it.
    A database that cannot take the entry (down, or older than the audit log) does not fail the
    operation; it is said.
    """
    settings = Settings()

    async def record() -> None:
        db = Database(settings.effective_database_url)
        try:
            await AuditLog(AuditStore(db)).record(cli_actor(actor), action, target, **details)
        finally:
            await db.dispose()

    try:
        asyncio.run(record())
    except Exception as exc:  # the record is a side note here; the operation stands
        console.print(f"[yellow]Not recorded in the audit log[/yellow] ({type(exc).__name__})")


# -- maintenance -----------------------------------------------------------------------------------

maintenance_app = typer.Typer(
    help="Maintenance mode for every node: the API answers 503 with your message; staff work on.",
    no_args_is_help=True,
)


def _maintenance_table(state: MaintenanceState) -> Table:
    table = Table("maintenance", "message", "retry after", "since (UTC)", "by")
    table.add_row(
        "[red]ON[/red]" if state.active else "[green]off[/green]",
        state.message,
        f"{state.retry_after} s",
        state.since.strftime("%Y-%m-%d %H:%M:%S") if state.since else "",
        state.actor,
    )
    return table


@maintenance_app.command("on")
def maintenance_on(
    message: Annotated[str, typer.Option(help="What users see (the widget, the apps).")] = "",
    retry_after: Annotated[
        int | None, typer.Option(min=1, max=86_400, help="Retry-After seconds.")
    ] = None,
    reason: Reason = "",
    actor: Actor = "",
) -> None:
    """Switch maintenance mode on (every node within PARLEY_MAINTENANCE_POLL_SECONDS)."""
    state = run_with_services(
        lambda s: s.maintenance.do_switch(
            cli_actor(actor), active=True, message=message, retry_after=retry_after, reason=reason
        )
    )
    console.print(_maintenance_table(state))


@maintenance_app.command("off")
def maintenance_off(reason: Reason = "", actor: Actor = "") -> None:
    """Switch maintenance mode off: the API serves everyone again."""
    state = run_with_services(
        lambda s: s.maintenance.do_switch(cli_actor(actor), active=False, reason=reason)
    )
    console.print(_maintenance_table(state))


@maintenance_app.command("status")
def maintenance_status(json_out: JsonOut = False) -> None:
    """Is maintenance mode on, since when, with which message, set by whom."""
    state = run_with_services(lambda s: s.maintenance.read())
    if json_out:
        print(json.dumps(state.to_json(), indent=2))
    else:
        console.print(_maintenance_table(state))


# -- backups ---------------------------------------------------------------------------------------

backup_app = typer.Typer(
    help="Back up the database and attachments (checksummed, verified), list, verify, rotate.",
    invoke_without_command=True,
)


def _backup_table(found: list[backups.Backup]) -> Table:
    table = Table("backup", "created (UTC)", "rows", "files", "MB", "verified")
    table.columns[0].no_wrap = True
    for backup in found:
        manifest = backup.manifest
        verification = backup.verification
        if manifest is None:
            verified = f"[red]✘ {backup.problem}[/red]"
        elif verification is None:
            verified = "[yellow]not yet[/yellow]"
        elif verification.ok:
            verified = f"[green]✔[/green] {verification.at:%Y-%m-%d %H:%M}"
        else:
            verified = f"[red]✘ {len(verification.problems)} problem(s)[/red]"
        table.add_row(
            backup.name,
            f"{manifest.created_at:%Y-%m-%d %H:%M}" if manifest else "?",
            str(manifest.rows) if manifest else "",
            str(manifest.attachment_files) if manifest else "",
            f"{manifest.size / 1e6:.1f}" if manifest else "",
            verified,
        )
    return table


@backup_app.callback()
def backup(
    ctx: typer.Context,
    label: Annotated[
        str, typer.Option(help="A word in the name: scheduled, pre-deploy, manual...")
    ] = "manual",
    anonymize: Annotated[
        bool,
        typer.Option(
            help="A staging copy: names, e-mails, bodies and attachments replaced (shapes kept)."
        ),
    ] = False,
    rotate: Annotated[bool, typer.Option(help="Apply the rotation policy afterwards.")] = True,
    json_out: JsonOut = False,
    actor: Actor = "",
) -> None:
    """Back up now: database + attachments + manifest with sha256, verified before it counts."""
    if ctx.invoked_subcommand is not None:
        return
    settings = Settings()
    with _progress(not json_out) as progress:
        if anonymize:
            from parley.features.ops.anonymize import create_anonymized_backup

            report = _run(
                create_anonymized_backup(
                    settings, label=label if label != "manual" else "staging", progress=progress
                )
            )
            made = report.backup
        else:
            made = _run(backups.create_backup(settings, label=label, progress=progress))
    removed = backups.rotate(settings) if rotate else []
    summary = made.to_json()
    _audit(
        "backup.create",
        Target.of("backup", made.name),
        actor=actor,
        after={k: summary[k] for k in ("label", "anonymized", "rows", "attachments", "bytes")},
    )
    if json_out:
        print(json.dumps({**summary, "rotated_away": removed}, indent=2))
        return
    console.print(_backup_table([made]))
    console.print(f"[green]Backup written and verified[/green]: {made.path}")
    if removed:
        console.print(f"Rotation removed {len(removed)}: {', '.join(removed)}")


@backup_app.command("list")
def backup_list(json_out: JsonOut = False) -> None:
    """Every backup in the backup directory, newest first, with its last verification."""
    settings = Settings()
    found = backups.list_backups(settings.effective_backup_dir)
    if json_out:
        print(json.dumps([b.to_json() for b in found], indent=2))
        return
    if not found:
        console.print(f"No backups in {settings.effective_backup_dir}; make one: `parley backup`")
        return
    console.print(_backup_table(found))


@backup_app.command("verify")
def backup_verify(
    name: Annotated[
        str, typer.Argument(help="A backup name or folder, `latest`, or `all`.")
    ] = "all",
    json_out: JsonOut = False,
) -> None:
    """Re-read every file against the manifest and check the database file. Exit 1 if damaged."""
    settings = Settings()
    if name == "all":
        targets = backups.list_backups(settings.effective_backup_dir)
    else:
        try:
            targets = [backups.find_backup(settings, name)]
        except ParleyError as exc:
            raise _fail(exc) from None
    with _progress(not json_out) as progress:
        checked = [_run(backups.verify_backup(b.path, progress=progress)) for b in targets]
    if json_out:
        print(json.dumps([b.to_json() for b in checked], indent=2))
    else:
        console.print(_backup_table(checked))
        for backup in checked:
            for problem in backup.verification.problems if backup.verification else []:
                console.print(f"[red]{backup.name}[/red]: {problem}", markup=True)
    if any(not b.verified for b in checked):
        raise typer.Exit(1)


@backup_app.command("rotate")
def backup_rotate(
    dry_run: Annotated[bool, typer.Option(help="Say what would go; delete nothing.")] = False,
) -> None:
    """Apply the rotation policy (PARLEY_BACKUP_KEEP_DAILY / _WEEKLY / _MONTHLY)."""
    removed = backups.rotate(Settings(), dry_run=dry_run)
    verb = "Would remove" if dry_run else "Removed"
    console.print(
        f"{verb} {len(removed)} backup(s)" + (f": {', '.join(removed)}" if removed else "")
    )


# -- restore --------------------------------------------------------------------------------------


def _restore_table(report: Any) -> Table:
    table = Table("table", "rows in backup", "rows restored", "checksum")
    for check in report.tables:
        table.add_row(
            check.table,
            str(check.expected_rows),
            "" if check.rows is None else str(check.rows),
            "[green]✔ equal[/green]" if check.ok else "[red]✘ differs[/red]",
        )
    return table


def restore_command(
    name: Annotated[
        str, typer.Argument(help="The backup: its name, its folder, or `latest`.")
    ] = "latest",
    to: Annotated[
        str,
        typer.Option(
            help="A NEW database URL to restore into (SQLite: a new file; PostgreSQL: created)."
        ),
    ] = "",
    attachments_dir: Annotated[
        Path | None,
        typer.Option(help="Where the attachments go (default: beside the new database)."),
    ] = None,
    in_place: Annotated[
        bool,
        typer.Option(
            "--in-place",
            help="Replace this deployment's database (rollback; stop the service first). "
            "What is there now is backed up first.",
        ),
    ] = False,
    test: Annotated[
        bool,
        typer.Option(
            "--test",
            help="Restore into a scratch database, compare, drop it, report (seed 003's test "
            "restore). NAME defaults to the newest verified backup.",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm --in-place.")] = False,
    reason: Reason = "",
    actor: Actor = "",
    json_out: JsonOut = False,
) -> None:
    """Restore a backup and prove it: row counts and checksums compared table by table.

    Exit 0 when everything matches, 1 otherwise (a damaged backup fails before touching anything).
    """
    from parley.features.ops import restore as restores

    chosen = [bool(to), in_place, test]
    if sum(chosen) != 1:
        raise typer.BadParameter("say where: --to NEW_DATABASE_URL, --in-place, or --test")
    settings = Settings()
    try:
        backup = None if (test and name == "latest") else backups.find_backup(settings, name)
    except ParleyError as exc:
        raise _fail(exc) from None
    with _progress(not json_out) as progress:
        if test:
            report = _run(restores.restore_test(settings, backup, progress=progress))
            action, target = "backup.restore_test", report.target
        elif in_place:
            if not yes:
                raise typer.BadParameter(
                    "--in-place replaces the deployment's database; stop the service and add --yes"
                )
            assert backup is not None
            report = _run(restores.restore_in_place(settings, backup, progress=progress))
            action, target = "backup.restore_in_place", report.target
        else:
            assert backup is not None
            if attachments_dir is None:
                attachments_dir = _beside(to, settings, backup.name)
            report = _run(
                restores.restore_to(backup, to, attachments_dir=attachments_dir, progress=progress)
            )
            action, target = "backup.restore", report.target
    _audit(
        action,
        Target.of("backup", report.backup),
        actor=actor,
        after={"target": target, "ok": report.ok, "tables": len(report.tables)},
        reason=reason,
    )
    if json_out:
        print(json.dumps(report.to_json(), indent=2))
    else:
        console.print(_restore_table(report))
        console.print(
            f"Restored [bold]{report.backup}[/bold] into {redacted(report.target)} "
            f"({report.attachments} attachment files) in {report.seconds:.1f} s"
        )
        if report.safety_backup:
            console.print(f"What was there before is in backup {report.safety_backup}")
        for problem in report.problems:
            console.print(f"[red]✘[/red] {problem}", markup=True)
        console.print(
            "[green]Restore verified: every table matches the backup[/green]"
            if report.ok
            else "[red]Restore does NOT match the backup[/red]"
        )
    raise typer.Exit(0 if report.ok else 1)


def _beside(url: str, settings: Settings, name: str) -> Path:
    if url.startswith("sqlite"):
        from parley.storage.snapshots import sqlite_path

        return sqlite_path(url).parent / "attachments"
    return settings.data_dir / f"restored-{name}" / "attachments"


# -- migrations ------------------------------------------------------------------------------------

migrate_app = typer.Typer(
    help="Database migrations: apply, undo, and check that the code and the schema agree.",
    invoke_without_command=True,
)


@migrate_app.callback()
def migrate(ctx: typer.Context) -> None:
    """`parley migrate` alone is `parley migrate up`."""
    if ctx.invoked_subcommand is None:
        migrate_up()


@migrate_app.command("up")
def migrate_up(
    to: Annotated[str, typer.Option(help="A revision id, or head.")] = "head",
) -> None:
    """Apply migrations up to the newest schema (or --to a revision)."""
    settings = Settings()
    url = settings.effective_database_url
    before = _run(migrations.database_revision(url))
    migrations.upgrade(url, to)
    after = _run(migrations.database_revision(url))
    if before != after:
        _audit("schema.migrate", Target.of("schema", after or "base"), before=before, after=after)
        console.print(f"[green]Migrated[/green] {before or 'empty'} → {after} ({redacted(url)})")
    console.print(f"[green]Schema is up to date[/green] ({redacted(url)})")


@migrate_app.command("down")
def migrate_down(
    to: Annotated[str, typer.Option(help="The revision to go back to (an id, -1, or base).")],
    backup_first: Annotated[
        bool, typer.Option("--backup/--no-backup", help="Back up before undoing anything.")
    ] = True,
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm: data in dropped tables goes.")
    ] = False,
    actor: Actor = "",
) -> None:
    """Undo migrations down to --to. Tables they created are dropped, with their data."""
    settings = Settings()
    url = settings.effective_database_url
    before = _run(migrations.database_revision(url))
    if not yes:
        raise typer.BadParameter(f"migrating down from {before} drops data; add --yes to confirm")
    if backup_first:
        made = _run(backups.create_backup(settings, label=f"before-downgrade-{before}"))
        console.print(f"Backed up first: {made.name}")
    # Recorded first: going below 0005 drops the audit log itself (the backup keeps it).
    _audit("schema.downgrade", Target.of("schema", to), actor=actor, before=before, after=to)
    migrations.downgrade(url, to)
    after = _run(migrations.database_revision(url))
    console.print(f"[yellow]Migrated down[/yellow] {before} → {after or 'empty'}")


def _status() -> migrations.SchemaStatus:
    return _run(migrations.schema_status(Settings().effective_database_url))


@migrate_app.command("status")
def migrate_status(json_out: JsonOut = False) -> None:
    """Every migration this code ships, which are applied, and whether code and schema agree."""
    status = _status()
    if json_out:
        print(json.dumps(status.to_json(), indent=2))
        return
    applied = set(migrations.known_revisions()) - set(status.pending)
    if status.database_revision is None:
        applied = set()
    table = Table("revision", "what it does", "applied")
    for revision in migrations.known_revisions():
        mark = "[green]✔[/green]" if revision in applied else "[yellow]pending[/yellow]"
        if revision == status.database_revision:
            mark += " ← database"
        table.add_row(revision, migrations.describe_revision(revision), mark)
    console.print(table)
    _say_agreement(status)


def _say_agreement(status: migrations.SchemaStatus) -> None:
    if status.agrees:
        console.print(f"[green]Code and schema agree[/green] (revision {status.code_revision})")
    else:
        console.print(f"[red]Code and schema disagree[/red]: {status.problem()}")


@migrate_app.command("check")
def migrate_check(json_out: JsonOut = False) -> None:
    """Exit 0 when the running code and the database schema agree, 1 (and why) when not."""
    status = _status()
    if json_out:
        print(json.dumps(status.to_json(), indent=2))
    else:
        _say_agreement(status)
    raise typer.Exit(0 if status.agrees else 1)


# -- deploy and rollback ---------------------------------------------------------------------------

deploy_app = typer.Typer(
    help="Deploy a git ref on this host (deploy/systemd), smoke it, roll back on failure.",
    invoke_without_command=True,
)

RepoOpt = Annotated[
    Path | None, typer.Option(help="The git checkout the service runs [PARLEY_DEPLOY_REPO].")
]
UrlOpt = Annotated[str | None, typer.Option(help="Where smoke reaches it [PARLEY_DEPLOY_URL].")]


def _plan(actor: str, **overrides: Any) -> Any:
    from parley.features.ops.deploy import Plan

    return Plan.of(Settings(), cli_actor(actor), **overrides)


def _print_outcome(outcome: Any) -> None:
    table = Table("step", "result", "s", "evidence")
    table.columns[3].overflow = "fold"
    for step in outcome.steps:
        mark = "[green]ok[/green]" if step.ok else "[red]FAILED[/red]"
        table.add_row(step.name, mark, f"{step.seconds:.1f}", step.detail[-300:])
    colour = "green" if outcome.ok else "red"
    console.print(
        f"[bold]{outcome.action}[/bold] {outcome.ref} ({outcome.sha[:12]}), before "
        f"{outcome.previous_ref} ({outcome.previous_sha[:12]}), by {outcome.actor}"
    )
    console.print(table)
    console.print(
        f"Smoke [bold]{outcome.smoke}[/bold] — outcome [{colour}]{outcome.outcome}[/{colour}]"
        + (f" — {outcome.note}" if outcome.note else "")
    )
    if outcome.rollback is not None:
        _print_outcome(outcome.rollback)


def _audit_outcome(outcome: Any, actor: str) -> None:
    """`deploy.release` / `deploy.rollback` in the audit log of the database as it is now (after
    a rollback: the restored one, which then also holds `backup.restore_in_place`)."""
    for done in (outcome, outcome.rollback):
        if done is None:
            continue
        _audit(
            "deploy.release" if done.action == "deploy" else "deploy.rollback",
            Target.of("release", done.ref),
            actor=actor,
            before={"ref": done.previous_ref, "sha": done.previous_sha},
            after={"ref": done.ref, "sha": done.sha, "smoke": done.smoke, "outcome": done.outcome},
            reason=done.note,
        )


@deploy_app.callback()
def deploy(
    ctx: typer.Context,
    ref: Annotated[str, typer.Option(help="What to deploy: a tag, branch or commit.")] = "",
    auto_rollback: Annotated[
        bool,
        typer.Option(help="On a failed step or smoke: back to the previous ref and its backup."),
    ] = False,
    maintenance: Annotated[
        bool,
        typer.Option(help="Maintenance mode on during the deploy (smoke accounts must be staff)."),
    ] = False,
    backup_first: Annotated[
        bool, typer.Option("--backup/--no-backup", help="Back up before changing anything.")
    ] = True,
    fetch: Annotated[bool, typer.Option(help="git fetch origin first.")] = True,
    repo: RepoOpt = None,
    url: UrlOpt = None,
    actor: Actor = "",
    json_out: JsonOut = False,
) -> None:
    """Deploy REF: backup, checkout, install, migrate, restart, ready, smoke, release log.

    Exit 0 when the release is live and smoke passed; 1 otherwise (rolled back or not).
    """
    if ctx.invoked_subcommand is not None:
        return
    if not ref:
        raise typer.BadParameter("say what to deploy: --ref TAG|BRANCH|SHA")
    from parley.features.ops.deploy import Deployer

    plan = _plan(
        actor, repo=repo, url=url, maintenance=maintenance, backup=backup_first, fetch=fetch
    )
    say = (lambda _line: None) if json_out else (lambda line: console.print(line, markup=False))
    try:
        outcome = Deployer(plan, say).deploy(ref, auto_rollback=auto_rollback)
    except ParleyError as exc:
        raise _fail(exc) from None
    _audit_outcome(outcome, actor)
    if json_out:
        print(json.dumps(outcome.to_json(), indent=2))
    else:
        _print_outcome(outcome)
        console.print(f"Release log: {plan.release_log}")
    raise typer.Exit(0 if outcome.ok else 1)


@deploy_app.command("log")
def deploy_log(
    limit: Annotated[int, typer.Argument(min=1, help="How many rows, newest last.")] = 20,
    repo: RepoOpt = None,
    json_out: JsonOut = False,
) -> None:
    """The release log: time, action, ref, previous ref, actor, smoke, backup, outcome."""
    from parley.features.ops.deploy import LOG_COLUMNS, read_release_log

    plan = _plan("", repo=repo)
    rows = read_release_log(plan.release_log)[-limit:]
    if json_out:
        print(json.dumps(rows, indent=2))
        return
    table = Table(*LOG_COLUMNS)
    for row in rows:
        table.add_row(*(row.get(column, "") for column in LOG_COLUMNS))
    console.print(table)


def rollback_command(
    to: Annotated[
        str | None,
        typer.Option(help="The known-good ref (default: the previous ref of the last deploy)."),
    ] = None,
    backup: Annotated[
        str | None,
        typer.Option(help="The backup to restore (default: the last deploy's pre-deploy one)."),
    ] = None,
    keep_database: Annotated[
        bool, typer.Option(help="Roll back the code only; leave the database as it is.")
    ] = False,
    repo: RepoOpt = None,
    url: UrlOpt = None,
    actor: Actor = "",
    json_out: JsonOut = False,
) -> None:
    """Roll back by hand: stop, checkout, install, restore the backup, restart, smoke, log."""
    from parley.features.ops.deploy import Deployer

    plan = _plan(actor, repo=repo, url=url)
    say = (lambda _line: None) if json_out else (lambda line: console.print(line, markup=False))
    try:
        outcome = Deployer(plan, say).rollback(
            to, backup=backup, restore_database=not keep_database
        )
    except ParleyError as exc:
        raise _fail(exc) from None
    _audit_outcome(outcome, actor)
    if json_out:
        print(json.dumps(outcome.to_json(), indent=2))
    else:
        _print_outcome(outcome)
    raise typer.Exit(0 if outcome.ok else 1)


# -- alerts ----------------------------------------------------------------------------------------

alerts_app = typer.Typer(help="The alert path: send a test alert.", no_args_is_help=True)


@alerts_app.command("test")
def alerts_test(
    url: Annotated[
        str,
        typer.Option(
            help="Alertmanager's /api/v2/alerts or a webhook [PARLEY_ALERTS_WEBHOOK_URL]."
        ),
    ] = "",
    note: Annotated[str, typer.Option(help="A line for whoever receives it.")] = "",
) -> None:
    """Send the alert `ParleyTestAlert` and say whether the receiver took it (exit 1 if not)."""
    from parley.features.ops.alerts import send_test_alert

    target = url or Settings().alerts_webhook_url
    if not target:
        raise typer.BadParameter("give --url or set PARLEY_ALERTS_WEBHOOK_URL")
    try:
        sent = send_test_alert(target, note)
    except ParleyError as exc:
        raise _fail(exc) from None
    console.print(
        f"[green]Sent[/green] {sent.alert['labels']['alertname']} to the {sent.url_kind} "
        f"(HTTP {sent.status}); ends by itself at {sent.alert['endsAt']}"
    )
