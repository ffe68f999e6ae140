"""`parley deploy` on a single host, with a sample app in a git repository the test makes: v1
deploys and passes smoke; v2 breaks the deployment (its migration leaves the API refusing
users), smoke fails, and `--auto-rollback` returns to v1 *and* to the pre-deploy database —
all in real processes, recorded in the release log and told to the team's webhook."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from parley.cli import app
from parley.core.models import Role
from parley.settings import Settings
from tests.support.accounts import create_users
from tests.support.servers import free_port
from tests.support.webhook import webhook_receiver

RESTART = '''
"""Restart the sample service: stop the running one (pidfile), start `parley serve` detached."""
import os, signal, subprocess, sys, time
from pathlib import Path

pidfile = Path(os.environ["SAMPLE_PIDFILE"])
if pidfile.exists():
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            os.kill(pid, 0)
            time.sleep(0.05)
    except ProcessLookupError:
        pass
    pidfile.unlink()
if sys.argv[1:] != ["stop"]:
    with open(os.environ["SAMPLE_LOG"], "ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "parley", "serve", "--port", os.environ["SAMPLE_PORT"]],
            stdout=log, stderr=log, start_new_session=True,
        )
    pidfile.write_text(str(server.pid))
'''

MIGRATE_V1 = """
import subprocess, sys
subprocess.run([sys.executable, "-m", "parley", "migrate", "up"], check=True)
"""

# A release whose migration leaves the deployment refusing its users: only restoring the
# database (not just the code) brings it back.
MIGRATE_V2 = (
    MIGRATE_V1
    + """
subprocess.run(
    [sys.executable, "-m", "parley", "maintenance", "on", "--message", "v2 broke it"], check=True
)
"""
)


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=30
    )
    return result.stdout.strip()


def _commit(repo: Path, files: dict[str, str], tag: str) -> str:
    for name, content in files.items():
        (repo / name).write_text(textwrap.dedent(content))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", f"sample app {tag}")
    _git(repo, "tag", tag)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def sample(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A git repo with v1 and v2 of a sample app, a data dir with smoke accounts, and the
    environment `parley deploy` runs with; the service it starts is stopped afterwards."""
    repo = tmp_path / "app"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "ci@parley.test")
    _git(repo, "config", "user.name", "CI")
    v1 = _commit(repo, {"VERSION": "v1\n", "restart.py": RESTART, "migrate.py": MIGRATE_V1}, "v1")
    v2 = _commit(repo, {"VERSION": "v2\n", "migrate.py": MIGRATE_V2}, "v2")
    _git(repo, "checkout", "-q", "--detach", "v1")
    data = tmp_path / "var"
    tokens = create_users(Settings(data_dir=data), {"smoke-a": Role.MEMBER, "smoke-b": Role.MEMBER})
    port = free_port()
    pidfile = tmp_path / "service.pid"
    env = {
        "PARLEY_DATA_DIR": str(data),
        "PARLEY_DATABASE_URL": "",
        "PARLEY_LOG_JSON": "false",
        "PARLEY_MAINTENANCE_POLL_SECONDS": "0.2",
        "PARLEY_DEPLOY_REPO": str(repo),
        "PARLEY_DEPLOY_URL": f"http://127.0.0.1:{port}",
        "PARLEY_DEPLOY_INSTALL_COMMAND": "{python} -c pass",
        "PARLEY_DEPLOY_MIGRATE_COMMAND": "{python} migrate.py",
        "PARLEY_DEPLOY_RESTART_COMMAND": "{python} restart.py",
        "PARLEY_DEPLOY_STOP_COMMAND": "{python} restart.py stop",
        "PARLEY_DEPLOY_READY_TIMEOUT_SECONDS": "30",
        "PARLEY_SMOKE_TOKEN": tokens["smoke-a"],
        "PARLEY_SMOKE_PEER_TOKEN": tokens["smoke-b"],
        "SAMPLE_PIDFILE": str(pidfile),
        "SAMPLE_PORT": str(port),
        "SAMPLE_LOG": str(tmp_path / "service.log"),
        "COLUMNS": "200",
    }
    yield {"repo": repo, "v1": v1, "v2": v2, "env": env, "port": port, "data": data}
    if pidfile.exists():  # the service the deploy started
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pidfile.read_text()), signal.SIGTERM)


