"""Check that section notebooks keep the shape of DESIGN.md and that their prose is true.

Two kinds of checks, both used by the test suite and runnable by hand:

* ``shape_problems(nb)`` reads a notebook as stored in git: exercises each with a hint and a
  hidden solution, at least one "predict" prompt, no code cell over 25 lines, one runtime
  (threads, asyncio, SimPy) per code cell, the closing navigation cell.
* ``prose_problems(nb)`` reads an *executed* notebook and flags numbers in the prose that
  appear neither in the code nor in the outputs of the cells around it: the drift of a
  sentence that still says "forty orders" after the code went to 30.

Usage::

    python tools/check_notebooks.py NOTEBOOK...            # shape only (fast)
    python tools/check_notebooks.py --execute NOTEBOOK...  # shape and prose (runs them)

Conventions the checks enforce (see DESIGN.md, "A notebook, the same shape every time"):

* An exercise is a Markdown cell tagged ``exercise`` that holds a hint in a
  ``<details><summary>Hint</summary> ... </details>`` block. The cells right after it that
  are tagged ``solution`` answer it: code cells with their source hidden
  (``metadata.jupyter.source_hidden``), Markdown cells inside a ``<details>`` block.
* A Markdown cell tagged ``predict`` asks the learner to predict the result of the cell
  below it before running it.
* Numbers in prose: a number in a Markdown cell must appear (equal, or equal once rounded
  to the digits the prose gives; a percentage may match a fraction) in the source or the
  output of one of the ``WINDOW`` code cells before or after it. Numbers inside ``$...$``
  maths, inline or fenced code, link targets, years and the course's section numbers are
  not checked; a cell may name further numbers that are not measurements in an HTML comment
  ``<!-- not-measured: 1987 0.176 -->`` (citations, definitions), which a reviewer can see.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import nbformat
from nbformat import NotebookNode

MAX_CODE_LINES = 25
WINDOW = 3
FOOTER_TAG = "navigation-footer"

_RUNTIME_MARKERS: dict[str, tuple[str, ...]] = {
    "asyncio": ("await ", "asyncio.run(", "asyncio.gather(", "asyncio.create_task(",
                "async def ", "async with ", "async for "),
    "SimPy": ("simpy.Environment(", "env.process(", "env.run(", "yield env.", "simpy_call("),
    "threads": ("threading.Thread(", "ThreadPoolExecutor(", ".start()", "Thread(target="),
}

_WORDS = {
    "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
    "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
    "ninety": 90, "hundred": 100, "thousand": 1000,
    "twice": 2, "thrice": 3, "half": 2, "double": 2, "triple": 3, "quarter": 4,
}
_TIMES_WORDS = {"twice", "thrice", "double", "triple", "half", "quarter"}

_NUMBER_RE = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(\s*%)?(?![\w])")
_WORD_RE = re.compile(r"\b(" + "|".join(_WORDS) + r")\b", re.IGNORECASE)
_EXEMPT_RE = re.compile(r"<!--\s*not-measured:(.*?)-->", re.S)
_SECTION_NUMBERS = {f"{c}.{s}" for c in range(1, 8) for s in range(1, 6)}


def _tags(cell: NotebookNode) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return list(tags) if isinstance(tags, list) else []


def is_section_notebook(path: Path) -> bool:
    """A section notebook lives in a chapter folder (``notebooks/NN-name/``)."""
    return re.match(r"^\d{2}-", path.parent.name) is not None


# --------------------------------------------------------------------------- shape


def _runtimes(source: str) -> set[str]:
    lines = [line for line in source.splitlines()
             if not line.lstrip().startswith(("#", "import ", "from "))]
    body = "\n".join(lines)
    return {name for name, markers in _RUNTIME_MARKERS.items()
            if any(marker in body for marker in markers)}


def shape_problems(nb: NotebookNode) -> list[str]:
    """What keeps a stored section notebook from the shape of DESIGN.md."""
    problems: list[str] = []
    cells: list[NotebookNode] = nb.cells
    for index, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        lines = cell.source.strip("\n").splitlines()
        if len(lines) > MAX_CODE_LINES:
            problems.append(f"cell {index}: {len(lines)} lines of code (at most "
                            f"{MAX_CODE_LINES}); split it or move logic into a module")
        runtimes = _runtimes(cell.source)
        if len(runtimes) > 1:
            problems.append(f"cell {index}: mixes runtimes {sorted(runtimes)}; one per cell")

    exercises = [i for i, c in enumerate(cells) if "exercise" in _tags(c)]
    if not exercises:
        problems.append("no cell tagged 'exercise'")
    for index in exercises:
        cell = cells[index]
        if cell.cell_type != "markdown":
            problems.append(f"cell {index}: an exercise is a Markdown cell")
        if not re.search(r"<details>\s*<summary>\s*Hint", cell.source):
            problems.append(f"cell {index}: exercise without a "
                            "'<details><summary>Hint</summary>' block")
        solutions = []
        for following in cells[index + 1:]:
            if "solution" not in _tags(following):
                break
            solutions.append(following)
        if not solutions:
            problems.append(f"cell {index}: exercise not followed by a cell tagged 'solution'")
        for solution in solutions:
            if solution.cell_type == "code":
                if not solution.get("metadata", {}).get("jupyter", {}).get("source_hidden"):
                    problems.append(f"cell {index}: its solution code cell is not hidden "
                                    "(metadata.jupyter.source_hidden)")
            elif "<details>" not in solution.source:
                problems.append(f"cell {index}: its Markdown solution is not in <details>")
    solution_cells = [i for i, c in enumerate(cells) if "solution" in _tags(c)]
    for index in solution_cells:
        before = index - 1
        while before >= 0 and "solution" in _tags(cells[before]):
            before -= 1
        if before < 0 or "exercise" not in _tags(cells[before]):
            problems.append(f"cell {index}: a solution that follows no exercise")

    if not any("predict" in _tags(c) for c in cells):
        problems.append("no cell tagged 'predict' (ask the learner to predict a result)")
    if not cells or FOOTER_TAG not in _tags(cells[-1]):
        problems.append(f"the last cell is not the '{FOOTER_TAG}' cell "
                        "(run python tools/build_course.py)")
    return problems


# --------------------------------------------------------------------------- prose


def _strip_unchecked(markdown: str) -> str:
    text = _EXEMPT_RE.sub(" ", markdown)
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)
    text = re.sub(r"\$[^$\n]+\$", " ", text)
    text = re.sub(r"`[^`\n]+`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
    text = re.sub(r"<[^>]+>", " ", text)  # HTML tags and their attributes
    text = re.sub(r"https?://\S+", " ", text)
    text = re.sub(r"^#+ .*$", " ", text, flags=re.M)  # headings
    return text


def _exempt(markdown: str) -> set[str]:
    found: set[str] = set()
    for block in _EXEMPT_RE.findall(markdown):
        found.update(token.replace(",", "") for token in block.split())
    return found


def prose_numbers(markdown: str) -> list[tuple[str, float, bool]]:
    """(as written, value, is a percentage) for each checked number of a Markdown cell."""
    exempt = _exempt(markdown)
    text = _strip_unchecked(markdown)
    numbers: list[tuple[str, float, bool]] = []
    for match in _NUMBER_RE.finditer(text):
        written = match.group(1).replace(",", "")
        if written in exempt or written in _SECTION_NUMBERS:
            continue
        value = float(written)
        if "." not in written and 1900 <= value <= 2099:
            continue  # a year
        if value <= 1 and "." not in written:
            continue  # 0 and 1 are words more than measurements
        numbers.append((written, value, bool(match.group(2))))
    for match in _WORD_RE.finditer(text):
        word = match.group(1).lower()
        if word in exempt or word in _TIMES_WORDS:
            continue
        numbers.append((word, float(_WORDS[word]), False))
    return numbers


_ANY_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _values(text: str) -> set[float]:
    values: set[float] = set()
    for token in _ANY_NUMBER_RE.findall(text):
        try:
            values.add(abs(float(token.replace(",", ""))))
        except ValueError:
            continue
    return values


def _decimals(written: str) -> int:
    return len(written.split(".")[1]) if "." in written else 0


def _matches(written: str, value: float, percent: bool, candidates: Iterable[float]) -> bool:
    digits = _decimals(written)
    tolerance = 0.5 * 10 ** -digits + 1e-9
    for candidate in candidates:
        if math.isclose(candidate, value) or abs(candidate - value) <= tolerance:
            return True
        if abs(candidate * 100 - value) <= tolerance:  # "20 %" and 0.2
            return True
        if not percent and abs(candidate / 100 - value) <= tolerance:  # 0.2 and 20 %
            return True
        if value >= 1000 and abs(candidate * 1000 - value) <= 1000 * tolerance:
            return True  # "1,000 ms" against 1.0 s
    return False


def _cell_text(cell: NotebookNode) -> str:
    parts = [cell.source]
    for output in cell.get("outputs", []):
        if "text" in output:
            parts.append(output["text"])
        data = output.get("data", {})
        for key in ("text/plain", "text/markdown", "text/html"):
            if key in data:
                parts.append(data[key])
    return "\n".join(parts)


def prose_problems(nb: NotebookNode) -> list[str]:
    """Numbers in prose that no nearby code cell shows (run on an executed notebook)."""
    cells: list[NotebookNode] = nb.cells
    code = [i for i, c in enumerate(cells) if c.cell_type == "code"]
    problems: list[str] = []
    for index, cell in enumerate(cells):
        if cell.cell_type != "markdown" or {"navigation", FOOTER_TAG} & set(_tags(cell)):
            continue
        numbers = prose_numbers(cell.source)
        if not numbers:
            continue
        before = [i for i in code if i < index][-WINDOW:]
        after = [i for i in code if i > index][:WINDOW]
        candidates = _values("\n".join(_cell_text(cells[i]) for i in before + after))
        missing = [written for written, value, percent in numbers
                   if not _matches(written, value, percent, candidates)]
        if missing:
            problems.append(f"cell {index}: prose numbers not shown by the code around it: "
                            f"{', '.join(missing)}")
    return problems


# --------------------------------------------------------------------------- main


def execute(nb: NotebookNode, path: Path) -> NotebookNode:
    """Run ``nb`` (read from ``path``) top to bottom in a fresh kernel."""
    try:
        from tools.execute import execute as run_in_kernel
    except ModuleNotFoundError:  # run as a script: tools/ itself is on sys.path
        from execute import execute as run_in_kernel  # type: ignore[no-redef]
    return run_in_kernel(nb, path.parent)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--execute", action="store_true",
                        help="also run each notebook and check the numbers in its prose")
    args = parser.parse_args(argv)
    failed = False
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        problems = shape_problems(nb)
        if args.execute:
            problems += prose_problems(execute(nb, path))
        for problem in problems:
            print(f"{path}: {problem}")
        failed = failed or bool(problems)
        if not problems:
            print(f"{path}: ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
