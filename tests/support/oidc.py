"""A real OpenID provider for the SSO tests (tests/support/oidc/provider.mjs: panva's certified
`oidc-provider` from npm, a package.json devDependency), started on a free loopback port.

`npm ci` (scripts/test.sh) installs it; without Node or the package the tests skip locally and
fail in CI (CI=true).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).parent / "oidc" / "provider.mjs"
IN_CI = os.environ.get("CI", "").lower() == "true"

# The people the provider knows: what it asserts about each (ID token claims).
ACCOUNTS: dict[str, dict[str, Any]] = {
    "alice": {
        "sub": "sub-alice",
        "email": "alice@corp.test",
        "email_verified": True,
        "name": "Alice Corp",
        "preferred_username": "alice",
        "groups": ["staff"],
    },
    "root": {
        "sub": "sub-root",
        "email": "root@corp.test",
        "email_verified": True,
        "name": "Root",
        "preferred_username": "root",
        "groups": ["staff", "chat-admins"],
    },
    "mallory": {
        # Claims an e-mail she has not verified: it must not link her to its owner.
        "sub": "sub-mallory",
        "email": "bob@corp.test",
        "email_verified": False,
        "name": "Mallory",
        "preferred_username": "mallory",
        "groups": [],
    },
}


@dataclass
class OpenIdProvider:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def client(client_id: str, secret: str, parley_url: str, provider_name: str) -> dict[str, Any]:
    """Parley registered at the provider as it would be by an administrator."""
    return {
        "client_id": client_id,
        "client_secret": secret,
        "redirect_uris": [f"{parley_url}/v1/auth/sso/{provider_name}/callback"],
        "post_logout_redirect_uris": [f"{parley_url}/"],
    }


def start_provider(
    workdir: Path, clients: list[dict[str, Any]], *, clock_behind_seconds: int = 0
) -> OpenIdProvider:
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "oidc-provider").is_dir():
        message = "Node.js and `npm ci` (oidc-provider) are needed for the SSO tests"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    log_path = workdir / f"oidc-{port}.log"
    env = {
        **os.environ,
        "OP_PORT": str(port),
        "OP_CLIENTS": json.dumps(clients),
        "OP_ACCOUNTS": json.dumps(ACCOUNTS),
        "OP_TOKEN_CLOCK_BEHIND_SECONDS": str(clock_behind_seconds),
        "NODE_PATH": str(ROOT / "node_modules"),
    }
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [node, str(SCRIPT)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    provider = OpenIdProvider(port, process, log_path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the OpenID provider exited:\n{provider.log()[-3000:]}")
        try:
            discovery = f"{provider.issuer}/.well-known/openid-configuration"
            if httpx.get(discovery, timeout=1).status_code == 200:
                return provider
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"the OpenID provider did not start:\n{provider.log()[-3000:]}")


def stop_provider(provider: OpenIdProvider) -> None:
    provider.process.terminate()
    try:
        provider.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        provider.process.kill()
        provider.process.wait(timeout=5)