def _deploy(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`parley deploy ...` as an operator runs it: its own process, in the repo."""
    return subprocess.run(
        [sys.executable, "-m", "parley", *args],
        cwd=env["PARLEY_DEPLOY_REPO"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _release_log(repo: Path) -> list[dict[str, str]]:
    with (repo / ".deploy" / "release-log.tsv").open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_a_failing_release_rolls_back_to_the_previous_ref_and_database(
    sample: dict[str, Any],
) -> None:
    repo, env = sample["repo"], sample["env"]
    with webhook_receiver() as team:
        env["PARLEY_DEPLOY_WEBHOOK_URL"] = f"{team.url}/hooks/T0KEN-in-url"
        first = _deploy(env, "deploy", "--ref", "v1", "--actor", "ana")
        second = _deploy(env, "deploy", "--ref", "v2", "--auto-rollback", "--actor", "ana")

    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 1, second.stdout + second.stderr
    assert "Rolling back to v1" in second.stdout
    assert "Rolled back to v1: smoke PASS" in second.stdout
    assert _git(repo, "rev-parse", "HEAD") == sample["v1"]
    url = env["PARLEY_DEPLOY_URL"]
    assert httpx.get(f"{url}/readyz").status_code == 200
    assert httpx.get(f"{url}/v1/maintenance").json()["active"] is False  # the database, too

    deployed, failed, rolled_back = _release_log(repo)
    assert deployed["action"] == "deploy" and deployed["ref"] == "v1"
    assert deployed["smoke"] == "PASS" and deployed["outcome"] == "ok"
    assert deployed["actor"] == "ana" and deployed["backup"].endswith("-pre-deploy")
    assert failed["action"] == "deploy" and failed["ref"] == "v2"
    assert failed["sha"] == sample["v2"][:12] and failed["previous_ref"] == "v1"
    assert failed["smoke"] == "FAIL" and failed["outcome"] == "rolled-back"
    assert rolled_back["action"] == "rollback" and rolled_back["ref"] == "v1"
    assert rolled_back["sha"] == sample["v1"][:12] and rolled_back["previous_ref"] == "v2"
    assert rolled_back["smoke"] == "PASS" and rolled_back["outcome"] == "ok"
    assert rolled_back["backup"] == failed["backup"]
    assert rolled_back["note"] == "automatic rollback of v2: smoke failed"

    backups = sorted(p.name for p in (sample["data"] / "backups").iterdir() if p.is_dir())
    assert any(name.endswith("-before-restore") for name in backups)  # v2's state is kept
    assert [body["outcome"] for body in team.bodies] == ["ok", "rolled-back", "ok"]
    assert "rollback v1" in team.bodies[2]["text"]
    assert "T0KEN" not in first.stdout + second.stdout + second.stderr
    log = json.loads(_deploy(env, "deploy", "log", "--json").stdout)
    assert [(row["action"], row["ref"], row["outcome"]) for row in log] == [
        ("deploy", "v1", "ok"),
        ("deploy", "v2", "rolled-back"),
        ("rollback", "v1", "ok"),
    ]
    audit = _deploy(env, "audit", "search", "--action", "deploy.").stdout
    assert "deploy.rollback" in audit and "deploy.release" in audit


runner = CliRunner()


def test_deploy_refuses_local_changes_and_unknown_refs_before_touching_anything(
    sample: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = sample["repo"]
    monkeypatch.chdir(repo)
    for name, value in sample["env"].items():
        monkeypatch.setenv(name, value)

    unknown = runner.invoke(app, ["deploy", "--ref", "v9"])
    (repo / "VERSION").write_text("edited on the server\n")
    dirty = runner.invoke(app, ["deploy", "--ref", "v2"])
    no_log = runner.invoke(app, ["rollback"])

    assert unknown.exit_code == 1 and "ERR_DEPLOY_FAILED" in unknown.output
    assert "v9" in unknown.output
    assert dirty.exit_code == 1 and "local changes" in dirty.output
    assert no_log.exit_code == 1 and "no deploy in the release log" in no_log.output
    assert _git(repo, "rev-parse", "HEAD") == sample["v1"]
    assert not (repo / ".deploy" / "release-log.tsv").exists()
