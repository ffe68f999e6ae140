"""`parley smoke` covers seed 002's SSO login redirect, call relay and reconnect, against a real
server with a real OpenID provider: PASS while the provider answers, FAIL once it is gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.oidc import OpenIdProvider, client, start_provider, stop_provider
from tests.support.servers import ServerProcess, free_port


def parley(workdir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "parley", *args],
        cwd=workdir,
        env={**os.environ, **env, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[ServerProcess, OpenIdProvider, dict[str, str]]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    provider = start_provider(tmp_path, [client("parley", "smoke-secret-value", url, "corp")])
    sso = [{"name": "corp", "issuer": provider.issuer, "client_id": "parley",
            "client_secret": "smoke-secret-value"}]  # fmt: skip
    env = {
        "PARLEY_LOG_JSON": "false",
        "PARLEY_DATABASE_URL": "",
        "PARLEY_DATA_DIR": str(tmp_path / "var"),
        "PARLEY_SSO_PROVIDERS": json.dumps(sso),
    }
    sender = parley(tmp_path, env, "user", "add", "smoke-a").stdout.split()[-1]
    receiver = parley(tmp_path, env, "user", "add", "smoke-b").stdout.split()[-1]
    server = ServerProcess(port=port, workdir=tmp_path, env=env).start()
    smoke_env = {**env, "PARLEY_SMOKE_TOKEN": sender, "PARLEY_SMOKE_PEER_TOKEN": receiver}
    yield server, provider, smoke_env
    server.stop()
    stop_provider(provider)


def test_smoke_covers_sso_calls_and_reconnect(
    deployment: tuple[ServerProcess, OpenIdProvider, dict[str, str]], tmp_path: Path
) -> None:
    server, provider, env = deployment

    passed = parley(tmp_path, env, "smoke", server.url, "--json")
    stop_provider(provider)
    failed = parley(tmp_path, env, "smoke", server.url, "--json")

    assert passed.returncode == 0, passed.stdout + passed.stderr
    checks = {c["name"]: c for c in json.loads(passed.stdout)["checks"]}
    assert checks["sso"]["result"] == "PASS"
    assert checks["sso"]["evidence"].startswith(f"corp → {provider.issuer}/auth")
    assert checks["calls"]["result"] == "PASS"
    assert (
        "callSignalRelayed=true, callRejectRelayed=true, callHangupRelayed=true"
        in (checks["calls"]["evidence"])
    )
    assert checks["reconnect"]["result"] == "PASS"
    assert checks["reconnect"]["evidence"].startswith("reconnectOk=true")
    assert failed.returncode == 1
    verdict = json.loads(failed.stdout)
    assert verdict["decision"] == "NO-GO"
    assert [c["name"] for c in verdict["checks"] if c["result"] == "FAIL"] == ["sso"]
