"""Private Redis and PostgreSQL servers for fault tests: started on free loopback ports in a
temporary directory, paused (SIGSTOP), resumed, restarted and stopped by the test that owns them
— never the shared servers other tests (and other people) are using.

Every start and stop has a deadline; `close()` always resumes a paused server before stopping it.
A missing tool skips the test with the reason locally and fails it in CI (CI=true).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.servers import free_port

IN_CI = os.environ.get("CI", "").lower() == "true"
START_TIMEOUT = 30.0


def unavailable(reason: str) -> None:
    """Skip the test locally; in CI a fault test that cannot run is a failure."""
    if IN_CI:
        pytest.fail(f"fault test cannot run in CI: {reason}")
    pytest.skip(reason)


def _wait(probe: object, what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not probe():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants, parents before children (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        tree.append(current)
        todo += children.get(current, [])
    return tree


def signal_tree(pid: int, sig: int) -> None:
    for member in process_tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, sig)


@dataclass
class PausableProcess:
    """A server and every process it forked, which we may SIGSTOP and SIGCONT as a whole
    (PostgreSQL's backends put themselves in process groups of their own)."""

    process: subprocess.Popen[bytes] | None = None
    paused: bool = False

    def pause(self) -> None:
        assert self.process is not None
        signal_tree(self.process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.process is not None and self.paused:
            signal_tree(self.process.pid, signal.SIGCONT)
        self.paused = False

    @contextlib.contextmanager
    def paused_for_a_while(self) -> Iterator[None]:
        """Paused inside the block; resumed on the way out, whatever happened."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def _terminate(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.resume()
        tree = process_tree(self.process.pid)
        server = tree[1] if self.via_runuser and len(tree) > 1 else tree[0]
        with contextlib.suppress(ProcessLookupError):
            os.kill(server, sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            signal_tree(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    @property
    def via_runuser(self) -> bool:
        return False


@dataclass
class PrivateRedis(PausableProcess):
    """`redis-server` without persistence on a free port."""

    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed (apt-get install redis-server)")
        self.process = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait(self.answers, f"redis-server on port {self.port} to answer")
        return self

    def answers(self) -> bool:
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def stop(self) -> None:
        self._terminate()

    def restart(self) -> None:
        self.stop()
        self.start()


def _postgres_bindir() -> Path | None:
    found = shutil.which("pg_config")
    if found:
        bindir = subprocess.run(
            [found, "--bindir"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
        if bindir and (Path(bindir) / "initdb").exists():
            return Path(bindir)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


@dataclass
class PrivatePostgres(PausableProcess):
    """A throwaway PostgreSQL cluster (initdb in a temp dir, trust auth, fsync off).

    Run as the `postgres` OS user when we are root (PostgreSQL refuses to run as root).
    """

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="parley-pg-")))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def via_runuser(self) -> bool:
        return os.geteuid() == 0

    def _as_owner(self, *command: str) -> list[str]:
        if os.geteuid() != 0:
            return list(command)
        return ["runuser", "-u", "postgres", "--", *command]

    def start(self) -> PrivatePostgres:
        bindir = _postgres_bindir()
        if bindir is None:
            unavailable("PostgreSQL server binaries (initdb, postgres) are not installed")
        assert bindir is not None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                unavailable("running PostgreSQL as root needs the `postgres` OS user")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        if not self.data.exists():
            subprocess.run(
                self._as_owner(
                    str(bindir / "initdb"),
                    *("-D", str(self.data), "-U", "postgres", "-A", "trust"),
                    *("--no-sync", "--encoding", "UTF8", "--locale", "C"),
                ),
                capture_output=True,
                timeout=120,
                check=True,
            )
        log = self.root / "postgres.log"
        with contextlib.suppress(FileNotFoundError):
            log.unlink()
        with log.open("ab") as stderr:
            self.process = subprocess.Popen(
                self._as_owner(
                    str(bindir / "postgres"),
                    *("-D", str(self.data), "-p", str(self.port), "-k", str(self.root)),
                    *("-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"),
                    *("-c", "full_page_writes=off", "-c", "max_connections=200"),
                    *("-c", "log_destination=stderr", "-c", "logging_collector=off"),
                ),
                stdout=subprocess.DEVNULL,
                stderr=stderr,  # the child keeps its own copy of the descriptor
                start_new_session=True,
            )
        _wait(self.answers, f"PostgreSQL on port {self.port} to accept connections", 60)
        return self

    def answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited:\n{self.log_tail()}")
        done = subprocess.run(
            ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        return done.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        done = subprocess.run(
            [
                *("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"),
                *("-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", sql),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr}")
        return done.stdout.strip()

    def log_tail(self, chars: int = 3000) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self, mode: int = signal.SIGINT) -> None:
        """Stop the cluster (SIGINT: fast shutdown), keeping its data for a restart."""
        self._terminate(mode, timeout=60)

    def restart(self) -> None:
        self.stop()
        self.start()

    def ensure_running(self) -> None:
        """Up and answering, whatever a test did to it (paused, stopped, mid-restart)."""
        self.resume()
        if self.process is None or self.process.poll() is not None:
            self.start()
        else:
            _wait(self.answers, f"PostgreSQL on port {self.port} to accept connections", 60)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
