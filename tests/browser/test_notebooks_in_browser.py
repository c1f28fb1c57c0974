"""Every notebook as a learner uses it: JupyterLab in Chromium, run all, move every slider.

For each notebook under ``notebooks/`` (new ones are found without touching this file):
open it in a real JupyterLab, run all cells, and check that no cell shows an error and no
widget failed to display; then move every slider of every explorer to both ends of its
range and press every option of every row of buttons, and check that the explorer's
figure is redrawn each time, with no error.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts)
CURRENT = "window.jupyterapp.shell.currentWidget"
REDRAW_TIMEOUT_MS = 60_000
SCREENSHOTS = ROOT / "build" / "screenshots"  # the last view of each notebook, to look at

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

FIGURE_JS = """(element) => {
  const explorer = element.closest('.widget-vbox');
  const image = explorer && explorer.querySelector('.widget-output img');
  return image ? image.getAttribute('src') : null;
}"""


def _wait(page: Any, condition: str, timeout: int) -> None:
    """Wait until the JavaScript ``condition`` holds; while JupyterLab (re)loads and
    ``window.jupyterapp`` is not there yet, the condition counts as false."""
    page.wait_for_function(f"() => {{ try {{ return Boolean({condition}); }} "
                           "catch (error) { return false; } }", timeout=timeout, polling=100)


def _open(page: Any, lab_url: str, path: Path) -> None:
    relative = path.relative_to(ROOT).as_posix()
    # A workspace of its own, reset: no notebook of an earlier test is restored, and
    # JupyterLab does not reload the page to move off a workspace it thinks is in use.
    page.goto(f"{lab_url}/lab/workspaces/{path.stem.replace('.', '-')}/tree/{relative}?reset")
    _wait(page, f"{CURRENT}.context.path === {relative!r}", 60_000)
    page.evaluate(f"async () => {{ await {CURRENT}.context.ready; "
                  f"await {CURRENT}.sessionContext.ready; }}")


def _run_all(page: Any) -> None:
    page.evaluate("async () => { await window.jupyterapp.commands.execute("
                  "'notebook:run-all-cells'); }")
    _wait(page, f"{CURRENT}.sessionContext.session.kernel.status === 'idle'", 600_000)


def _wait_for_redraw(page: Any, element: Any, before: str | None, what: str) -> None:
    page.wait_for_function(
        f"([element, before]) => ({FIGURE_JS})(element) !== before", arg=[element, before],
        timeout=REDRAW_TIMEOUT_MS, polling=50)
    _wait(page, f"{CURRENT}.sessionContext.session.kernel.status === 'idle'",
          REDRAW_TIMEOUT_MS)
    errors = page.evaluate(ERRORS_JS)
    assert not errors, f"{what}: {errors}"


def _move_sliders(page: Any) -> int:
    moves = 0
    handles = page.locator(".widget-vbox .widget-hslider .noUi-handle")
    for index in range(handles.count()):
        handle = handles.nth(index)
        handle.scroll_into_view_if_needed()
        for key, end in (("Home", "aria-valuemin"), ("End", "aria-valuemax")):
            if handle.get_attribute("aria-valuenow") == handle.get_attribute(end):
                continue
            before = handle.evaluate(FIGURE_JS)
            assert before is not None, f"slider {index} has no figure under it"
            handle.focus()
            handle.press(key)
            _wait_for_redraw(page, handle.element_handle(), before, f"slider {index} {key}")
            moves += 1
    return moves


def _press_buttons(page: Any) -> int:
    presses = 0
    rows = page.locator(".widget-vbox .widget-toggle-buttons")
    for row_index in range(rows.count()):
        buttons = rows.nth(row_index).locator("button")
        for index in range(buttons.count()):
            button = buttons.nth(index)
            if "mod-active" in (button.get_attribute("class") or ""):
                continue
            button.scroll_into_view_if_needed()
            before = button.evaluate(FIGURE_JS)
            button.click()
            _wait_for_redraw(page, button.element_handle(), before,
                             f"buttons {row_index} option {index}")
            presses += 1
    return presses


def _shut_down_kernels(lab_url: str) -> None:
    """Stop every kernel of the server, so that one notebook's kernel does not run on
    (and take memory) while the next is tested."""
    with urllib.request.urlopen(f"{lab_url}/api/kernels", timeout=10) as response:
        kernels = json.load(response)
    for kernel in kernels:
        request = urllib.request.Request(f"{lab_url}/api/kernels/{kernel['id']}",
                                         method="DELETE")
        urllib.request.urlopen(request, timeout=30).close()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_every_control_redraws(browser: Any, lab_url: str,
                                                 path: Path) -> None:
    stored = path.read_bytes()
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    try:
        _open(page, lab_url, path)
        _run_all(page)
        errors = page.evaluate(ERRORS_JS)
        assert not errors, f"after run all: {errors}"
        sliders = page.locator(".widget-vbox .widget-hslider .noUi-handle").count()
        moves = _move_sliders(page)
        assert moves >= sliders, f"{sliders} sliders but only {moves} moves"
        _press_buttons(page)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{path.stem}.png"), full_page=False)
    finally:
        page.close()
        _shut_down_kernels(lab_url)
    assert path.read_bytes() == stored, "the test saved the notebook (autosave?)"
