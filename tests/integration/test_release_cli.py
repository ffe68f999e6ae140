"""`parley release ...` against the embedded database: the walk from off to full, the kill,
the log, the export, and flags — as an operator reads them."""

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
    for name, value in {
        "PARLEY_DATA_DIR": str(tmp_path / "var"),
        "PARLEY_DATABASE_URL": "",
        "PARLEY_LOG_JSON": "false",
        "PARLEY_RELEASE_DWELL_CANARY_1_SECONDS": "0",
        "PARLEY_RELEASE_DWELL_CANARY_10_SECONDS": "0",
        "PARLEY_RELEASE_DWELL_CANARY_50_SECONDS": "0",
        "PARLEY_RELEASE_MIN_MESSAGES": "0",
        "PARLEY_RELEASE_MIN_SESSIONS": "0",
        "COLUMNS": "220",
    }.items():
        monkeypatch.setenv(name, value)
    wide_consoles(monkeypatch)


def parley(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_an_operator_walks_the_release_to_full_and_kills_it(tmp_path: Path) -> None:
    assert "off" in parley("release", "status")

    for stage in ("canary_1", "canary_10", "canary_50", "full"):
        out = parley("release", "promote", "--owner", "ana", "--actor", "ops")
        assert "Decision was PROCEED" in out and stage in out
    gates = parley("release", "gates")
    killed = parley("release", "kill", "--reason", "support tickets spiking", "--actor", "ops")
    refused = parley("release", "promote", "--actor", "ops", code=1)
    log = parley("release", "history", "2")
    parley("release", "export", "--out", str(tmp_path / "release.json"))

    # At full the rollout is not done until the observation window has passed clean.
    assert "decision HOLD" in gates and "gate_p0_ok" in gates
    assert "observation waiting: observing full: 0m" in gates and "of 24h00m" in gates
    assert "timeline_duplicate_detected" in gates
    assert "ON" in killed and "support tickets spiking" in killed and "canary_1" in killed
    assert "ERR_GATES_NOT_PASSED" in refused and "kill_switch" in refused
    assert "canary_50 → full" not in log  # only the newest two
    assert "full → canary_1" in log and "kill" in log and "support tickets spiking" in log
    assert "promote refused" in log and "canary_1 → canary_10" in log  # a decision too
    exported = json.loads((tmp_path / "release.json").read_text())
    assert [e["to_stage"] for e in reversed(exported["history"])] == [
        "canary_1",
        "canary_10",
        "canary_50",
        "full",
        "canary_1",
        "canary_10",  # asked for and refused: the stage stayed canary_1
    ]
    assert exported["history"][0]["refused"] is True
    assert exported["history"][-1]["owner"] == "ana"
    assert exported["state"]["killed"] is True


def test_gates_as_json_carry_the_decision_and_every_check() -> None:
    parley("release", "promote")

    gates = json.loads(parley("release", "gates", "--json"))

    assert gates["stage"] == "canary_1"
    assert gates["rollout_decision"] == "PROCEED"
    assert {c["gate"] for c in gates["checks"]} == {"p0", "p1", "rollout"}


def test_illegal_moves_are_refused_with_their_reason() -> None:
    out = parley("release", "kill", code=1)

    assert "ERR_ILLEGAL_TRANSITION" in out and "off" in out


def test_flags_are_listed_and_changed_from_the_cli() -> None:
    parley("release", "flag", "chat_dark_launch", "--on", "--actor", "ops")
    parley("release", "flag", "chat_notifications_beta", "--percent", "10", "--by", "contract")

    listed = parley("release", "flags")

    row = next(line for line in listed.splitlines() if "chat_dark_launch" in line)
    assert " on " in row and "by ops" in row
    beta = next(line for line in listed.splitlines() if "chat_notifications_beta" in line)
    assert "10 %" in beta and "contract" in beta
    refused = parley("release", "flag", "chat_full_release", "--percent", "100", code=1)
    assert "rollout" in refused
