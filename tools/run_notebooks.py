"""Execute notebooks in a fresh kernel and keep them light for git.

    python tools/run_notebooks.py                      # every notebook under notebooks/
    python tools/run_notebooks.py notebooks/04-*/4.1*.ipynb
    python tools/run_notebooks.py --strip-only PATH    # no execution, only stripping

After running, only the cells marked ``# NBVAL_CHECK_OUTPUT`` keep their output (text
only, with their execution count), because nbval compares those; every other output,
every image and the widget state are dropped. Run it after editing a notebook and
before committing it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

try:
    from tools.execute import execute as run_in_kernel
except ModuleNotFoundError:  # run as a script: tools/ itself is on sys.path
    from execute import execute as run_in_kernel  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
CHECK_MARK = "NBVAL_CHECK_OUTPUT"
TEXT_MIME = "text/plain"


def execute(notebook: nbformat.NotebookNode, directory: Path) -> None:
    """Run every cell top to bottom in a fresh ``python3`` kernel, in ``directory``."""
    run_in_kernel(notebook, directory)


def strip(notebook: nbformat.NotebookNode) -> None:
    """Keep only the text output of checked cells; drop everything else heavy."""
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        if CHECK_MARK not in cell.source:
            cell.outputs = []
            cell.execution_count = None
            continue
        kept = []
        for output in cell.outputs:
            if output.output_type in ("display_data", "execute_result"):
                text = output.get("data", {}).get(TEXT_MIME)
                if text is None:
                    continue
                output.data = {TEXT_MIME: text}
                output.metadata = {}
            kept.append(output)
        cell.outputs = kept


def process(path: Path, *, run: bool) -> bool:
    """Run (optionally) and strip ``path``; return whether the file changed."""
    before = path.read_text(encoding="utf-8")
    notebook = nbformat.reads(before, as_version=4)
    if run:
        execute(notebook, path.parent)
    strip(notebook)
    after = nbformat.writes(notebook) + "\n"
    if after != before:
        path.write_text(after, encoding="utf-8")
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--strip-only", action="store_true", help="do not execute")
    args = parser.parse_args(argv)
    paths = args.paths or sorted((ROOT / "notebooks").rglob("*.ipynb"))
    for path in paths:
        if ".ipynb_checkpoints" in path.parts:
            continue
        changed = process(path, run=not args.strip_only)
        print(f"{'updated' if changed else 'unchanged'}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
