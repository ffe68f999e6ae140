"""The servers under load: started as `python -m parley serve` subprocesses, or given by URL.

The bench watches them from outside, the way an operator would: resident memory from
`/proc/<pid>/status`, CPU time from `/proc/<pid>/stat`, counters from `/metrics`.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

StartMode = Literal["embedded", "postgres"]

# Counters read from every server's /metrics before and after a run (their sum over servers).
WATCHED_COUNTERS = (
    "parley_client_reported_total",
    "parley_read_rollback_detected_total",
    "parley_slow_consumer_disconnects_total",
    "parley_messages_stored_total",
    "parley_message_retries_total",
    # The group commit's batches: their count and the sends they stored (mean batch size).
    "parley_writer_batch_size_sum",
    "parley_writer_batch_size_count",
)
P0_REPORTED = ("ack_without_receipt_10s", "timeline_duplicate_detected", "read_rollback_detected")


@dataclass(frozen=True)
class BenchUser:
    id: int
    name: str
    token: str


def raise_fd_limit() -> int:
    """Lift this process's open-file limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerSet:
    """The servers of one run: their URLs and, when known, their process ids."""

    urls: list[str]
    pids: list[int] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    mode: str = "url"
    workdir: Path | None = None
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _own_workdir: bool = False

    def rss_mb(self) -> list[float]:
        """Resident memory of each server process, in MiB (NaN when it cannot be read)."""
        return [_vm_rss_kb(pid) / 1024 for pid in self.pids]

    def cpu_seconds(self) -> float:
        return sum(_cpu_seconds(pid) for pid in self.pids)

    def alive(self) -> bool:
        return all(p.poll() is None for p in self._processes)

    async def scrape(self) -> dict[str, float]:
        """Watched counters summed over all servers, keyed `name` or `name{counter}`."""
        totals: dict[str, float] = {}
        async with httpx.AsyncClient(timeout=10) as client:
            for url in self.urls:
                response = await client.get(f"{url}/metrics")
                response.raise_for_status()
                for key, value in _parse_metrics(response.text).items():
                    totals[key] = totals.get(key, 0.0) + value
        return totals

    def stop(self) -> None:
        """Stop the servers this run started (SIGTERM, then SIGKILL after 15 s)."""
        for process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, chars: int = 2000) -> str:
        if self.workdir is None:
            return ""
        return "\n".join(
            path.read_text(errors="replace")[-chars:]
            for path in sorted(self.workdir.glob("server-*.log"))
        )


def bench_env(workdir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Server settings for a load test: quiet logs, per-address limits out of the way."""
    env = dict(base if base is not None else os.environ)
    env.setdefault("PARLEY_DATA_DIR", str(workdir / "data"))
    env.setdefault("PARLEY_LOG_LEVEL", "WARNING")
    # Every bench client comes from 127.0.0.1: the per-address cap would refuse most of them.
    env.setdefault("PARLEY_STREAM_MAX_PER_IP", "1000000")
    env.setdefault("PARLEY_RESUME_RATE", "100000/minute")
    # The soak's widget visitors also all come from 127.0.0.1.
    for name, value in (
        ("PARLEY_WIDGET_BOOTSTRAP_RATE_PER_IP", "1000000/minute"),
        ("PARLEY_WIDGET_BOOTSTRAP_RATE_PER_TOKEN", "1000000/minute"),
        ("PARLEY_WIDGET_SEND_RATE_PER_IP", "1000000/minute"),
        ("PARLEY_WIDGET_POLL_MIN_INTERVAL_SECONDS", "0"),
        ("PARLEY_WIDGET_CHALLENGE_AFTER_PER_IP", ""),
    ):
        env.setdefault(name, value)
    return env


def start_servers(
    mode: StartMode, count: int, *, workdir: Path | None = None, log: bool = True
) -> ServerSet:
    """Start `count` servers (embedded: exactly one) and wait until each is ready."""
    own = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="parley-bench-"))
    base = dict(os.environ)
    if mode == "embedded":
        if count != 1:
            raise ValueError("the embedded configuration (SQLite + in-process bus) is one process")
        for name in ("PARLEY_DATABASE_URL", "PARLEY_REDIS_URL"):
            base.pop(name, None)
    else:
        if not base.get("PARLEY_DATABASE_URL", "").startswith("postgresql"):
            raise ValueError("--start postgres needs PARLEY_DATABASE_URL=postgresql+asyncpg://...")
        if count > 1 and not base.get("PARLEY_REDIS_URL"):
            raise ValueError("several server processes need PARLEY_REDIS_URL (the shared bus)")
    env = bench_env(workdir, base)
    servers = ServerSet(urls=[], env=env, mode=mode, workdir=workdir, _own_workdir=own)
    try:
        if mode == "postgres":
            subprocess.run(
                [sys.executable, "-m", "parley", "migrate"],
                env=env,
                check=True,
                capture_output=True,
            )
        for _ in range(count):
            port = free_port()
            with (workdir / f"server-{port}.log").open("ab") as out:
                process = subprocess.Popen(  # noqa: S603
                    [sys.executable, "-m", "parley", "serve", "--port", str(port)],
                    cwd=workdir,
                    env=env,
                    stdout=out if log else subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                )
            servers._processes.append(process)
            servers.pids.append(process.pid)
            servers.urls.append(f"http://127.0.0.1:{port}")
        for url, process in zip(servers.urls, servers._processes, strict=True):
            _wait_ready(url, process, servers)
    except BaseException:
        servers.stop()
        raise
    return servers


def _wait_ready(url: str, process: subprocess.Popen[bytes], servers: ServerSet) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited early:\n{servers.log_tail()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server at {url} was not ready in 60 s:\n{servers.log_tail()}")


def provision_users(prefix: str, count: int, env: dict[str, str]) -> list[BenchUser]:
    """Create `count` users with tokens in one process (`parley user add-many`)."""
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "parley", "user", "add-many", prefix, str(count), "--json"],
        env=env,
        cwd=env.get("PARLEY_DATA_DIR", "."),
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"creating users failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return load_users(done.stdout)


def load_users(text: str) -> list[BenchUser]:
    """Users from `parley user add-many --json` output."""
    return [BenchUser(u["id"], u["name"], u["token"]) for u in json.loads(text)["users"]]


def _vm_rss_kb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _parse_metrics(text: str) -> dict[str, float]:
    """The watched counters from Prometheus text; `parley_client_reported_total` by counter."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition("{")
        if not rest:
            name, _, value = line.partition(" ")
            labels = ""
        else:
            labels, _, value = rest.rpartition("} ")
        if name not in WATCHED_COUNTERS:
            continue
        key = name
        if name == "parley_client_reported_total":
            counter = _label(labels, "counter")
            key = f"{name}{{{counter}}}"
        found[key] = found.get(key, 0.0) + float(value.split()[0])
    return found


def _label(labels: str, wanted: str) -> str:
    for part in labels.split(","):
        key, _, value = part.partition("=")
        if key.strip() == wanted:
            return value.strip().strip('"')
    return ""
