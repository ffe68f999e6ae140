"""`parley deploy --ref REF` and `parley rollback` on a single host (deploy/systemd).

A deploy, each step recorded with its evidence:

  1. back up the database (`parley backup --label pre-deploy`) — the rollback target;
  2. optionally switch maintenance mode on (seed 003, step 1);
  3. check out REF, install it, apply its migrations, restart the service;
  4. wait for /readyz, run the smoke test (`parley smoke URL`);
  5. switch maintenance off again (only when smoke passed);
  6. append a row to `<repo>/.deploy/release-log.tsv` and POST a summary to the team's webhook.

When a step from 3 on fails and `--auto-rollback` was given, the rollback runs at once: stop the
service, check out the previous ref, install it, restore the pre-deploy backup in place (what
the failed release wrote is kept in a `before-restore` backup), restart, wait, smoke — and logs
its own row. `parley rollback` runs the same steps by hand (seed 002 §5.3, seed 003 §4).

Every step after the checkout runs the checked-out code as a separate process (`{python} -m
parley ...`): this process never imports code that changed under it. Commands are templates
(PARLEY_DEPLOY_*_COMMAND) split like a shell would but run without one.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from parley.core.errors import ErrorCode, ParleyError
from parley.settings import Settings

LOG_COLUMNS = (
    "time",
    "action",
    "ref",
    "sha",
    "previous_ref",
    "previous_sha",
    "actor",
    "smoke",
    "backup",
    "outcome",
    "note",
)
STEP_TIMEOUT_SECONDS = 900
_TAIL = 15


def describe_http_error(exc: httpx.HTTPError) -> str:
    """What went wrong with a webhook call, without its URL (which may hold a token)."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__


class DeployError(ParleyError):
    status = 409
    default_code = ErrorCode.DEPLOY_FAILED


@dataclass
class Step:
    name: str
    ok: bool
    detail: str
    seconds: float
    stdout: str = field(default="", repr=False)  # what the command printed (not logged)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "seconds": round(self.seconds, 2),
        }


@dataclass
class Outcome:
    """One deploy or rollback: what ran, and how it ended."""

    action: str  # deploy | rollback
    ref: str
    sha: str
    previous_ref: str
    previous_sha: str
    actor: str
    steps: list[Step] = field(default_factory=list)
    smoke: str = "SKIPPED"  # PASS | FAIL | SKIPPED
    backup: str = ""
    outcome: str = "failed"  # ok | failed | rolled-back | aborted
    note: str = ""
    rollback: Outcome | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def log_row(self) -> dict[str, str]:
        return {
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "action": self.action,
            "ref": self.ref,
            "sha": self.sha[:12],
            "previous_ref": self.previous_ref,
            "previous_sha": self.previous_sha[:12],
            "actor": self.actor,
            "smoke": self.smoke,
            "backup": self.backup,
            "outcome": self.outcome,
            "note": self.note.replace("\t", " ").replace("\n", " ")[:300],
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.log_row(),
            "sha": self.sha,
            "previous_sha": self.previous_sha,
            "steps": [step.to_json() for step in self.steps],
            "rollback": self.rollback.to_json() if self.rollback else None,
        }


@dataclass
class Commands:
    install: str
    migrate: str
    restart: str
    stop: str
    smoke: str

    @classmethod
    def of(cls, settings: Settings) -> Commands:
        return cls(
            install=settings.deploy_install_command,
            migrate=settings.deploy_migrate_command,
            restart=settings.deploy_restart_command,
            stop=settings.deploy_stop_command,
            smoke=settings.deploy_smoke_command,
        )


