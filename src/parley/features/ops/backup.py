"""Backups: one folder per backup with the database, the attachments and a checksummed manifest.

    <backup_dir>/parley-20260301T020000Z-scheduled/
        manifest.json      what is inside: every file's size and sha256, every table's row count
                           and content checksum, schema revision, dialect, label, anonymized
        database.sqlite    SQLite online-backup copy   | database.pgdump  pg_dump -Fc
        attachments/...    the attachment files, laid out as in <data_dir>/attachments
        verified.json      the last `parley backup verify` result (time, ok, problems)

A backup is written under a `.partial-` name and renamed when whole, so a crash never leaves
something that looks like a backup. Verification re-reads every file against the manifest and
checks the database file itself (SQLite integrity check, pg_restore's table of contents).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from parley import __version__
from parley.core.errors import ErrorCode, NotFound, ParleyError
from parley.settings import Settings
from parley.storage import snapshots
from parley.storage.migrate import database_revision
from parley.storage.snapshots import Fingerprints, SnapshotError, TableFingerprint

FORMAT = 1
MANIFEST = "manifest.json"
VERIFIED = "verified.json"
DATABASE_FILES = {"sqlite": "database.sqlite", "postgresql": "database.pgdump"}
PARTIAL = ".partial-"
_CHUNK = 1024 * 1024

# progress(stage, done, total): e.g. ("attachments", 120, 4000). Totals may be 0 (unknown).
Progress = Callable[[str, int, int], None]


def no_progress(_stage: str, _done: int, _total: int) -> None:
    """The progress callback of a caller that shows none."""
    return None


class BackupError(ParleyError):
    """A backup could not be made, read or trusted."""

    status = 409
    default_code = ErrorCode.BACKUP_FAILED


@dataclass
class Manifest:
    name: str
    created_at: datetime
    dialect: str
    database_file: str
    schema_revision: str | None
    tables: Fingerprints
    files: dict[str, dict[str, Any]]  # relative path -> {"size", "sha256"}
    label: str = ""
    anonymized: bool = False
    source: str = ""  # the database URL, without credentials
    parley_version: str = __version__
    format: int = FORMAT

    @property
    def attachment_files(self) -> int:
        return sum(1 for path in self.files if path.startswith("attachments/"))

    @property
    def size(self) -> int:
        return sum(int(entry["size"]) for entry in self.files.values())

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "name": self.name,
            "created_at": _iso(self.created_at),
            "parley_version": self.parley_version,
            "dialect": self.dialect,
            "database_file": self.database_file,
            "schema_revision": self.schema_revision,
            "label": self.label,
            "anonymized": self.anonymized,
            "source": self.source,
            "tables": {name: t.to_json() for name, t in sorted(self.tables.items())},
            "files": dict(sorted(self.files.items())),
        }

    @classmethod
    def of(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown backup format {data.get('format')!r}")
        return cls(
            name=str(data["name"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            dialect=str(data["dialect"]),
            database_file=str(data["database_file"]),
            schema_revision=data.get("schema_revision"),
            tables={k: TableFingerprint.of(v) for k, v in data["tables"].items()},
            files={str(k): dict(v) for k, v in data["files"].items()},
            label=str(data.get("label", "")),
            anonymized=bool(data.get("anonymized", False)),
            source=str(data.get("source", "")),
            parley_version=str(data.get("parley_version", "")),
        )


@dataclass
class Verification:
    ok: bool
    at: datetime
    problems: list[str] = field(default_factory=list)
    checked_files: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "at": _iso(self.at),
            "problems": self.problems,
            "checked_files": self.checked_files,
        }


@dataclass
class Backup:
    """A backup folder: its manifest (None when unreadable) and its last verification."""

    path: Path
    manifest: Manifest | None
    verification: Verification | None
    problem: str = ""  # why the manifest could not be read

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def created_at(self) -> datetime | None:
        return self.manifest.created_at if self.manifest else None

    @property
    def verified(self) -> bool:
        return self.verification is not None and self.verification.ok

    def to_json(self) -> dict[str, Any]:
        manifest = self.manifest
        return {
            "name": self.name,
            "path": str(self.path),
            "created_at": _iso(manifest.created_at) if manifest else None,
            "label": manifest.label if manifest else None,
            "anonymized": manifest.anonymized if manifest else None,
            "dialect": manifest.dialect if manifest else None,
            "schema_revision": manifest.schema_revision if manifest else None,
            "rows": manifest.rows if manifest else None,
            "attachments": manifest.attachment_files if manifest else None,
            "bytes": manifest.size if manifest else None,
            "verified": self.verification.to_json() if self.verification else None,
            "problem": self.problem,
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _now() -> datetime:
    return datetime.now(UTC)


def _sha256_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _copy_hashing(source: Path, target: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as src, target.open("wb") as dst:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return size, digest.hexdigest()


def _private_dir(path: Path) -> None:
    """Backups hold every message: readable by the service account only."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)


