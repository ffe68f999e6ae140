"""Helpers for tests that run the Typer CLI in-process."""

from __future__ import annotations

import importlib

import pytest
from rich.console import Console

# Every module that prints tables through a module-level rich Console.
CLI_MODULES = (
    "parley.cli",
    "parley.features.release.cli",
    "parley.features.inbox.cli",
    "parley.features.livechat.cli",
    "parley.features.audit.cli",
    "parley.features.notify.cli",
    "parley.features.moderation.cli",
    "parley.features.disputes.cli",
    "parley.features.calls.cli",
    "parley.features.sso.cli",
    "parley.features.ops.cli",
    "parley.features.ops.preflight_cli",
    "parley.features.export.cli",
    "parley.features.privacy.cli",
)


def wide_consoles(monkeypatch: pytest.MonkeyPatch, width: int = 220) -> None:
    """Print CLI tables at `width` columns, whatever terminal (or none) the test runs under.

    A rich Console fixes its width from `COLUMNS` when it is made (at import); under a test
    worker that can be any value, and a narrow table wraps the rows the tests read.
    """
    for name in CLI_MODULES:
        monkeypatch.setattr(importlib.import_module(name), "console", Console(width=width))
