"""Backup rotation keeps the newest of each recent day, week and month, the newest backup and
the newest pre-deploy one — and never touches damaged backups or anonymized dumps' group."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from parley.features.ops.backup import (
    MANIFEST,
    VERIFIED,
    Manifest,
    backup_name,
    list_backups,
    newest_verified_backup_age,
    rotate,
)
from parley.settings import Settings

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def make(root: Path, moment: datetime, label: str = "scheduled", anonymized: bool = False) -> str:
    name = backup_name(moment, label, anonymized=anonymized)
    folder = root / name
    folder.mkdir(parents=True)
    manifest = Manifest(
        name=name,
        created_at=moment,
        dialect="sqlite",
        database_file="database.sqlite",
        schema_revision="0005",
        tables={},
        files={},
        label=label,
        anonymized=anonymized,
    )
    (folder / MANIFEST).write_text(json.dumps(manifest.to_json()))
    (folder / VERIFIED).write_text(json.dumps({"ok": True, "at": moment.isoformat()}))
    return name


def settings(root: Path, **keep: int) -> Settings:
    return Settings(
        backup_dir=root,
        backup_keep_daily=keep.get("daily", 7),
        backup_keep_weekly=keep.get("weekly", 4),
        backup_keep_monthly=keep.get("monthly", 6),
    )


def test_daily_backups_for_ninety_days_rotate_down_to_days_weeks_and_months(
    tmp_path: Path,
) -> None:
    names = [make(tmp_path, NOW - timedelta(days=d)) for d in range(90)]

    removed = rotate(settings(tmp_path), now=NOW)

    kept = {b.name for b in list_backups(tmp_path)}
    assert set(removed) | kept == set(names) and not set(removed) & kept
    assert {names[d] for d in range(7)} <= kept  # the last 7 days
    ages = sorted((NOW - b.created_at).days for b in list_backups(tmp_path) if b.created_at)
    assert max(ages) > 60  # monthly ones reach back months
    assert len(kept) <= 7 + 4 + 6


def test_the_newest_pre_deploy_backup_survives_however_many_came_after(tmp_path: Path) -> None:
    pre_deploy = make(tmp_path, NOW - timedelta(hours=5), label="pre-deploy")
    for hour in range(4):
        make(tmp_path, NOW - timedelta(hours=hour))

    removed = rotate(settings(tmp_path, daily=1, weekly=0, monthly=0), now=NOW)

    assert pre_deploy not in removed
    assert len(removed) == 3  # the same day's older scheduled ones


def test_damaged_backups_are_never_rotated_away_and_do_not_count_as_fresh(tmp_path: Path) -> None:
    good = make(tmp_path, NOW - timedelta(days=2))
    broken = tmp_path / backup_name(NOW - timedelta(hours=1))
    broken.mkdir()
    (broken / MANIFEST).write_text("{not json")

    removed = rotate(settings(tmp_path, daily=1, weekly=0, monthly=0), now=NOW)
    age = newest_verified_backup_age(tmp_path, now=NOW)

    assert broken.exists() and not removed
    assert age == timedelta(days=2) and good


def test_anonymized_dumps_rotate_apart_from_backups(tmp_path: Path) -> None:
    backups = [make(tmp_path, NOW - timedelta(hours=h)) for h in range(3)]
    dumps = [make(tmp_path, NOW - timedelta(hours=h), "staging", True) for h in range(3)]

    removed = rotate(settings(tmp_path, daily=1, weekly=0, monthly=0), now=NOW)

    assert sorted(removed) == sorted(backups[1:] + dumps[1:])
    assert newest_verified_backup_age(tmp_path, now=NOW) == timedelta(0)
    assert newest_verified_backup_age(tmp_path, anonymized=True, now=NOW) == timedelta(0)
