"""Every notebook as a learner uses it: JupyterLab in Chromium, run all, move every slider.

For each notebook under ``notebooks/`` (new ones are found without touching this file):
open it in a real JupyterLab, run all cells, and check that no cell shows an error and no
widget failed to display; then move every slider of every explorer to both ends of its
range and press every option of every row of buttons, and check that the explorer's
figure is redrawn each time, with no error, and renders well: one figure per explorer,
no collapse (layout jump) while it is replaced, nothing wider than the notebook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tools.browser_lab import (
    BUTTON_ROWS,
    FIGURE_JS,
    SLIDER_HANDLES,
    errors,
    open_notebook,
    press_moves,
    run_all,
    shut_down_kernels,
    wait_idle,
)

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts)
REDRAW_TIMEOUT_MS = 60_000
SCREENSHOTS = ROOT / "build" / "screenshots"  # the last view of each notebook, to look at


# Before a move: watch the explorer's box, keeping the lowest height it has while the
# figure is replaced (a figure removed before the next one is shown makes it collapse, and
# the page below jumps).
WATCH_BOX_JS = """(element) => {
  const box = element.closest('.widget-vbox');
  const height = box.getBoundingClientRect().height;
  window.__watch = {box: box, before: height, lowest: height};
  if (window.__resize) window.__resize.disconnect();
  window.__resize = new ResizeObserver(() => {
    const now = box.getBoundingClientRect().height;
    window.__watch.lowest = Math.min(window.__watch.lowest, now);
  });
  window.__resize.observe(box);
}"""

# After a move: how the explorer renders. One figure (not a second one added below the
# first), no collapse while it was replaced, nothing wider than the notebook, figures at
# most 1,000 px wide (10 inches at the course's 100 dpi: a laptop screen's notebook),
# every slider with a track to drag (a long label must not squeeze it away), every
# button's label whole.
RENDER_PROBLEMS_JS = """() => {
  const watch = window.__watch;
  const box = watch.box;
  const after = box.getBoundingClientRect().height;
  const problems = [];
  const figures = box.querySelectorAll('img.widget-image, .widget-output img');
  if (figures.length !== 1) problems.push(`${figures.length} figures in one explorer`);
  if (watch.lowest < Math.min(watch.before, after) - 1)
    problems.push(`the explorer shrank to ${watch.lowest} px while its figure was replaced`
                  + ` (${watch.before} px before, ${after} px after)`);
  if (box.scrollWidth > box.clientWidth + 1)
    problems.push(`the explorer overflows: ${box.scrollWidth} px in ${box.clientWidth} px`);
  const right = box.getBoundingClientRect().right;
  for (const figure of figures) {
    if (figure.naturalWidth > 1000) problems.push(`a figure ${figure.naturalWidth} px wide`);
    if (figure.getBoundingClientRect().right > right + 1)
      problems.push('a figure reaches past its explorer');
  }
  for (const slider of box.querySelectorAll('.widget-hslider')) {
    const track = slider.querySelector('.slider-container');
    const width = track ? track.getBoundingClientRect().width : 0;
    if (width < 100)
      problems.push(`the slider "${slider.textContent.trim().slice(0, 60)}" has a track of `
                    + `${Math.round(width)} px`);
  }
  for (const button of box.querySelectorAll('.widget-toggle-buttons button')) {
    if (button.scrollWidth > button.clientWidth + 1)
      problems.push(`the button "${button.textContent.trim()}" does not show its whole label`);
  }
  return problems;
}"""


def _wait_for_redraw(page: Any, element: Any, before: str | None, what: str) -> None:
    page.wait_for_function(
        f"([element, before]) => ({FIGURE_JS})(element) !== before", arg=[element, before],
        timeout=REDRAW_TIMEOUT_MS, polling=50)
    wait_idle(page, REDRAW_TIMEOUT_MS)
    found = errors(page)
    assert not found, f"{what}: {found}"
    problems = page.evaluate(RENDER_PROBLEMS_JS)
    assert not problems, f"{what}: {problems}"


def _move_sliders(page: Any) -> int:
    moves = 0
    handles = page.locator(SLIDER_HANDLES)
    for index in range(handles.count()):
        handle = handles.nth(index)
        handle.scroll_into_view_if_needed()
        for key in ("Home", "End"):
            before = handle.evaluate(FIGURE_JS)
            assert before is not None, f"slider {index} has no figure under it"
            handle.evaluate(WATCH_BOX_JS)
            if not press_moves(handle, key):  # it was at that end already
                continue
            _wait_for_redraw(page, handle.element_handle(), before, f"slider {index} {key}")
            moves += 1
    return moves


def _press_buttons(page: Any) -> int:
    presses = 0
    rows = page.locator(BUTTON_ROWS)
    for row_index in range(rows.count()):
        buttons = rows.nth(row_index).locator("button")
        for index in range(buttons.count()):
            button = buttons.nth(index)
            if "mod-active" in (button.get_attribute("class") or ""):
                continue
            button.scroll_into_view_if_needed()
            before = button.evaluate(FIGURE_JS)
            button.evaluate(WATCH_BOX_JS)
            button.click()
            _wait_for_redraw(page, button.element_handle(), before,
                             f"buttons {row_index} option {index}")
            presses += 1
    return presses


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_every_control_redraws(browser: Any, lab_url: str,
                                                 path: Path) -> None:
    stored = path.read_bytes()
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    try:
        open_notebook(page, lab_url, path.relative_to(ROOT).as_posix())
        run_all(page)
        found = errors(page)
        assert not found, f"after run all: {found}"
        sliders = page.locator(SLIDER_HANDLES).count()
        moves = _move_sliders(page)
        assert moves >= sliders, f"{sliders} sliders but only {moves} moves"
        _press_buttons(page)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{path.stem}.png"), full_page=False)
    finally:
        page.close()
        shut_down_kernels(lab_url)
    assert path.read_bytes() == stored, "the test saved the notebook (autosave?)"
