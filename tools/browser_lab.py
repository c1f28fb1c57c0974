"""A throw-away JupyterLab driven in the system's Chromium: shared by the browser tests
(``tests/browser``) and the browser slider benchmark (``benchmarks/bench_browser_sliders.py``).

:func:`running_lab` starts ``jupyter lab`` on a free loopback port with settings,
workspace and runtime directories of its own (nothing of the user's own JupyterLab is read
or written; no autosave, no windowing, no news), and stops it afterwards. Playwright then
drives ``/usr/bin/chromium`` (the Debian package; Playwright's own browser download is not
used). The page helpers open a notebook in a workspace of its own, run all cells, and read
what the learner sees: errors, and the figure under a control.
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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]
CURRENT = "window.jupyterapp.shell.currentWidget"
SLIDER_HANDLES = ".widget-vbox .widget-hslider .noUi-handle"
BUTTON_ROWS = ".widget-vbox .widget-toggle-buttons"

ERRORS_JS = f"""() => {{
  const found = [];
  {CURRENT}.content.widgets.forEach((cell, index) => {{
    if (cell.model.type !== 'code') return;
    for (const output of cell.model.outputs.toJSON()) {{
      if (output.output_type === 'error')
        found.push(`cell ${{index}}: ${{output.ename}}: ${{output.evalue}}`);
    }}
  }});
  for (const node of document.querySelectorAll('.jp-OutputArea-output')) {{
    const text = node.textContent || '';
    if (text.includes('Error displaying widget')
        || text.includes('Traceback (most recent call last)'))
      found.push('output: ' + text.slice(0, 300));
  }}
  return found;
}}"""

# The figure under a control: an explorer's image widget, or the image in an Output
# widget (ipywidgets' ``interact``). Its ``src`` changes with every redraw.
FIGURE_JS = """(element) => {
  const explorer = element.closest('.widget-vbox');
  const image = explorer && (explorer.querySelector('img.widget-image')
                             || explorer.querySelector('.widget-output img'));
  return image ? image.getAttribute('src') : null;
}"""


def shown_value(handle: Any) -> tuple[str | None, str]:
    """A slider handle's value and the slider's readout. Both: ``aria-valuenow`` is
    rounded to one decimal (a move from 0.02 to 0.03 leaves it at "0.0"), and a readout
    may be rounded further than the value."""
    readout: str = handle.evaluate(
        "(e) => e.closest('.widget-hslider').querySelector('.widget-readout').innerText")
    return handle.get_attribute("aria-valuenow"), readout


def press_moves(handle: Any, key: str, *, within: float = 0.5) -> bool:
    """Press ``key`` on a slider handle; whether the slider's value moved (``False`` at
    the end of its range), seen within ``within`` seconds."""
    value = shown_value(handle)
    handle.focus()
    handle.press(key)
    deadline = time.monotonic() + within
    while shown_value(handle) == value:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def chromium_path() -> str | None:
    """The system's Chromium, or None."""
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
    """Render every cell (no windowing), never save (no autosave: a run must leave the
    notebooks as they are), no news pop-up, no update checks."""
    files = {
        ("notebook-extension", "tracker"): {"windowingMode": "none"},
        ("docmanager-extension", "plugin"): {"autosave": False},
        ("apputils-extension", "notification"): {"fetchNews": "false",
                                                 "checkForUpdates": False},
    }
    for (extension, plugin), values in files.items():
        folder = directory / "@jupyterlab" / extension
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{plugin}.jupyterlab-settings").write_text(json.dumps(values))


@contextmanager
def running_lab(root: Path, home: Path, *, start_timeout: float = 60.0) -> Iterator[str]:
    """Run ``jupyter lab`` serving ``root``, with its own directories under ``home``;
    yield its base URL. The server's log is ``home / "lab.log"``."""
    settings = home / "settings"
    _settings(settings)
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"))
    port = _free_port()
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
               "--ip=127.0.0.1", "--ServerApp.token=", "--ServerApp.password=",
               "--ServerApp.allow_root=True", f"--ServerApp.root_dir={root}",
               "--LabApp.expose_app_in_browser=True", "--ServerApp.disable_check_xsrf=True"]
    url = f"http://127.0.0.1:{port}"
    with (home / "lab.log").open("w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    urllib.request.urlopen(f"{url}/api/status", timeout=1).close()
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
                server.wait()


def wait(page: Any, condition: str, timeout: int) -> None:
    """Wait until the JavaScript ``condition`` holds; while JupyterLab (re)loads and
    ``window.jupyterapp`` is not there yet, the condition counts as false."""
    page.wait_for_function(f"() => {{ try {{ return Boolean({condition}); }} "
                           "catch (error) { return false; } }", timeout=timeout, polling=50)


def wait_idle(page: Any, timeout: int) -> None:
    """Wait until the current notebook's kernel is idle."""
    wait(page, f"{CURRENT}.sessionContext.session.kernel.status === 'idle'", timeout)


def open_notebook(page: Any, lab_url: str, relative: str) -> None:
    """Open the notebook at ``relative`` (to the server's root) and wait for its kernel."""
    # A workspace of its own, reset: no notebook of an earlier page is restored, and
    # JupyterLab does not reload the page to move off a workspace it thinks is in use.
    workspace = Path(relative).stem.replace(".", "-")
    page.goto(f"{lab_url}/lab/workspaces/{workspace}/tree/{relative}?reset")
    wait(page, f"{CURRENT}.context.path === {relative!r}", 60_000)
    page.evaluate(f"async () => {{ await {CURRENT}.context.ready; "
                  f"await {CURRENT}.sessionContext.ready; }}")


def run_all(page: Any, timeout: int = 600_000) -> None:
    """Run every cell of the current notebook and wait until the kernel is idle."""
    page.evaluate("async () => { await window.jupyterapp.commands.execute("
                  "'notebook:run-all-cells'); }")
    wait_idle(page, timeout)


def errors(page: Any) -> list[str]:
    """Error outputs and widget errors shown in the current notebook."""
    found: list[str] = page.evaluate(ERRORS_JS)
    return found


def shut_down_kernels(lab_url: str) -> None:
    """Stop every kernel of the server, so that one notebook's kernel does not run on
    (and take memory and CPU) while the next notebook is used."""
    with urllib.request.urlopen(f"{lab_url}/api/kernels", timeout=10) as response:
        kernels = json.load(response)
    for kernel in kernels:
        request = urllib.request.Request(f"{lab_url}/api/kernels/{kernel['id']}",
                                         method="DELETE")
        urllib.request.urlopen(request, timeout=30).close()
