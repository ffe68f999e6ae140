"""Restores that prove themselves: every restore ends with a comparison of each table's row count
and content checksum (and every attachment's sha256) against the backup's manifest.

- `restore_to`: into a new, empty database (`parley restore NAME --to URL`); the source
  deployment is never touched.
- `restore_in_place`: over the deployment's own database (a rollback). A safety backup of what
  is there now is taken first, so nothing is lost even then.
- `restore_test`: the newest verified backup into a scratch database that is dropped afterwards
  (`parley restore --test`, seed 003: "test restore from yesterday's backup"); the outcome is
  appended to `<backup_dir>/restore-tests.jsonl` as evidence.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from parley.core.errors import ErrorCode
from parley.features.ops.backup import (
    Backup,
    BackupError,
    Manifest,
    Progress,
    copy_tree,
    create_backup,
    is_anonymized,
    list_backups,
    no_progress,
    require_intact,
    verify_backup,
)
from parley.settings import Settings
from parley.storage import snapshots
from parley.storage.snapshots import SnapshotError

RESTORE_TESTS = "restore-tests.jsonl"


@dataclass
class TableCheck:
    table: str
    expected_rows: int
    rows: int | None
    ok: bool


@dataclass
class RestoreReport:
    """What was restored where, and whether the result matches the backup, table by table."""

    backup: str
    target: str  # the database URL without credentials
    attachments_dir: str
    tables: list[TableCheck] = field(default_factory=list)
    attachments: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    safety_backup: str = ""  # restore in place: the backup of what was there before

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "backup": self.backup,
            "target": self.target,
            "attachments_dir": self.attachments_dir,
            "tables": [t.__dict__ for t in self.tables],
            "attachments": self.attachments,
            "problems": self.problems,
            "seconds": round(self.seconds, 2),
            "safety_backup": self.safety_backup,
        }


# -- the target ------------------------------------------------------------------------------------


async def _prepare_new_target(url: str, dialect: str) -> None:
    """Make sure `url` names a database that does not exist yet (or is empty), creating it."""
    target_dialect = snapshots.dialect_of(url)
    if target_dialect != dialect:
        raise BackupError(
            f"this is a {dialect} backup; restore it into a {dialect} database, not "
            f"{target_dialect}",
            ErrorCode.BAD_REQUEST,
        )
    if dialect == "sqlite":
        path = snapshots.sqlite_path(url)
        if path.exists() and path.stat().st_size > 0:
            raise BackupError(
                f"{path} already exists; restore into a new file (or `--in-place` to roll back)",
                ErrorCode.RESTORE_TARGET_NOT_EMPTY,
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    if not await snapshots.pg_database_exists(url):
        await snapshots.pg_create_database(url)
    elif await snapshots.table_names(url):
        raise BackupError(
            f"database {snapshots.database_name(url)!r} already has tables; restore into a new "
            "database (or `--in-place` to roll back)",
            ErrorCode.RESTORE_TARGET_NOT_EMPTY,
        )


async def _load(backup: Backup, manifest: Manifest, url: str) -> None:
    source = backup.path / manifest.database_file
    try:
        if manifest.dialect == "sqlite":
            await asyncio.to_thread(snapshots.sqlite_put, source, url)
        else:
            await snapshots.pg_restore(url, source)
    except SnapshotError as exc:
        raise BackupError(str(exc), ErrorCode.BACKUP_FAILED) from exc


def _restore_attachments(
    backup: Backup, manifest: Manifest, target: Path, progress: Progress
) -> tuple[int, list[str]]:
    """Copy the backup's attachment files into `target` and check each one's sha256.

    Files already there and not in the backup stay: attachments are never rewritten, so a file
    uploaded after the backup harms nothing and deleting it could lose data.
    """
    copied = copy_tree(backup.path / "attachments", target, progress, "attachments")
    problems = []
    for relative, entry in manifest.files.items():
        if not relative.startswith("attachments/"):
            continue
        got = copied.get(relative.removeprefix("attachments/"))
        if got is None:
            problems.append(f"{relative}: not restored")
        elif got["sha256"] != entry["sha256"]:
            problems.append(f"{relative}: restored copy differs from the manifest")
    return len(copied), problems


async def _compare(manifest: Manifest, url: str, report: RestoreReport) -> None:
    actual = await snapshots.fingerprint_url(url)
    for table, expected in sorted(manifest.tables.items()):
        got = actual.get(table)
        ok = got is not None and got == expected
        report.tables.append(TableCheck(table, expected.rows, got.rows if got else None, ok))
    report.problems += snapshots.compare(manifest.tables, actual)


# -- the three restores ----------------------------------------------------------------------------


async def restore_to(
    backup: Backup,
    url: str,
    *,
    attachments_dir: Path,
    progress: Progress = no_progress,
) -> RestoreReport:
    """Restore `backup` into a new database at `url` and its files into `attachments_dir`."""
    started = time.monotonic()
    backup = await verify_backup(backup.path, progress=progress)
    manifest = require_intact(backup)
    await _prepare_new_target(url, manifest.dialect)
    report = RestoreReport(backup.name, snapshots.public_url(url), str(attachments_dir))
    progress("database", 0, 0)
    await _load(backup, manifest, url)
    report.attachments, problems = await asyncio.to_thread(
        _restore_attachments, backup, manifest, attachments_dir, progress
    )
    report.problems += problems
    await _compare(manifest, url, report)
    report.seconds = time.monotonic() - started
    return report


async def restore_in_place(
    settings: Settings, backup: Backup, *, progress: Progress = no_progress
) -> RestoreReport:
    """Put `backup` back as the deployment's database (the service must be stopped).

    What the database holds now is backed up first (label `before-restore`), and its name is
    in the report: a rollback can itself be rolled back.
    """
    started = time.monotonic()
    backup = await verify_backup(backup.path, progress=progress)
    manifest = require_intact(backup)
    url = settings.effective_database_url
    if snapshots.dialect_of(url) != manifest.dialect:
        raise BackupError(
            f"this is a {manifest.dialect} backup and the deployment runs on "
            f"{snapshots.dialect_of(url)}",
            ErrorCode.BAD_REQUEST,
        )
    safety = ""
    exists = (
        snapshots.sqlite_path(url).exists()
        if manifest.dialect == "sqlite"
        else await snapshots.pg_database_exists(url)
    )
    if exists and await snapshots.table_names(url):
        safety = (await create_backup(settings, label="before-restore", progress=progress)).name
    if manifest.dialect == "postgresql":
        if exists:
            await snapshots.pg_clear_schema(url)
        else:
            await snapshots.pg_create_database(url)
    report = RestoreReport(
        backup.name, snapshots.public_url(url), str(settings.attachments_dir), safety_backup=safety
    )
    await _load(backup, manifest, url)
    report.attachments, problems = await asyncio.to_thread(
        _restore_attachments, backup, manifest, settings.attachments_dir, progress
    )
    report.problems += problems
    await _compare(manifest, url, report)
    report.seconds = time.monotonic() - started
    return report


def _scratch_url(settings: Settings, workdir: Path) -> str:
    url = settings.effective_database_url
    if snapshots.dialect_of(url) == "sqlite":
        return f"sqlite+aiosqlite:///{workdir / 'restore-test.db'}"
    base = snapshots.database_name(url) or "parley"
    return snapshots.with_database(url, f"{base}_restore_test_{uuid.uuid4().hex[:8]}"[:63])


async def restore_test(
    settings: Settings, backup: Backup | None = None, *, progress: Progress = no_progress
) -> RestoreReport:
    """Restore a backup (default: the newest verified one) into a scratch database, compare,
    drop the scratch copy, and append the outcome to restore-tests.jsonl."""
    root = settings.effective_backup_dir
    if backup is None:
        found = list_backups(root)
        backup = next((b for b in found if b.verified and not is_anonymized(b)), None)
        if backup is None:
            raise BackupError(
                f"no verified backup in {root} to test; make one with `parley backup`",
                ErrorCode.BACKUP_NOT_FOUND,
            )
    with tempfile.TemporaryDirectory(prefix="parley-restore-test-") as work:
        workdir = Path(work)
        url = _scratch_url(settings, workdir)
        try:
            report = await restore_to(
                backup, url, attachments_dir=workdir / "attachments", progress=progress
            )
        except BackupError as exc:
            report = RestoreReport(
                backup.name, snapshots.public_url(url), "", problems=[exc.message]
            )
        finally:
            if snapshots.dialect_of(url) == "postgresql":
                await snapshots.pg_drop_database(url)
    record = {"at": datetime.now(UTC).isoformat().replace("+00:00", "Z"), **report.to_json()}
    root.mkdir(parents=True, exist_ok=True)
    with (root / RESTORE_TESTS).open("a") as log:
        log.write(json.dumps(record) + "\n")
    return report
