"""What this deployment runs: package version, git commit, schema revision, settings profile.

`GET /version` and `/readyz` answer it; Go/No-Go compares the commit with the target ref and
`preflight` the schema revision with the code's head. The commit comes from `PARLEY_GIT_SHA`,
else from `git rev-parse HEAD` in the checkout the package was installed from (read once, at
start), else "unknown" — an image built without `.git` must set the variable.
"""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path
from typing import Any

from parley import __version__
from parley.settings import Settings
from parley.storage.database import Database
from parley.storage.migrate import head_revision, read_revision

UNKNOWN = "unknown"
_SHA = re.compile(r"^[0-9a-f]{7,40}$")
PACKAGE_DIR = Path(__file__).resolve().parents[2]


def git_sha(settings: Settings) -> str:
    """The commit this process runs (lower-case hex), or "unknown"."""
    if settings.git_sha.strip():
        return settings.git_sha.strip().lower()
    return _checkout_sha()


@functools.cache
def _checkout_sha() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH, like any operator's
            cwd=PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    sha = done.stdout.strip().lower()
    return sha if done.returncode == 0 and _SHA.match(sha) else UNKNOWN


async def describe(
    settings: Settings, db: Database, *, database_down: str | None = None
) -> dict[str, Any]:
    """The body of `GET /version` (and `/readyz`'s `version`); `database_down`: the caller
    already knows the database does not answer (its revision is not asked for again)."""
    head = head_revision()
    revision, problem = None, database_down
    if database_down is None:
        try:
            revision = await read_revision(db)
        except Exception as exc:  # the database is down: say so, the rest is still true
            problem = f"{type(exc).__name__}"
    schema: dict[str, Any] = {
        "revision": revision,
        "head": head,
        "pending": revision != head if problem is None else None,
    }
    if problem is not None:
        schema["error"] = problem
    return {
        "version": __version__,
        "git_sha": git_sha(settings),
        "schema": schema,
        "profile": settings.effective_profile,
    }
