"""`parley branch ...` and the inbox's routing options, against the embedded database."""

from __future__ import annotations

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


def test_an_admin_adds_branches_and_routes_an_inbox_to_them() -> None:
    parley("user", "add", "alice")
    parley("user", "add", "bob")

    added = parley("branch", "add", "Support RU", "--operator", "alice", "--operator", "bob")
    parley("branch", "add", "Sales")
    inbox = parley(
        "inbox", "add", "Shop", "--domain", "shop.example.com", "--branch", "2",
        "--rule", '{"language": "ru", "branch_id": 1}', "--auto-assign",
    )  # fmt: skip
    branches = parley("branch", "list")
    inboxes = parley("inbox", "list")

    assert "Branch 1 Support RU" in added
    assert "Support RU" in branches and "alice, bob" in branches and "Sales" in branches
    assert "Inbox 1 Shop" in inbox
    row = next(line for line in inboxes.splitlines() if "Shop" in line)
    cells = [cell.strip() for cell in row.split("│")]
    # id, name, token, domains, operators, branch, rules, auto-assign, enabled
    assert cells[6:10] == ["2", "1", "yes", "yes"]


def test_branch_and_inbox_commands_refuse_unknown_names_and_branches() -> None:
    unknown_user = parley("branch", "add", "Ghosts", "--operator", "nobody", code=1)
    unknown_branch = parley("inbox", "add", "Shop", "--branch", "7", code=1)
    bad_rule = parley("inbox", "add", "Shop", "--rule", '{"path": "/ru", "branch_id": 1}', code=1)
    not_json = parley("inbox", "add", "Shop", "--rule", "ru", code=2)

    assert "ERR_VALIDATION" in unknown_user and "nobody" in unknown_user
    assert "ERR_UNKNOWN_BRANCH" in unknown_branch and "7" in unknown_branch
    assert "ERR_INVALID_VALUE" in bad_rule and "unknown keys path" in bad_rule
    assert "not JSON" in not_json
    assert "Ghosts" not in parley("branch", "list")


def test_prune_visits_says_how_many_it_deleted_and_refuses_zero_days() -> None:
    assert "Deleted 0 empty visit(s) idle for 30+ days" in parley("inbox", "prune-visits")
    parley("inbox", "prune-visits", "--idle-days", "0", code=2)
