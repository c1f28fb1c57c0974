"""A learner sees the figures and the sliders, not a repr.

nbval checks the printed evidence; this test executes each section notebook once more
and checks what nbval does not: every cell that returns a figure shows it as an image,
every explorer cell shows a widget, and every number in the prose is one that the code
around it shows (``tools/check_notebooks.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from tools import check_notebooks
from tools.execute import execute

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb")
                  if check_notebooks.is_section_notebook(p)
                  and ".ipynb_checkpoints" not in p.parts)
SECTIONS.append(ROOT / "notebooks" / "00-theory-primer.ipynb")  # figures, sliders, numbers


def _last_line(cell: nbformat.NotebookNode) -> str:
    lines = [line for line in cell.source.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@pytest.mark.parametrize("path", SECTIONS, ids=lambda p: p.name)
def test_figures_render_as_images_and_explorers_as_widgets(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    execute(notebook, path.parent)
    figures = explorers = 0
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        kinds = {key for output in cell.outputs for key in output.get("data", {})}
        last = _last_line(cell)
        if re.match(r"^(\w+\.)?draw_", last):  # draw_x(...) or module.draw_x(...)
            figures += 1
            assert "image/png" in kinds, f"cell {index} ({last}) shows no image: {kinds}"
        if last.endswith("_explorer()"):
            explorers += 1
            assert "application/vnd.jupyter.widget-view+json" in kinds, (
                f"cell {index} ({last}) shows no widget: {kinds}")
    assert figures >= 2, "a section notebook shows its simulation in figures"
    drift = check_notebooks.prose_problems(notebook)
    assert not drift, "\n".join(drift)
    assert explorers >= 1, "a section notebook has sliders to explore"
