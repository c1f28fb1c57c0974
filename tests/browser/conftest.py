"""A real JupyterLab in a real (headless) Chromium, for the browser tests.

The session starts ``jupyter lab`` on a free loopback port with throw-away settings,
workspace and runtime directories (``tools.browser_lab``: nothing of the user's own
JupyterLab is read or written), and Playwright drives the system's Chromium
(``/usr/bin/chromium``, the Debian package; Playwright's own browser download is not
used). Without Chromium the tests are skipped, except in CI (``CI`` set), where a missing
browser is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.browser_lab import CHROMIUM_ARGS, chromium_path, running_lab

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def lab_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a JupyterLab serving this repository; afterwards, a check that no
    notebook of the checkout was changed (saved) by the tests."""
    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed; .ci/run installs the Debian package")
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    notebooks = {path: path.read_bytes() for path in (ROOT / "notebooks").rglob("*.ipynb")}
    with running_lab(ROOT, tmp_path_factory.mktemp("lab")) as url:
        yield url
    changed = [str(path) for path, data in notebooks.items() if path.read_bytes() != data]
    assert not changed, f"the browser tests changed notebooks of the checkout: {changed}"


@pytest.fixture(scope="module")
def browser(lab_url: str) -> Iterator[object]:
    """Chromium, for one module: Playwright's sync API keeps an asyncio loop running in
    this thread while it is open, so it must be closed before any other test runs."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
