"""Screen sizes, screenshots and layout checks shared by the browser tests.

Screenshots of each screen are kept as test artefacts in $PARLEY_E2E_ARTEFACTS, by default
`build/e2e-screenshots/` in the checkout (git-ignored; CI can upload the directory).
"""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Page

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
SIZES = {"desktop": DESKTOP, "phone": PHONE}

ARTEFACTS = Path(
    os.environ.get(
        "PARLEY_E2E_ARTEFACTS", Path(__file__).resolve().parents[2] / "build" / "e2e-screenshots"
    )
)


def save_screenshot(page: Page, name: str, *, full_page: bool = False) -> Path:
    """Save the page as `<ARTEFACTS>/<name>.png` and print where (the issue's closing note)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")
    return path


def horizontal_overflow(page: Page) -> int:
    """How many pixels the page is wider than the window (0: no horizontal scroll)."""
    return int(
        page.evaluate(
            "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
            " - document.documentElement.clientWidth"
        )
    )
