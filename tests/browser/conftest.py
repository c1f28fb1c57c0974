"""A real JupyterLab in a real (headless) Chromium, for the browser tests.

The session starts ``jupyter lab`` on a free loopback port with throw-away settings,
workspace and runtime directories (nothing of the user's own JupyterLab is read or
written), and Playwright drives the system's Chromium (``/usr/bin/chromium``, the Debian
package; Playwright's own browser download is not used). Without Chromium the tests are
skipped, except in CI (``CI`` set), where a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _settings(directory: Path) -> None:
    """Render every cell (no windowing), never save (no autosave: the tests must leave the
    notebooks as they are), no news pop-up, no update checks."""
    notebook = directory / "@jupyterlab" / "notebook-extension"
    notebook.mkdir(parents=True)
    (notebook / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    documents = directory / "@jupyterlab" / "docmanager-extension"
    documents.mkdir(parents=True)
    (documents / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    news = directory / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))


@pytest.fixture(scope="session")
def lab_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a JupyterLab serving this repository."""
    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed; .ci/run installs the Debian package")
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    home = tmp_path_factory.mktemp("lab")
    settings = home / "settings"
    _settings(settings)
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"))
    port = _free_port()
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
               "--ip=127.0.0.1", "--ServerApp.token=", "--ServerApp.password=",
               "--ServerApp.allow_root=True", f"--ServerApp.root_dir={ROOT}",
               "--LabApp.expose_app_in_browser=True", "--ServerApp.disable_check_xsrf=True"]
    log = (home / "lab.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    notebooks = {path: path.read_bytes() for path in (ROOT / "notebooks").rglob("*.ipynb")}
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=1)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("jupyter lab did not start; see "
                                       f"{home / 'lab.log'}") from None
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
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
