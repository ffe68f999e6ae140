"""`parley moderation ...`, `parley disputes ...` and `parley user role`, against the embedded
database: what each prints, what it refuses, and the audit entry of each change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parley.cli import app
from tests.support.cli import wide_consoles

runner = CliRunner()


@pytest.fixture(autouse=True)
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PARLEY_DATABASE_URL", "")
    monkeypatch.setenv("PARLEY_LOG_JSON", "false")
    monkeypatch.setenv("COLUMNS", "220")
    wide_consoles(monkeypatch)


def parley(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def audit(action: str) -> list[dict[str, object]]:
    lines = parley("audit", "search", "--action", action, "--json").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_roles_rules_and_sanctions_from_a_terminal_are_audited() -> None:
    parley("user", "add", "zoe")
    parley("user", "add", "yuri")

    assert "zoe: member → moderator" in parley(
        "user", "role", "zoe", "moderator", "--reason", "hired"
    )
    added = parley(
        "moderation",
        "rule-add",
        "scam",
        "--kind",
        "words",
        "--verdict",
        "reject",
        "--config",
        '{"words": ["free money"]}',
    )
    assert "Rule 1 scam (words, reject)" in added
    (rule,) = json.loads(parley("moderation", "rules", "--json"))
    assert rule["config"] == {"words": ["free money"]} and rule["updated_by"].startswith("cli:")
    muted = parley("moderation", "sanction", "yuri", "mute", "--for", "2h", "--reason", "calm")
    assert "mute yuri, everywhere" in muted
    table = parley("moderation", "sanctions")
    assert "yuri" in table and "mute" in table and "calm" in table
    parley("moderation", "lift", "1", "--reason", "appeal")
    assert "yuri" not in parley("moderation", "sanctions")
    assert "yuri" in parley("moderation", "sanctions", "--all")

    (role,) = audit("user.role")
    assert role["before"] == {"role": "member"} and role["after"]["role"] == "moderator"
    assert role["reason"] == "hired" and str(role["actor"]).startswith("cli:")
    assert [e["action"] for e in audit("moderation.")] == [
        "moderation.lift",
        "moderation.mute",
        "moderation.rule_create",
    ]


def test_bad_input_is_refused_with_what_to_do() -> None:
    parley("user", "add", "staffer", "--role", "moderator")
    assert "--config is not JSON" in parley(
        "moderation", "rule-add", "x", "--kind", "words", "--config", "{nope", code=2
    )
    assert "ERR_VALIDATION" in parley(
        "moderation", "rule-add", "x", "--kind", "regex", "--config", '{"patterns": ["("]}', code=1
    )
    assert "no user named 'ghost'" in parley("moderation", "sanction", "ghost", "ban", code=1)
    assert "staff cannot be muted" in parley("moderation", "sanction", "staffer", "ban", code=1)
    assert "a duration is" in parley(
        "moderation", "sanction", "staffer", "warn", "--for", "1y", code=2
    )
    assert "no dispute 9" in parley("disputes", "show", "9", code=1)
    assert "0 dispute(s)" in parley("disputes", "list", "--overdue")
    assert "0 item(s)" in parley("moderation", "queue")
