"""Git refs for the Go/No-Go record: what ships, what it rolls back to, and whether it is main.

Refs are resolved by git in the release engineer's checkout (`--repo`), never compared as
strings: `origin/mainline-hack` is not on `origin/main` however it starts. Seed 002's
`origin/main@<sha>` form names a commit and claims it is on that branch; the claim is checked.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

PINNED = re.compile(r"^(?P<branch>[^@]+)@(?P<sha>[0-9a-fA-F]{4,40})$")
GIT_TIMEOUT = 15


@dataclass(frozen=True, slots=True)
class Resolved:
    given: str
    sha: str | None
    problem: str | None = None

    @property
    def short(self) -> str:
        return (self.sha or "?")[:12]


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed argv, no shell
        ["git", *args],  # noqa: S607 - the operator's git, as they would run it
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT,
        check=False,
    )


def rev_parse(repo: Path, ref: str) -> str | None:
    """The full commit SHA `ref` names in `repo`, or None."""
    if not ref or ref.startswith("-"):
        return None
    try:
        done = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def is_ancestor(repo: Path, older: str, newer: str) -> bool:
    """True when `older` is `newer` or one of its ancestors."""
    return _git(repo, "merge-base", "--is-ancestor", older, newer).returncode == 0


def resolve(repo: Path, ref: str) -> Resolved:
    """Resolve `ref` (a branch, tag, SHA, or `branch@sha`) to one commit."""
    ref = ref.strip()
    if not ref:
        return Resolved(ref, None, "not given")
    if not (repo / ".git").exists() and rev_parse(repo, "HEAD") is None:
        return Resolved(ref, None, f"{repo} is not a git checkout (--repo)")
    pinned = PINNED.match(ref)
    if pinned is None:
        sha = rev_parse(repo, ref)
        return Resolved(ref, sha, None if sha else f"git cannot resolve {ref!r} in {repo}")
    branch, claimed = pinned["branch"], pinned["sha"]
    sha, tip = rev_parse(repo, claimed), rev_parse(repo, branch)
    if sha is None:
        return Resolved(ref, None, f"git cannot resolve commit {claimed} in {repo} (git fetch?)")
    if tip is None:
        return Resolved(ref, sha, f"git cannot resolve {branch!r} in {repo}")
    if not is_ancestor(repo, sha, tip):
        return Resolved(ref, sha, f"{claimed} is not on {branch} ({tip[:12]})")
    return Resolved(ref, sha)
