"""Render the course as a static HTML site that reads without a kernel.

    python tools/render_site.py                          # every notebook, into site/
    python tools/render_site.py --out DIR [NOTEBOOK...]  # some notebooks, into DIR

Each notebook is executed top to bottom in a fresh kernel, in its own folder, so that its
figures and printed evidence are in the page; then it is exported with nbconvert's
``HTMLExporter`` (the JupyterLab look, figures embedded as PNG, nothing to fetch but MathJax
for the formulas). The site mirrors ``notebooks/``: ``notebooks/04-fault-tolerance/4.2-x.ipynb``
becomes ``DIR/04-fault-tolerance/4.2-x.html``, and ``DIR/index.html`` is the course index.
The formulas need MathJax, which the pages load from a CDN (``--mathjax-url`` for another
place); everything else is in the page.

What a static page needs that a notebook does not:

* **Explorers at their default setting.** An explorer (``simulations.kit.widgets.Explorer``)
  shows its figure in an ``Image`` widget, and an ipywidgets ``interactive`` draws into an
  ``Output`` widget; a static page can show neither: the cell's output is only a reference
  to a widget model. The kernel's widget state, which nbclient records while executing,
  holds the models: the controls' values, each image's bytes and the outputs of each
  ``Output`` widget. Each widget output is
  replaced by what it showed: a line with every control at its default value, and the
  figure itself. The widget state is then dropped, so the page loads no widget JavaScript
  and has no dead sliders.
* **Links between notebooks**: ``href="x.ipynb"`` (relative, with or without ``#anchor``)
  becomes ``href="x.html"``, so the navigation lines work in the site.
* **Hidden solutions stay hidden**: a code cell whose source is hidden in JupyterLab
  (``metadata.jupyter.source_hidden``, the exercises' solutions) is folded into a
  ``<details>`` block, its output with it.
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

try:
    from tools.execute import execute as run_in_kernel
except ModuleNotFoundError:  # run as a script: tools/ itself is on sys.path
    from execute import execute as run_in_kernel  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
INDEX_NAME = "00-index.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

TEMPLATE = r"""
{%- extends 'index.html.j2' -%}
{#- require.js serves widgets and some rich outputs; the pages have neither -#}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{% block extra_css %}
<style>
details.course-solution { margin: 0.5em 0; padding-left: var(--jp-cell-padding, 5px); }
details.course-solution > summary { cursor: pointer; color: #555; padding: 0.2em 0;
  font-family: var(--jp-content-font-family); font-size: var(--jp-content-font-size1); }
.course-explorer-controls { font-size: 0.9em; color: #333; background: #f4f6f8;
  border-left: 3px solid #9aa7b3; padding: 0.4em 0.8em; margin: 0.2em 0; }
</style>
{% endblock extra_css %}
{% block codecell %}
{%- if cell.metadata.get('jupyter', {}).get('source_hidden') -%}
<details class="course-solution"><summary>Show the solution (code and output)</summary>
{{ super() }}
</details>
{%- else -%}
{{ super() }}
{%- endif -%}
{% endblock codecell %}
"""

_IPYNB_HREF = re.compile(r'href="(?P<path>[^":#?]+?)\.ipynb(?P<rest>[#?][^"]*)?"')


# --------------------------------------------------------------------------- execution


def execute(notebook: NotebookNode, directory: Path, timeout: int = 600) -> None:
    """Run every cell in a fresh ``python3`` kernel in ``directory``, keeping widget state."""
    run_in_kernel(notebook, directory, timeout=timeout, store_widget_state=True)


# --------------------------------------------------------------------------- explorers


def _node(data: Mapping[str, Any]) -> NotebookNode:
    node: NotebookNode = nbformat.from_dict(dict(data))  # type: ignore[no-untyped-call]
    return node


def _display(data: Mapping[str, Any]) -> NotebookNode:
    return _node({"output_type": "display_data", "metadata": {}, "data": dict(data)})


def _model_id(reference: Any) -> str | None:
    if isinstance(reference, str) and reference.startswith("IPY_MODEL_"):
        return reference[len("IPY_MODEL_"):]
    return None


def _walk(model_id: str, models: Mapping[str, Any], seen: set[str]) -> Iterable[dict[str, Any]]:
    """The model and every model below it (children, in order), depth first."""
    if model_id in seen or model_id not in models:
        return
    seen.add(model_id)
    model = models[model_id]
    yield model
    for child in model.get("state", {}).get("children", []) or []:
        child_id = _model_id(child)
        if child_id is not None:
            yield from _walk(child_id, models, seen)


def _control_value(state: Mapping[str, Any]) -> str | None:
    """A control's value as its readout shows it, or None for a widget that is no control."""
    labels = state.get("_options_labels")
    if labels is not None:  # ToggleButtons, Dropdown, RadioButtons, SelectionSlider
        index = state.get("index")
        return str(labels[index]) if isinstance(index, int) and 0 <= index < len(labels) else None
    if "value" not in state or not state.get("description"):
        return None
    value = state["value"]
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        spec = state.get("readout_format") or ".3g"
        try:
            return format(value, spec)
        except (TypeError, ValueError):
            return f"{value:g}"
    if isinstance(value, int | str):
        return str(value)
    return None


_CONTROL_MODELS = ("Slider", "ToggleButtons", "Dropdown", "RadioButtons", "Checkbox", "Text",
                   "BoundedIntText", "BoundedFloatText", "IntText", "FloatText", "Select")


def _image(model: Mapping[str, Any]) -> list[NotebookNode]:
    """An image widget's picture as a display output (empty if it holds none)."""
    image_format = model.get("state", {}).get("format", "png")
    for buffer in model.get("buffers", []):
        if list(buffer.get("path", [])) == ["value"] and buffer.get("encoding") == "base64":
            return [_display({f"image/{image_format}": buffer["data"],
                              "text/plain": "<the explorer's figure>"})]
    return []


def static_explorer(model_id: str, models: Mapping[str, Any]) -> list[NotebookNode] | None:
    """Plain outputs showing what the widget ``model_id`` showed when the notebook ran.

    A line with each control at its value, then the picture of every ``Image`` widget and
    the outputs of every ``Output`` widget inside it (the explorer's figure). None if the
    widget state does not hold the model.
    """
    if model_id not in models:
        return None
    controls: list[str] = []
    captured: list[NotebookNode] = []
    for model in _walk(model_id, models, set()):
        name = model.get("model_name", "")
        state = model.get("state", {})
        if name == "OutputModel":
            captured += [_node(output) for output in state.get("outputs", [])]
        elif name == "ImageModel":  # an Explorer's figure: PNG bytes in a binary buffer
            captured += _image(model)
        elif any(kind in name for kind in _CONTROL_MODELS):
            value = _control_value(state)
            if value is not None:
                label = html.escape(str(state.get("description", "")).rstrip(":"))
                controls.append(f"<b>{label}</b> {html.escape(value)}")
    outputs: list[NotebookNode] = []
    if controls:
        line = ("Explorer at its default setting: " + " · ".join(controls)
                + ". <em>Run the notebook to move the controls.</em>")
        outputs.append(_display({"text/html": f'<div class="course-explorer-controls">{line}</div>',
                                 "text/plain": re.sub(r"<[^>]+>", "", line)}))
    return outputs + captured


def flatten_widgets(notebook: NotebookNode) -> int:
    """Replace every widget output by its static rendering; drop the widget state.

    Returns how many widget outputs were replaced.
    """
    state = notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {})
    models: Mapping[str, Any] = state.get("state", {})
    replaced = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        outputs: list[NotebookNode] = []
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                outputs.append(output)
                continue
            rendered = static_explorer(str(view.get("model_id", "")), models)
            if rendered is None:
                rendered = [_display({
                    "text/plain": "(an interactive widget: run the notebook to use it)"})]
            outputs += rendered
            replaced += 1
        cell.outputs = outputs
    notebook.metadata.pop("widgets", None)
    return replaced


# --------------------------------------------------------------------------- export


def rewrite_links(page: str) -> str:
    """Relative links to notebooks (``x.ipynb``, ``x.ipynb#part``) point to their pages."""
    return _IPYNB_HREF.sub(lambda m: f'href="{m["path"]}.html{m["rest"] or ""}"', page)


def export_html(notebook: NotebookNode, mathjax_url: str | None = None) -> str:
    """The notebook as one self-contained HTML page (JupyterLab look, figures embedded).

    Formulas are typeset by MathJax, loaded from ``mathjax_url`` (nbconvert's CDN address
    by default; give a local copy for a site read offline).
    """
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(  # type: ignore[no-untyped-call]
        template_name="lab", extra_loaders=[DictLoader({"course_site.html.j2": TEMPLATE})],
        template_file="course_site.html.j2", exclude_input_prompt=True,
        exclude_output_prompt=True, **({"mathjax_url": mathjax_url} if mathjax_url else {}))
    page: str = exporter.from_notebook_node(notebook)[0]
    return rewrite_links(page)


def page_path(notebook: Path, out: Path, notebooks: Path = NOTEBOOKS) -> Path:
    """Where the page of ``notebook`` goes: its place under ``notebooks/``, under ``out``."""
    try:
        relative = notebook.resolve().relative_to(notebooks.resolve())
    except ValueError:
        relative = Path(notebook.name)
    return out / relative.with_suffix(".html")


def render(notebook_path: Path, out: Path, *, run: bool = True, timeout: int = 600,
           mathjax_url: str | None = None) -> Path:
    """Execute (unless ``run`` is false), flatten the explorers, export; return the page."""
    notebook: NotebookNode = nbformat.read(  # type: ignore[no-untyped-call]
        notebook_path, as_version=4)
    if run:
        execute(notebook, notebook_path.parent, timeout)
    flatten_widgets(notebook)
    target = page_path(notebook_path, out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(export_html(notebook, mathjax_url), encoding="utf-8")
    if notebook_path.name == INDEX_NAME and target.parent == out:
        shutil.copyfile(target, out / "index.html")
    return target


def all_notebooks(notebooks: Path = NOTEBOOKS) -> list[Path]:
    return sorted(p for p in notebooks.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Render the course's notebooks to a static HTML site (executed first).")
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to render (default: every notebook under notebooks/)")
    parser.add_argument("--out", type=Path, default=ROOT / "site",
                        help="output directory (default: site/ at the repository root)")
    parser.add_argument("--no-execute", action="store_true",
                        help="render the notebooks as stored, without running them "
                             "(figures and explorers are then missing)")
    parser.add_argument("--timeout", type=int, default=600,
                        help="seconds a cell may run (default 600)")
    parser.add_argument("--mathjax-url", default=None,
                        help="where pages load MathJax from (default: nbconvert's CDN)")
    args = parser.parse_args(argv)
    paths = args.notebooks or all_notebooks()
    failed = []
    for path in paths:
        started = time.perf_counter()
        try:
            page = render(path, args.out, run=not args.no_execute, timeout=args.timeout,
                          mathjax_url=args.mathjax_url)
        except Exception as error:  # a failing notebook must not stop the others
            failed.append(path)
            print(f"FAILED {path}: {type(error).__name__}: {str(error)[-2000:]}",
                  file=sys.stderr)
            continue
        print(f"{page} ({time.perf_counter() - started:.0f} s)")
    if failed:
        print(f"render_site: {len(failed)} notebook(s) failed: "
              + ", ".join(str(p) for p in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
