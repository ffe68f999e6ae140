"""`parley calls ...`, `parley sso ...` and `parley user add --email`, on the embedded database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parley.cli import app
from tests.support.cli import wide_consoles
from tests.support.oidc import client, start_provider, stop_provider

runner = CliRunner()


@pytest.fixture(autouse=True)
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PARLEY_DATABASE_URL", "")
    monkeypatch.setenv("PARLEY_LOG_JSON", "false")
    wide_consoles(monkeypatch)


def parley(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_calls_ice_prints_the_credentials_a_user_gets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_CALLS_TURN_URLS", '["turn:turn.example.com:3478"]')
    monkeypatch.setenv("PARLEY_CALLS_TURN_SECRET", "cli-secret")

    config = json.loads(parley("calls", "ice", "7"))

    (turn,) = config["ice_servers"]
    assert turn["username"].endswith(":7")
    digest = hmac.new(b"cli-secret", turn["username"].encode(), hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(digest).decode()


def test_calls_list_is_a_table_or_json() -> None:
    assert "caller → callee" in parley("calls", "list")
    assert json.loads(parley("calls", "list", "--live", "--json")) == {"calls": []}


def test_user_add_takes_an_email_and_refuses_a_taken_one() -> None:
    parley("user", "add", "ana", "--email", "Ana@Example.com")

    taken = parley("user", "add", "ana2", "--email", "ana@example.com", code=1)
    bad = parley("user", "add", "ana3", "--email", "not-an-address", code=1)

    assert "ERR_NAME_TAKEN" in taken and "e-mail" in taken
    assert "ERR_VALIDATION" in bad


def test_sso_check_reads_each_providers_discovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = start_provider(tmp_path, [client("parley", "s", "http://chat.example", "corp")])
    try:
        monkeypatch.setenv(
            "PARLEY_SSO_PROVIDERS",
            json.dumps(
                [
                    {"name": "corp", "issuer": provider.issuer, "client_id": "parley"},
                    {"name": "gone", "issuer": "http://127.0.0.1:9", "client_id": "x"},
                ]
            ),
        )
        monkeypatch.setenv("PARLEY_PUBLIC_URL", "https://chat.example.com")

        listed = parley("sso", "providers")
        checked = parley("sso", "check", code=1)
        one = parley("sso", "check", "corp")
    finally:
        stop_provider(provider)

    assert "https://chat.example.com/v1/auth/sso/corp/callback" in listed
    assert f"{provider.issuer}/auth (with logout endpoint)" in checked
    assert "gone" in checked and "cannot be reached" in checked
    assert "OK" in one and "gone" not in one
