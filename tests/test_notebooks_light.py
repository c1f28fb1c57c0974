"""Notebooks stay light in git, and what nbval checks is really there."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from tools import check_notebooks

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").rglob("*.ipynb"))
NOTEBOOKS = [p for p in NOTEBOOKS if ".ipynb_checkpoints" not in p.parts]


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 2  # the index and at least one section


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_images_or_widget_state(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert '"image/png"' not in text
    assert "application/vnd.jupyter.widget-state+json" not in text
    assert "application/vnd.jupyter.widget-view+json" not in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_checked_cells_keep_their_output(path: Path) -> None:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code" and "NBVAL_CHECK_OUTPUT" in "".join(cell["source"]):
            assert cell["outputs"], f"cell {index} is checked by nbval but has no stored output"
            assert cell["execution_count"] is not None, f"cell {index} has no execution count"


SECTION_NOTEBOOKS = [p for p in NOTEBOOKS if check_notebooks.is_section_notebook(p)]


@pytest.mark.parametrize("path", SECTION_NOTEBOOKS, ids=lambda p: p.name)
def test_section_notebooks_keep_the_shape_of_design_md(path: Path) -> None:
    """Answered exercises with hints, a prediction, short cells, one runtime per cell."""
    problems = check_notebooks.shape_problems(nbformat.read(path, as_version=4))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", SECTION_NOTEBOOKS, ids=lambda p: p.name)
def test_section_notebooks_follow_the_course_shape(path: Path) -> None:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    markdown = "\n".join("".join(c["source"]) for c in notebook["cells"]
                         if c["cell_type"] == "markdown")
    for heading in ("## The design", "## Simulate", "## Explore", "## Pitfalls",
                    "## Takeaways", "## Exercises"):
        assert heading in markdown, f"{path.name} lacks the section {heading!r}"
    assert "navigation" in notebook["cells"][0]["metadata"].get("tags", [])
