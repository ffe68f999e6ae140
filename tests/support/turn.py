"""A real TURN server for the call tests: Debian's coturn (`turnserver`) on loopback, with the
TURN REST API's shared secret (`use-auth-secret`), as a deployment would run it.

scripts/test.sh installs coturn; without it the tests skip locally and fail in CI (CI=true).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.servers import free_port

IN_CI = os.environ.get("CI", "").lower() == "true"
REALM = "parley.test"


@dataclass
class TurnServer:
    port: int
    secret: str
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_turn_server(workdir: Path, secret: str) -> TurnServer:
    binary = shutil.which("turnserver")
    if binary is None:
        message = "coturn's turnserver is not installed (apt-get install coturn)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    relay_low = random.randrange(40_000, 59_000)
    log_path = workdir / "turnserver.log"
    args = [
        binary,
        "-n",  # no configuration file: everything is on this command line
        "--listening-ip=127.0.0.1",
        f"--listening-port={port}",
        "--relay-ip=127.0.0.1",
        f"--min-port={relay_low}",
        f"--max-port={relay_low + 200}",
        "--use-auth-secret",
        f"--static-auth-secret={secret}",
        f"--realm={REALM}",
        # Both browsers (the peers) are on this machine.
        "--allow-loopback-peers",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--no-software-attribute",
        f"--userdb={workdir / 'turndb'}",
        f"--pidfile={workdir / 'turnserver.pid'}",
        f"--log-file={log_path}",
        "--simple-log",
    ]
    with (workdir / "turnserver.out").open("ab") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    server = TurnServer(port, secret, log_path, process)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"turnserver exited: {(workdir / 'turnserver.out').read_text()}")
        try:
            with socket.create_connection(server.address, timeout=0.5):
                return server
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("turnserver did not listen within 15 s")


def stop_turn_server(server: TurnServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=5)


@pytest.fixture(scope="session")
def turn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TurnServer]:
    server = start_turn_server(tmp_path_factory.mktemp("turn"), "turn-" + os.urandom(8).hex())
    yield server
    stop_turn_server(server)