def backup_name(moment: datetime, label: str = "", *, anonymized: bool = False) -> str:
    stamp = moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    kind = "parley-anon" if anonymized else "parley"
    return f"{kind}-{stamp}" + (f"-{_safe_label(label)}" if label else "")


def _safe_label(label: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in label.strip())[:60]
    return cleaned.strip("-.") or "backup"


# -- making a backup -------------------------------------------------------------------------------


async def snapshot_database(url: str, target_dir: Path, progress: Progress) -> Fingerprints:
    """Write the database file into `target_dir`; return the fingerprints of what it holds."""
    dialect = snapshots.dialect_of(url)
    if dialect not in DATABASE_FILES:
        raise BackupError(f"backups support SQLite and PostgreSQL, not {dialect}")
    target = target_dir / DATABASE_FILES[dialect]
    try:
        if dialect == "sqlite":
            source = snapshots.sqlite_path(url)
            await asyncio.to_thread(
                snapshots.sqlite_backup,
                source,
                target,
                lambda done, total: progress("database", done, total),
            )
            return await snapshots.fingerprint_url(f"sqlite+aiosqlite:///{target}")
        progress("database", 0, 0)
        return await snapshots.pg_dump_with_fingerprints(url, target)
    except SnapshotError as exc:
        raise BackupError(str(exc)) from exc


def copy_tree(
    source: Path, target: Path, progress: Progress, stage: str
) -> dict[str, dict[str, Any]]:
    """Copy every finished file under `source` (not `.part` uploads); sizes and sha256 by path."""
    if not source.exists():
        return {}
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix != ".part")
    copied: dict[str, dict[str, Any]] = {}
    for index, path in enumerate(files, 1):
        relative = path.relative_to(source).as_posix()
        size, digest = _copy_hashing(path, target / relative)
        copied[relative] = {"size": size, "sha256": digest}
        progress(stage, index, len(files))
    return copied


async def create_backup(
    settings: Settings,
    *,
    label: str = "",
    url: str | None = None,
    attachments_dir: Path | None = None,
    anonymized: bool = False,
    source: str = "",
    progress: Progress = no_progress,
    moment: datetime | None = None,
) -> Backup:
    """Back up the database and the attachments into a new folder under the backup dir, then
    verify it. The database comes first: attachment files are written before their rows, so
    every row in the snapshot finds its file in the copy made after it."""
    url = url or settings.effective_database_url
    attachments_dir = attachments_dir or settings.attachments_dir
    root = settings.effective_backup_dir
    _private_dir(root)
    moment = moment or _now()
    name = backup_name(moment, label, anonymized=anonymized)
    if (root / name).exists():
        raise BackupError(f"a backup named {name} already exists", ErrorCode.CONFLICT)
    partial = root / f"{PARTIAL}{name}"
    shutil.rmtree(partial, ignore_errors=True)
    _private_dir(partial)
    try:
        revision = await database_revision(url)
        tables = await snapshot_database(url, partial, progress)
        dialect = snapshots.dialect_of(url)
        database_file = DATABASE_FILES[dialect]
        size, digest = await asyncio.to_thread(_sha256_file, partial / database_file)
        files = {database_file: {"size": size, "sha256": digest}}
        copied = await asyncio.to_thread(
            copy_tree, attachments_dir, partial / "attachments", progress, "attachments"
        )
        files.update({f"attachments/{path}": entry for path, entry in copied.items()})
        manifest = Manifest(
            name=name,
            created_at=moment,
            dialect=dialect,
            database_file=database_file,
            schema_revision=revision,
            tables=tables,
            files=files,
            label=label,
            anonymized=anonymized,
            source=source or snapshots.public_url(url),
        )
        _write_json(partial / MANIFEST, manifest.to_json())
        partial.rename(root / name)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    backup = await verify_backup(root / name, progress=progress)
    if not backup.verified:
        raise BackupError(
            f"backup {name} failed its own verification: {'; '.join(_problems(backup))}",
            ErrorCode.BACKUP_CORRUPT,
        )
    return backup


def _write_json(path: Path, data: Any) -> None:
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    partial.replace(path)


# -- reading and verifying -------------------------------------------------------------------------


