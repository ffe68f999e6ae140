"""axe-core (npm, pinned in package.json) in the browser tests: inject it, run it, keep the
serious and critical violations. Pages with a strict CSP need a context with `bypass_csp=True`,
or the injected script is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = {"serious", "critical"}


def serious_violations(page: Page) -> list[dict[str, Any]]:
    """What axe finds serious or critical on the page as it is now (shadow roots included)."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `npm ci` first")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in found
        if v["impact"] in BLOCKING
    ]
