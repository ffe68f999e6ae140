"""The operations commands as an operator runs them on the embedded database: backup, verify,
restore (to a new database, --test, --in-place), anonymize, migrate up/down/status/check and
alerts test — readable tables, JSON for machines, exit 1 with a clear line when it fails, and
each action in the audit log."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parley.cli import app
from parley.storage.migrate import head_revision
from tests.support.cli import wide_consoles
from tests.support.webhook import webhook_receiver

runner = CliRunner()


@pytest.fixture(autouse=True)
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "PARLEY_DATA_DIR": str(tmp_path / "var"),
        "PARLEY_DATABASE_URL": "",
        "PARLEY_LOG_JSON": "false",
        "COLUMNS": "220",
    }.items():
        monkeypatch.setenv(name, value)
    wide_consoles(monkeypatch)
    return tmp_path


def parley(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_backup_verify_restore_and_test_restore_from_the_terminal(tmp_path: Path) -> None:
    parley("user", "add", "ann", "--role", "admin")
    made = json.loads(parley("backup", "--json"))
    listed = json.loads(parley("backup", "list", "--json"))
    table = parley("backup", "list")
    verified = parley("backup", "verify", made["name"])
    restored = parley("restore", made["name"], "--to", f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
    tested = json.loads(parley("restore", "--test", "--json"))
    audit = parley("audit", "search", "--action", "backup.")

    assert made["verified"]["ok"] is True and made["rows"] > 0
    assert [b["name"] for b in listed] == [made["name"]]
    assert made["name"] in table and "✔" in table
    assert "✔" in verified
    assert "users" in restored and "✔ equal" in restored
    assert "Restore verified: every table matches the backup" in restored
    assert (tmp_path / "new.db").exists()
    assert tested["ok"] is True and tested["backup"] == made["name"]
    assert "backup.create" in audit and "backup.restore" in audit
    assert "backup.restore_test" in audit


def test_a_damaged_backup_fails_verify_and_restore_with_a_clear_line(tmp_path: Path) -> None:
    parley("user", "add", "ann")
    made = json.loads(parley("backup", "--json"))
    (tmp_path / "var" / "backups" / made["name"] / "database.sqlite").write_bytes(b"garbage")

    verify = parley("backup", "verify", "all", code=1)
    restore = parley(
        "restore", made["name"], "--to", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", code=1
    )
    missing = parley("restore", "no-such-backup", "--to", "sqlite+aiosqlite:///y.db", code=1)
    unconfirmed = parley("restore", made["name"], "--in-place", code=2)

    assert "database.sqlite: 7 bytes, manifest says" in verify
    assert "file is not a database" in verify  # SQLite's own integrity check
    assert "ERR_BACKUP_CORRUPT" in restore and "damaged or incomplete" in restore
    assert not (tmp_path / "x.db").exists()
    assert "ERR_BACKUP_NOT_FOUND" in missing and "parley backup list" in missing
    assert "--yes" in unconfirmed


def test_an_anonymized_backup_is_listed_apart_and_restorable() -> None:
    parley("user", "add", "ann.smith")
    made = json.loads(parley("backup", "--anonymize", "--json"))

    assert made["anonymized"] is True and made["name"].startswith("parley-anon-")
    assert made["label"] == "staging"
    listed = json.loads(parley("backup", "list", "--json"))
    assert [b["anonymized"] for b in listed] == [True]
    assert "no verified backup" in parley("restore", "--test", code=1)  # staging dumps do not count


def test_migrate_down_status_check_and_up_say_whether_code_and_schema_agree() -> None:
    head = head_revision()
    parley("migrate")
    assert "Code and schema agree" in parley("migrate", "check")

    refused = parley("migrate", "down", "--to", "0004", code=2)
    down = parley("migrate", "down", "--to", "0004", "--yes")
    status = parley("migrate", "status")
    check = parley("migrate", "check", code=1)
    as_json = json.loads(parley("migrate", "check", "--json", code=1))
    up = parley("migrate", "up")

    assert "--yes" in refused
    assert "Backed up first: parley-" in down and f"{head} → 0004" in down
    assert "0004" in status and "← database" in status and "pending" in status
    assert f"migration(s) pending ({head})" in check and "parley migrate up" in check
    assert as_json["pending"] == [head] and as_json["agrees"] is False
    assert f"0004 → {head}" in up
    assert "Code and schema agree" in parley("migrate", "check")


def test_migrate_check_names_a_database_migrated_by_newer_code(tmp_path: Path) -> None:
    parley("migrate")
    with sqlite3.connect(tmp_path / "var" / "parley.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")

    check = parley("migrate", "check", code=1)

    assert "revision 9999, which this code does not know" in check


def test_alerts_test_reaches_the_receiver_and_a_refusal_exits_1_without_the_url() -> None:
    with webhook_receiver() as receiver:
        sent = parley("alerts", "test", "--url", f"{receiver.url}/hook/SECRET", "--note", "drill")
        receiver.status = 500
        refused = parley("alerts", "test", "--url", f"{receiver.url}/hook/SECRET", code=1)
        alertmanager = parley("alerts", "test", "--url", f"{receiver.url}/api/v2/alerts", code=1)

    (body, *_) = receiver.bodies
    assert "Sent ParleyTestAlert to the webhook (HTTP 200)" in sent
    assert body["version"] == "4" and body["status"] == "firing"
    assert body["alerts"][0]["labels"]["alertname"] == "ParleyTestAlert"
    assert body["alerts"][0]["annotations"]["description"] == "drill"
    assert "HTTP 500" in refused and "SECRET" not in refused
    assert isinstance(receiver.bodies[2], list)  # Alertmanager's API takes a list of alerts
    assert receiver.paths[2] == "/api/v2/alerts" and "HTTP 500" in alertmanager