def read_backup(path: Path) -> Backup:
    """A backup folder as found; an unreadable manifest is reported, not raised."""
    manifest: Manifest | None = None
    problem = ""
    try:
        manifest = Manifest.of(json.loads((path / MANIFEST).read_text()))
    except FileNotFoundError:
        problem = f"no {MANIFEST}"
    except (ValueError, KeyError, TypeError) as exc:
        problem = f"{MANIFEST} is unreadable: {exc}"
    verification = None
    try:
        data = json.loads((path / VERIFIED).read_text())
        verification = Verification(
            ok=bool(data["ok"]),
            at=datetime.fromisoformat(data["at"]),
            problems=list(data.get("problems", [])),
            checked_files=int(data.get("checked_files", 0)),
        )
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        verification = None
    return Backup(path, manifest, verification, problem)


def list_backups(root: Path) -> list[Backup]:
    """Every backup folder under `root`, newest first (unreadable ones last)."""
    if not root.exists():
        return []
    found = [
        read_backup(path)
        for path in root.iterdir()
        if path.is_dir() and not path.name.startswith(".") and (path / MANIFEST).exists()
    ]
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(found, key=lambda b: (b.created_at or epoch, b.name), reverse=True)


def find_backup(settings: Settings, name_or_path: str) -> Backup:
    """A backup by folder name (in the backup dir), by path, or `latest` (the newest verified
    backup of this deployment; anonymized staging dumps are named explicitly)."""
    root = settings.effective_backup_dir
    if name_or_path == "latest":
        newest = next((b for b in list_backups(root) if b.verified and not is_anonymized(b)), None)
        if newest is None:
            raise NotFound(
                f"no verified backup in {root}; make one with `parley backup`",
                ErrorCode.BACKUP_NOT_FOUND,
            )
        return newest
    for path in (root / name_or_path, Path(name_or_path)):
        if path.is_dir() and not path.name.startswith("."):
            return read_backup(path)
    raise NotFound(
        f"no backup {name_or_path!r} (looked in {root}); see `parley backup list`",
        ErrorCode.BACKUP_NOT_FOUND,
    )


def is_anonymized(backup: Backup) -> bool:
    return backup.manifest is not None and backup.manifest.anonymized


def _check_files(path: Path, manifest: Manifest, progress: Progress) -> tuple[list[str], int]:
    problems = []
    total = len(manifest.files)
    for index, (relative, entry) in enumerate(sorted(manifest.files.items()), 1):
        file = path / relative
        if not file.is_file():
            problems.append(f"{relative}: missing")
            continue
        size, digest = _sha256_file(file)
        if size != int(entry["size"]):
            problems.append(f"{relative}: {size} bytes, manifest says {entry['size']}")
        elif digest != entry["sha256"]:
            problems.append(f"{relative}: checksum differs from the manifest (damaged)")
        progress("verify", index, total)
    return problems, total


async def _check_database_file(path: Path, manifest: Manifest) -> list[str]:
    file = path / manifest.database_file
    if not file.is_file():
        return []  # already reported as missing
    if manifest.dialect == "sqlite":
        verdict = await asyncio.to_thread(snapshots.sqlite_integrity, file)
        return [] if verdict == "ok" else [f"{manifest.database_file}: {verdict}"]
    try:
        contents = await snapshots.pg_dump_contents(file)
    except SnapshotError as exc:
        return [f"{manifest.database_file}: {exc}"]
    missing = [t for t in manifest.tables if f" TABLE DATA public {t} " not in contents]
    return [f"{manifest.database_file}: no data for table {t}" for t in missing[:5]]


async def verify_backup(path: Path, *, progress: Progress = no_progress) -> Backup:
    """Re-read every file of a backup against its manifest; record and return the result."""
    found = read_backup(path)
    manifest = found.manifest
    if manifest is None:
        verification = Verification(False, _now(), [found.problem])
    else:
        problems, checked = await asyncio.to_thread(_check_files, path, manifest, progress)
        problems += await _check_database_file(path, manifest)
        verification = Verification(not problems, _now(), problems, checked)
    _write_json(path / VERIFIED, verification.to_json())
    return Backup(path, manifest, verification, found.problem)


def _problems(backup: Backup) -> list[str]:
    if backup.verification is not None:
        return backup.verification.problems
    return [backup.problem] if backup.problem else []


def require_intact(backup: Backup) -> Manifest:
    """The manifest of a backup that verifies now, or BackupError (ERR_BACKUP_CORRUPT)."""
    if backup.manifest is None or not backup.verified:
        problems = "; ".join(_problems(backup)[:5]) or "not verified"
        raise BackupError(
            f"backup {backup.name} is damaged or incomplete: {problems}. Use another one "
            "(`parley backup list`)",
            ErrorCode.BACKUP_CORRUPT,
        )
    return backup.manifest


# -- rotation --------------------------------------------------------------------------------------