@dataclass
class Plan:
    repo: Path
    url: str
    actor: str
    commands: Commands
    ready_timeout: float = 60.0
    webhook_url: str = ""
    maintenance: bool = False
    backup: bool = True
    fetch: bool = True

    @classmethod
    def of(cls, settings: Settings, actor: str, **overrides: Any) -> Plan:
        plan = cls(
            repo=settings.deploy_repo,
            url=settings.deploy_url.rstrip("/"),
            actor=actor,
            commands=Commands.of(settings),
            ready_timeout=settings.deploy_ready_timeout_seconds,
            webhook_url=settings.deploy_webhook_url,
        )
        for name, value in overrides.items():
            if value is not None:
                setattr(plan, name, value)
        plan.repo = plan.repo.resolve()
        return plan

    @property
    def state_dir(self) -> Path:
        return self.repo / ".deploy"

    @property
    def release_log(self) -> Path:
        return self.state_dir / "release-log.tsv"

    @property
    def python(self) -> str:
        venv = self.repo / ".venv" / "bin" / "python"
        return str(venv) if venv.exists() else sys.executable


def read_release_log(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def append_release_log(path: Path, outcome: Outcome) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS, delimiter="\t")
        if new:
            writer.writeheader()
        writer.writerow(outcome.log_row())


