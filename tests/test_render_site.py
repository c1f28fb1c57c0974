"""tools/render_site.py: the course as a static site, figures and explorers included."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import nbformat
import pytest

from tools import render_site

ROOT = Path(__file__).resolve().parent.parent
GLOSSARY = ROOT / "notebooks" / "00-glossary.ipynb"
SECTION = ROOT / "notebooks" / "04-fault-tolerance" / "4.2-circuit-breaker.ipynb"
PNG = "data:image/png;base64,"


# --------------------------------------------------------------------------- pieces


def test_links_to_notebooks_become_links_to_pages() -> None:
    page = ('<a href="../00-index.ipynb">i</a> <a href="4.3-bulkhead.ipynb#explore">e</a> '
            '<a href="https://example.org/x.ipynb">web</a> <a href="notes.md">md</a>')
    assert render_site.rewrite_links(page) == (
        '<a href="../00-index.html">i</a> <a href="4.3-bulkhead.html#explore">e</a> '
        '<a href="https://example.org/x.ipynb">web</a> <a href="notes.md">md</a>')


def _model(name: str, **state: object) -> dict[str, object]:
    return {"model_name": name, "model_module": "@jupyter-widgets/controls", "state": state}


def _widget_notebook() -> nbformat.NotebookNode:
    figure = {"output_type": "display_data", "metadata": {},
              "data": {"image/png": base64.b64encode(b"png").decode(), "text/plain": "<Figure>"}}
    models = {
        "box": _model("VBoxModel", children=["IPY_MODEL_row", "IPY_MODEL_out", "IPY_MODEL_time"]),
        "row": _model("HBoxModel", children=["IPY_MODEL_rate", "IPY_MODEL_n", "IPY_MODEL_mode"]),
        "rate": _model("FloatSliderModel", description="rate (1/s)", value=0.5,
                       readout_format=".1f"),
        "n": _model("IntSliderModel", description="nodes", value=1000),
        "mode": _model("ToggleButtonsModel", description="mode", index=1,
                       _options_labels=["push", "pull"]),
        "out": {"model_name": "OutputModel", "model_module": "@jupyter-widgets/output",
                "state": {"outputs": [figure]}},
        "time": _model("HTMLModel", description="", value="<small>redrawn in 0.1 s</small>"),
    }
    cell = nbformat.v4.new_code_cell("explorer()")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "text/plain": "Explorer(...)",
        render_site.WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": "box"}}),
        nbformat.v4.new_output("display_data", data={
            render_site.WIDGET_VIEW: {"model_id": "gone"}})]
    notebook = nbformat.v4.new_notebook(cells=[cell])
    notebook.metadata["widgets"] = {render_site.WIDGET_STATE: {
        "version_major": 2, "version_minor": 0, "state": models}}
    return notebook


def test_an_explorer_becomes_its_controls_and_its_figure() -> None:
    notebook = _widget_notebook()
    assert render_site.flatten_widgets(notebook) == 2
    assert "widgets" not in notebook.metadata
    controls, figure, missing = notebook.cells[0].outputs
    text = controls.data["text/html"]
    assert "<b>rate (1/s)</b> 0.5" in text
    assert "<b>nodes</b> 1000" in text
    assert "<b>mode</b> pull" in text
    assert "redrawn" not in text  # a timing is no control
    assert figure.data["image/png"] == base64.b64encode(b"png").decode()
    assert "run the notebook" in missing.data["text/plain"]
    assert all(render_site.WIDGET_VIEW not in o.get("data", {}) for o in notebook.cells[0].outputs)


def test_an_explorer_image_widget_becomes_its_picture() -> None:
    png = base64.b64encode(b"\x89PNG...").decode()
    models = {
        "box": _model("VBoxModel", children=["IPY_MODEL_rate", "IPY_MODEL_image"]),
        "rate": _model("FloatSliderModel", description="rate", value=0.5),
        "image": {**_model("ImageModel", format="png"),
                  "buffers": [{"path": ["value"], "data": png, "encoding": "base64"}]},
    }
    controls, figure = render_site.static_explorer("box", models) or []
    assert "<b>rate</b> 0.5" in controls.data["text/html"]
    assert figure.data["image/png"] == png
    empty = {**models, "image": _model("ImageModel", format="png")}
    assert len(render_site.static_explorer("box", empty) or []) == 1  # no picture, no output


def test_pages_mirror_the_notebooks_folder(tmp_path: Path) -> None:
    assert render_site.page_path(SECTION, tmp_path) == (
        tmp_path / "04-fault-tolerance" / "4.2-circuit-breaker.html")
    assert render_site.page_path(GLOSSARY, tmp_path) == tmp_path / "00-glossary.html"


# --------------------------------------------------------------------------- a real site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    assert render_site.main(["--out", str(out), str(GLOSSARY), str(SECTION)]) == 0
    return out


def test_each_notebook_becomes_a_page(site: Path) -> None:
    assert (site / "00-glossary.html").is_file()
    assert (site / "04-fault-tolerance" / "4.2-circuit-breaker.html").is_file()


def test_the_section_page_shows_its_figures_and_its_explorer(site: Path) -> None:
    page = (site / "04-fault-tolerance" / "4.2-circuit-breaker.html").read_text(encoding="utf-8")
    notebook = nbformat.read(SECTION, as_version=4)
    drawn = sum(1 for c in notebook.cells if c.cell_type == "code"
                and c.source.strip().splitlines()[-1].startswith("draw_"))
    explorers = sum(1 for c in notebook.cells if c.cell_type == "code"
                    and c.source.strip().splitlines()[-1].endswith("_explorer()"))
    assert drawn >= 2
    assert explorers >= 1
    assert page.count(PNG) >= drawn + explorers
    # every explorer: its controls at their defaults, then its figure, before the next cell
    shown = page.split('class="course-explorer-controls"')[1:]
    assert len(shown) == explorers
    assert "<b>failure-rate threshold</b> 0.50" in page
    for rest in shown:
        assert PNG in rest.split('class="jp-Cell ')[0], "the explorer's figure is in the page"
    assert render_site.WIDGET_VIEW not in page  # no dead widgets
    assert "jupyter-widgets/html-manager" not in page


def test_links_between_pages_work(site: Path) -> None:
    section_page = site / "04-fault-tolerance" / "4.2-circuit-breaker.html"
    for page_path in (site / "00-glossary.html", section_page):
        page = page_path.read_text(encoding="utf-8")
        hrefs = re.findall(r'href="([^"]+)"', page)
        assert not [h for h in hrefs if ".ipynb" in h and "://" not in h], "links rewritten"
        local = [h.split("#")[0] for h in hrefs if h.endswith(".html") or ".html#" in h]
        assert local, page_path
        for href in local:
            if "://" in href:
                continue
            target = (page_path.parent / href).resolve()
            # the pages this test rendered exist; the others would, in a full render
            relative = target.relative_to(site.resolve()).with_suffix(".ipynb")
            assert (ROOT / "notebooks" / relative).is_file(), href
    section = section_page.read_text(encoding="utf-8")
    assert 'href="../00-index.html"' in section
    assert 'href="4.3-bulkhead-and-isolation.html"' in section
    glossary = (site / "00-glossary.html").read_text(encoding="utf-8")
    assert 'href="04-fault-tolerance/4.2-circuit-breaker.html"' in glossary


def test_solutions_stay_folded(site: Path) -> None:
    page = (site / "04-fault-tolerance" / "4.2-circuit-breaker.html").read_text(encoding="utf-8")
    notebook = nbformat.read(SECTION, as_version=4)
    hidden = sum(1 for c in notebook.cells
                 if c.get("metadata", {}).get("jupyter", {}).get("source_hidden"))
    assert page.count('<details class="course-solution">') == hidden