def rotation_keeps(
    backups: list[Backup], *, daily: int, weekly: int, monthly: int, now: datetime
) -> set[str]:
    """Names to keep: the newest of each of the last `daily` days, `weekly` ISO weeks and
    `monthly` months; the newest backup, and the newest pre-deploy one (a rollback target)."""
    dated = sorted(
        (b for b in backups if b.created_at is not None),
        key=lambda b: b.created_at,  # type: ignore[arg-type, return-value]
        reverse=True,
    )
    keep: set[str] = set()
    if dated:
        keep.add(dated[0].name)
    pre_deploy = next((b for b in dated if b.manifest and b.manifest.label == "pre-deploy"), None)
    if pre_deploy is not None:
        keep.add(pre_deploy.name)
    buckets: list[tuple[int, Callable[[datetime], Any], timedelta]] = [
        (daily, lambda d: d.date(), timedelta(days=daily)),
        (weekly, lambda d: d.isocalendar()[:2], timedelta(weeks=weekly)),
        (monthly, lambda d: (d.year, d.month), timedelta(days=31 * monthly)),
    ]
    for count, bucket_of, span in buckets:
        seen: set[Any] = set()
        for backup in dated:
            created = backup.created_at
            assert created is not None
            if len(seen) >= count or now - created > span:
                break
            bucket = bucket_of(created.astimezone(UTC))
            if bucket not in seen:
                seen.add(bucket)
                keep.add(backup.name)
    return keep


def rotate(settings: Settings, *, now: datetime | None = None, dry_run: bool = False) -> list[str]:
    """Delete the backups the rotation policy does not keep (anonymized dumps rotate apart).

    Damaged backups are never deleted here: someone should look at them."""
    root = settings.effective_backup_dir
    removed: list[str] = []
    everything = list_backups(root)
    for anonymized in (False, True):
        group = [b for b in everything if b.manifest and b.manifest.anonymized is anonymized]
        keep = rotation_keeps(
            group,
            daily=settings.backup_keep_daily,
            weekly=settings.backup_keep_weekly,
            monthly=settings.backup_keep_monthly,
            now=now or _now(),
        )
        for backup in group:
            if backup.name not in keep:
                removed.append(backup.name)
                if not dry_run:
                    shutil.rmtree(backup.path)
    for stale in root.glob(f"{PARTIAL}*") if root.exists() else []:
        if not dry_run:
            shutil.rmtree(stale, ignore_errors=True)
    return removed


# -- freshness, for preflight ----------------------------------------------------------------------


def newest_verified_backup_age(
    backup_dir: Path, *, anonymized: bool = False, now: datetime | None = None
) -> timedelta | None:
    """How old the newest verified backup in `backup_dir` is (None: there is none).

    Preflight's "backups fresher than 24 h" (PARLEY_BACKUP_MAX_AGE_HOURS) reads this with
    `anonymized=False`; only backups whose last verification passed count. Cheap: names sort
    by time, so only the newest verified backup's manifest is read.
    """
    if not backup_dir.exists():
        return None
    prefix = "parley-anon-" if anonymized else "parley-"
    names = sorted(
        (
            p.name
            for p in backup_dir.iterdir()
            if p.name.startswith(prefix) and (anonymized or not p.name.startswith("parley-anon-"))
        ),
        reverse=True,
    )
    for name in names:
        found = read_backup(backup_dir / name)
        if found.verified and found.manifest and found.manifest.anonymized is anonymized:
            return (now or _now()) - found.manifest.created_at
    return None


class BackupAgeGauge:
    """`parley_backup_newest_verified_age_seconds` for /metrics (+Inf when there is none),
    read from the backup directory at most once a minute."""

    def __init__(self, backup_dir: Path, ttl_seconds: float = 60.0) -> None:
        self.backup_dir = backup_dir
        self.ttl = ttl_seconds
        self._read_at = 0.0
        self._taken: datetime | None = None

    def __call__(self) -> float:
        clock = time.monotonic()
        if clock - self._read_at > self.ttl or self._read_at == 0.0:
            self._read_at = clock
            age = newest_verified_backup_age(self.backup_dir)
            self._taken = None if age is None else _now() - age
        if self._taken is None:
            return math.inf
        return (_now() - self._taken).total_seconds()


def newest_staging_dump_age(backup_dir: Path, *, now: datetime | None = None) -> timedelta | None:
    """How old the newest verified anonymized dump (`parley backup --anonymize`) is.

    Preflight's staging profile compares it with PARLEY_STAGING_DUMP_MAX_AGE_DAYS (seed 000:
    staging is synced from a dump no older than 7 days).
    """
    return newest_verified_backup_age(backup_dir, anonymized=True, now=now)