class Deployer:
    """Runs the steps of a plan, saying each one as it goes (`say`), and logs the outcome."""

    def __init__(self, plan: Plan, say: Callable[[str], None] = lambda _line: None) -> None:
        self.plan = plan
        self.say = say

    # -- plumbing -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.plan.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.plan.state_dir / "lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DeployError(
                    f"another deploy or rollback is running in {self.plan.repo}"
                ) from None
            yield

    def _git(self, *args: str) -> str:
        result = subprocess.run(  # noqa: S603 - git with our own arguments
            ["git", *args],  # noqa: S607 - the operator's git, from PATH
            cwd=self.plan.repo,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise DeployError(f"git {' '.join(args)}: {result.stderr.strip() or result.stdout}")
        return result.stdout.strip()

    def _command(self, template: str) -> list[str]:
        return shlex.split(
            template.format(repo=self.plan.repo, python=self.plan.python, url=self.plan.url)
        )

    def _run(self, name: str, argv: list[str], outcome: Outcome) -> Step:
        """Run one step's command; its output goes to `.deploy/steps.log`, its tail to evidence."""
        started = time.monotonic()
        self.say(f"→ {name}: {shlex.join(argv)}")
        try:
            # The operator's own configured commands (PARLEY_DEPLOY_*_COMMAND), without a shell.
            result = subprocess.run(  # noqa: S603
                argv,
                cwd=self.plan.repo,
                capture_output=True,
                text=True,
                timeout=STEP_TIMEOUT_SECONDS,
                check=False,
            )
            stdout = result.stdout
            output = (result.stdout + result.stderr).strip()
            ok = result.returncode == 0
            detail = f"exit {result.returncode}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            stdout, output, ok, detail = "", str(exc), False, type(exc).__name__
        with (self.plan.state_dir / "steps.log").open("a") as log:
            log.write(f"== {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {outcome.action} {name}\n")
            log.write(output + "\n")
        tail = " / ".join(output.splitlines()[-_TAIL:])
        step = Step(
            name, ok, f"{detail}: {tail}" if tail else detail, time.monotonic() - started, stdout
        )
        outcome.steps.append(step)
        self.say(f"  {'ok' if ok else 'FAILED'} ({step.seconds:.1f} s)")
        return step

    def _step(self, name: str, outcome: Outcome, action: Callable[[], str]) -> Step:
        started = time.monotonic()
        self.say(f"→ {name}")
        try:
            detail, ok = action(), True
        except (DeployError, OSError, httpx.HTTPError) as exc:
            detail, ok = str(exc), False
        step = Step(name, ok, detail, time.monotonic() - started)
        outcome.steps.append(step)
        self.say(f"  {'ok' if ok else 'FAILED'}: {detail}")
        return step

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + self.plan.ready_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(f"{self.plan.url}/readyz", timeout=2)
                if answer.status_code == 200:
                    return f"/readyz 200 {answer.text[:200]}"
                last = f"/readyz {answer.status_code} {answer.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}"
            time.sleep(0.5)
        raise DeployError(f"not ready within {self.plan.ready_timeout:.0f} s: {last}")

    def _smoke(self, outcome: Outcome) -> bool:
        step = self._run("smoke", self._command(self.plan.commands.smoke), outcome)
        outcome.smoke = "PASS" if step.ok else "FAIL"
        (self.plan.state_dir / "last-smoke.json").write_text(
            json.dumps({"at": datetime.now(UTC).isoformat(), **step.to_json()}, indent=2) + "\n"
        )
        return step.ok

    def _parley(self, *args: str) -> list[str]:
        return [self.plan.python, "-m", "parley", *args]

    def _finish(self, outcome: Outcome) -> Outcome:
        append_release_log(self.plan.release_log, outcome)
        self._notify(outcome)
        return outcome

    def _notify(self, outcome: Outcome) -> None:
        if not self.plan.webhook_url:
            return
        summary = {
            "text": f"parley {outcome.action} {outcome.ref} ({outcome.sha[:12]}): "
            f"{outcome.outcome}, smoke {outcome.smoke}"
            + (f" — {outcome.note}" if outcome.note else ""),
            **outcome.to_json(),
        }
        try:
            httpx.post(self.plan.webhook_url, json=summary, timeout=10).raise_for_status()
        except httpx.HTTPError as exc:
            # Never the URL: chat webhooks carry their token in it.
            self.say(f"(the webhook did not take the summary: {describe_http_error(exc)})")

    # -- deploy --------------------------------------------------------------------------------

    def deploy(self, ref: str, *, auto_rollback: bool) -> Outcome:
        with self._locked():
            return self._deploy(ref, auto_rollback=auto_rollback)

    def _previous_ref(self, sha: str) -> str:
        """The ref the release log names for `sha` (what is checked out now), else the sha."""
        for row in reversed(read_release_log(self.plan.release_log)):
            if row["sha"] and sha.startswith(row["sha"]):
                return row["ref"]
        return sha[:12]

    def _deploy(self, ref: str, *, auto_rollback: bool) -> Outcome:
        if self._git("status", "--porcelain", "--untracked-files=no"):
            raise DeployError(
                f"{self.plan.repo} has local changes; commit or discard them before deploying"
            )
        if self.plan.fetch and "origin" in self._git("remote").split():
            self._git("fetch", "--quiet", "--tags", "origin")
        sha = self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        previous_sha = self._git("rev-parse", "HEAD")
        outcome = Outcome(
            "deploy", ref, sha, self._previous_ref(previous_sha), previous_sha, self.plan.actor
        )
        self.say(f"Deploying {ref} ({sha[:12]}) over {outcome.previous_ref} ({previous_sha[:12]})")
        if self.plan.backup:
            # No rotation here: the daily backup rotates; a deploy never drops a rollback target.
            argv = self._parley("backup", "--label", "pre-deploy", "--no-rotate", "--json")
            step = self._run("backup", argv, outcome)
            if not step.ok:
                outcome.outcome, outcome.note = "aborted", "the pre-deploy backup failed"
                return self._finish(outcome)
            outcome.backup = _backup_name(step.stdout)
            step.detail = f"verified backup {outcome.backup}"
        if self.plan.maintenance:
            self._run(
                "maintenance on",
                self._parley("maintenance", "on", "--message", f"Upgrading to {ref}"),
                outcome,
            )
        failed = self._release(outcome, sha)
        if failed is None and self._smoke(outcome):
            if self.plan.maintenance:
                self._run("maintenance off", self._parley("maintenance", "off"), outcome)
            outcome.outcome = "ok"
            self.say(f"Deployed {ref}: smoke PASS")
            return self._finish(outcome)
        outcome.note = f"{failed or 'smoke'} failed"
        if not auto_rollback:
            outcome.outcome = "failed"
            outcome.note += f"; roll back with `parley rollback --to {previous_sha[:12]}`"
            return self._finish(outcome)
        outcome.outcome = "rolled-back"
        self._finish(outcome)
        self.say(f"Rolling back to {outcome.previous_ref} ({previous_sha[:12]})")
        outcome.rollback = self._rollback(
            outcome.previous_ref,
            previous_sha,
            backup=outcome.backup,
            reason=f"automatic rollback of {ref}: {outcome.note}",
            from_sha=sha,
            from_ref=ref,
        )
        return outcome

    def _release(self, outcome: Outcome, sha: str) -> str | None:
        """Check out `sha`, install, migrate, restart, wait; answer the failed step, or None."""
        checkout = self._step("checkout", outcome, lambda: self._checkout(sha))
        if not checkout.ok:
            return "checkout"
        for name, template in (
            ("install", self.plan.commands.install),
            ("migrate", self.plan.commands.migrate),
            ("restart", self.plan.commands.restart),
        ):
            if not self._run(name, self._command(template), outcome).ok:
                return name
        if not self._step("ready", outcome, self._wait_ready).ok:
            return "ready"
        return None

    def _checkout(self, sha: str) -> str:
        self._git("checkout", "--quiet", "--detach", sha)
        return f"HEAD is {self._git('rev-parse', 'HEAD')[:12]}"

    # -- rollback ------------------------------------------------------------------------------

    def rollback(self, ref: str | None, *, backup: str | None, restore_database: bool) -> Outcome:
        """Go back to `ref` (default: the previous ref of the last deploy) and its backup."""
        with self._locked():
            rows = [r for r in read_release_log(self.plan.release_log) if r["action"] == "deploy"]
            last = rows[-1] if rows else None
            if ref is None:
                if last is None or not last["previous_sha"]:
                    raise DeployError("no deploy in the release log to roll back; give --to REF")
                ref = last["previous_sha"]
            if backup is None and restore_database:
                backup = last["backup"] if last else ""
                if not backup:
                    raise DeployError(
                        "no pre-deploy backup in the release log; give --backup NAME or "
                        "--keep-database"
                    )
            sha = self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
            return self._rollback(
                ref,
                sha,
                backup=backup if restore_database else "",
                reason="manual rollback",
                from_sha=self._git("rev-parse", "HEAD"),
            )

    def _rollback(
        self, ref: str, sha: str, *, backup: str, reason: str, from_sha: str, from_ref: str = ""
    ) -> Outcome:
        outcome = Outcome(
            "rollback",
            ref,
            sha,
            from_ref or self._previous_ref(from_sha),
            from_sha,
            self.plan.actor,
            backup=backup,
        )
        self._run("stop", self._command(self.plan.commands.stop), outcome)
        failed = None
        if not self._step("checkout", outcome, lambda: self._checkout(sha)).ok:
            failed = "checkout"
        elif not self._run("install", self._command(self.plan.commands.install), outcome).ok:
            failed = "install"
        elif (
            backup
            and not self._run(
                "restore database",
                self._parley("restore", backup, "--in-place", "--yes", "--reason", reason),
                outcome,
            ).ok
        ):
            failed = "restore database"
        elif not self._run("restart", self._command(self.plan.commands.restart), outcome).ok:
            failed = "restart"
        elif not self._step("ready", outcome, self._wait_ready).ok:
            failed = "ready"
        if failed is None and self._smoke(outcome):
            if self.plan.maintenance:
                self._run("maintenance off", self._parley("maintenance", "off"), outcome)
            outcome.outcome, outcome.note = "ok", reason
            self.say(f"Rolled back to {ref}: smoke PASS")
        else:
            outcome.outcome = "failed"
            outcome.note = (
                f"{failed or 'smoke'} failed during rollback ({reason}); see incident runbook"
            )
            self.say(f"Rollback FAILED at {failed or 'smoke'}: page the rollback owner")
        return self._finish(outcome)


def _backup_name(printed: str) -> str:
    """The backup's name from what `parley backup --json` printed."""
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return str(json.loads(printed)["name"])
    return ""
