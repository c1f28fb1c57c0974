"""Tests for tools/build_course.py: the index, the README section list and navigation cells."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "build_course.py"
START = "<!-- sections:start -->"
END = "<!-- sections:end -->"
README_HEAD = "# The course\n\nSome words the README author wrote.\n\n## Sections\n\n"
README_TAIL = "\n\n## Tests\n\nMore words, kept as they are.\n"

P41 = "04-fault-tolerance/4.1-retry-and-backoff.ipynb"
P42 = "04-fault-tolerance/4.2-circuit-breaker.ipynb"
P43 = "04-fault-tolerance/4.3-bulkhead-and-isolation.ipynb"
P51 = "05-consistency/5.1-distributed-locks.ipynb"


def _load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_course", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_course"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


build_course = _load_module()


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_cli(root: Path, *args: str) -> Result:
    """Run the script as a user would, in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(root), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def run(root: Path, *args: str) -> Result:
    """Run the script's main() in this process (importing nbformat takes a second)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = build_course.main(["--root", str(root), *args])
    return Result(code, out.getvalue(), err.getvalue())


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def fake_notebook(root: Path, rel: str, title: str) -> None:
    """A tiny section notebook with an output, an execution count and metadata to keep."""
    nb = new_notebook(
        cells=[
            new_markdown_cell(f"# {title}", id="title"),
            new_code_cell(
                "print(6 * 7)  # NBVAL_CHECK_OUTPUT",
                id="answer",
                execution_count=7,
                metadata={"tags": ["keep-me"]},
                outputs=[new_output("stream", name="stdout", text="42\n")],
            ),
        ],
        metadata={
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "custom": {"author": "someone"},
        },
    )
    path = root / "notebooks" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def first_cell_source(path: Path) -> str:
    return "".join(load_json(path)["cells"][0]["source"])


def readme_block(root: Path) -> str:
    text = (root / "README.md").read_text(encoding="utf-8")
    return text.split(START, 1)[1].split(END, 1)[0]


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A copy of the course skeleton: sections.toml, a README with markers, three notebooks."""
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "sections.toml", tmp_path / "notebooks" / "sections.toml")
    (tmp_path / "README.md").write_text(
        f"{README_HEAD}{START}\nwritten by hand, to be replaced\n{END}{README_TAIL}",
        encoding="utf-8",
    )
    fake_notebook(tmp_path, P41, "Retry")
    fake_notebook(tmp_path, P42, "Breaker")
    fake_notebook(tmp_path, P51, "Locks")
    return tmp_path


# --------------------------------------------------------------------------- the real repo


def test_real_repository_is_up_to_date() -> None:
    result = run_cli(ROOT, "--check")
    assert result.returncode == 0, (
        "generated course files are stale; run `python tools/build_course.py`\n"
        + result.stdout
        + result.stderr
    )


def test_sections_toml_lists_every_section_of_the_guide() -> None:
    course = build_course.load_course(ROOT / "notebooks" / "sections.toml")
    expected = [
        *(f"1.{i}" for i in range(1, 4)),
        *(f"2.{i}" for i in range(1, 5)),
        *(f"3.{i}" for i in range(1, 5)),
        *(f"4.{i}" for i in range(1, 6)),
        *(f"5.{i}" for i in range(1, 6)),
        *(f"6.{i}" for i in range(1, 6)),
        "7",
    ]
    assert [s.number for s in course.sections] == expected
    assert [c.folder for c in course.chapters] == [
        "01-data-flow",
        "02-execution-flow",
        "03-control-flow",
        "04-fault-tolerance",
        "05-consistency",
        "06-architecture",
        "07-best-practices",
    ]
    by_number = {s.number: s for s in course.sections}
    assert by_number["4.1"].title_zh == "重试与回退策略"
    assert by_number["4.1"].path == P41
    assert by_number["7"].title_zh == "总结与最佳实践"


# --------------------------------------------------------------------------- generation


def test_running_twice_is_byte_identical(course: Path) -> None:
    check = run_cli(course, "--check")
    assert check.returncode == 1
    assert "stale: notebooks/00-index.ipynb" in check.stdout
    first = run_cli(course)
    assert first.returncode == 0, first.stderr
    after_first = snapshot(course)
    second = run_cli(course)
    assert second.returncode == 0, second.stderr
    assert snapshot(course) == after_first
    assert "nothing to do" in second.stdout
    check = run_cli(course, "--check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_navigation_links_both_neighbours(course: Path) -> None:
    assert run(course).returncode == 0
    nb_dir = course / "notebooks"
    assert first_cell_source(nb_dir / P42) == (
        "[Index](../00-index.ipynb)"
        " · ← [4.1 Retry and back-off](4.1-retry-and-backoff.ipynb)"
        " · [5.1 Distributed locks →](../05-consistency/5.1-distributed-locks.ipynb)"
    )
    # The ends of the course so far have one neighbour each.
    assert first_cell_source(nb_dir / P41) == (
        "[Index](../00-index.ipynb) · [4.2 Circuit breaker →](4.2-circuit-breaker.ipynb)"
    )
    assert first_cell_source(nb_dir / P51) == (
        "[Index](../00-index.ipynb)"
        " · ← [4.2 Circuit breaker](../04-fault-tolerance/4.2-circuit-breaker.ipynb)"
    )
    cell = load_json(nb_dir / P42)["cells"][0]
    assert cell["cell_type"] == "markdown"
    assert cell["metadata"] == {"tags": ["navigation"]}
    assert cell["id"] == "navigation"


def test_navigation_keeps_the_rest_of_the_notebook(course: Path) -> None:
    path = course / "notebooks" / P42
    before = load_json(path)
    assert run(course).returncode == 0
    after = load_json(path)
    assert after["cells"][1:-1] == before["cells"]
    assert after["cells"][-1]["metadata"] == {"tags": ["navigation-footer"]}
    assert after["metadata"] == before["metadata"]
    assert after["cells"][2]["outputs"][0]["text"] == ["42\n"]
    assert after["cells"][2]["execution_count"] == 7
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert text.startswith('{\n "cells": [\n  {\n')  # nbformat's indent=1


def test_existing_navigation_cell_is_replaced_not_duplicated(course: Path) -> None:
    path = course / "notebooks" / P42
    nb = nbformat.read(path, as_version=4)
    stale = new_markdown_cell(
        "[Index](../00-index.ipynb) · [somewhere old](old.ipynb)",
        id="navigation",
        metadata={"tags": ["navigation", "extra"], "editable": False},
    )
    nb.cells.insert(0, stale)
    nbformat.write(nb, path)
    assert run(course).returncode == 0
    cells = load_json(path)["cells"]
    assert sum("navigation" in c["metadata"].get("tags", []) for c in cells) == 1
    assert "4.1 Retry and back-off" in "".join(cells[0]["source"])
    assert cells[0]["metadata"] == {"tags": ["navigation", "extra"], "editable": False}
    assert len(cells) == 4  # navigation, the two cells, the closing navigation


def test_notebook_left_alone_when_navigation_is_current(course: Path) -> None:
    assert run(course).returncode == 0
    path = course / "notebooks" / P41
    # Same content, other formatting: a generator that rewrote it would change the bytes.
    path.write_text(json.dumps(load_json(path), indent=2), encoding="utf-8")
    before = path.read_bytes()
    result = run(course)
    assert result.returncode == 0
    assert path.read_bytes() == before
    assert P41 not in result.stdout


def test_old_notebook_without_cell_ids_gets_no_id(course: Path) -> None:
    path = course / "notebooks" / P41
    raw = load_json(path)
    raw["nbformat_minor"] = 4
    for cell in raw["cells"]:
        del cell["id"]
    path.write_text(json.dumps(raw, indent=1) + "\n", encoding="utf-8")
    assert run(course).returncode == 0
    after = load_json(path)
    assert "id" not in after["cells"][0]
    assert after["cells"][0]["metadata"] == {"tags": ["navigation"]}
    nbformat.validate(nbformat.reads(path.read_text(encoding="utf-8"), as_version=4))


def test_index_links_written_sections_and_marks_the_others_coming(course: Path) -> None:
    assert run(course).returncode == 0
    index_path = course / "notebooks" / "00-index.ipynb"
    index = load_json(index_path)
    assert index["nbformat"] == 4
    assert index["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in index["cells"] if c["cell_type"] == "code"]
    assert len(code) == 1
    assert "check_setup()" in "".join(code[0]["source"])
    nbformat.validate(nbformat.reads(index_path.read_text(encoding="utf-8"), as_version=4))
    text = "\n".join("".join(c["source"]) for c in index["cells"])
    assert "Shift+Enter" in text
    assert "## 4 容错模式 · Fault tolerance" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    written = {P41, P42, P51}
    course_def = build_course.load_course(course / "notebooks" / "sections.toml")
    for section in course_def.sections:
        row = rows[section.number]
        assert section.title_zh in row
        assert section.summary in row
        if section.path in written:
            assert f"[{section.title_en}]({section.path})" in row
            assert "(coming)" not in row
        else:
            assert f"{section.title_en} (coming)" in row
            assert "](" not in row


def test_readme_block_is_replaced_and_the_rest_kept(course: Path) -> None:
    assert run(course).returncode == 0
    text = (course / "README.md").read_text(encoding="utf-8")
    assert text.startswith(README_HEAD + START + "\n")
    assert text.endswith("\n" + END + README_TAIL)
    block = readme_block(course)
    assert "written by hand" not in block
    assert f"[Retry and back-off](notebooks/{P41})" in block
    assert "| 4.3 | 舱壁与隔离模式 | Bulkheads and isolation (coming) |" in block
    assert "### 7 总结与最佳实践 · Best practices" in block


# --------------------------------------------------------------------------- --check


def test_check_fails_after_a_notebook_is_added_and_changes_nothing(course: Path) -> None:
    assert run(course).returncode == 0
    fake_notebook(course, P43, "Bulkheads")
    before = snapshot(course)
    result = run(course, "--check")
    assert result.returncode == 1
    assert snapshot(course) == before
    for stale in ("notebooks/00-index.ipynb", "README.md", P42, P43, P51):
        assert stale in result.stdout
    assert P41 not in result.stdout  # its neighbour did not change
    assert run(course).returncode == 0
    assert "[4.3 Bulkheads and isolation →](4.3-bulkhead-and-isolation.ipynb)" in (
        first_cell_source(course / "notebooks" / P42)
    )
    assert run(course, "--check").returncode == 0


def test_check_fails_after_the_readme_block_is_edited_by_hand(course: Path) -> None:
    assert run(course).returncode == 0
    readme = course / "README.md"
    generated = readme.read_text(encoding="utf-8")
    readme.write_text(generated.replace("Circuit breaker", "Circuit-breaker"), encoding="utf-8")
    result = run(course, "--check")
    assert result.returncode == 1
    assert "README.md" in result.stdout
    assert run(course).returncode == 0
    assert readme.read_text(encoding="utf-8") == generated


def test_check_fails_on_a_notebook_missing_from_sections_toml(course: Path) -> None:
    assert run(course).returncode == 0
    fake_notebook(course, "04-fault-tolerance/4.2-breaker-draft.ipynb", "Draft")
    result = run(course, "--check")
    assert result.returncode == 1
    assert "4.2-breaker-draft.ipynb is not listed" in result.stderr


@pytest.mark.parametrize(
    "readme",
    [None, "# No markers here\n", f"{END}\nreversed\n{START}\n", f"{START}\n{START}\n{END}\n"],
    ids=["missing", "no-markers", "reversed", "duplicated"],
)
def test_write_fails_clearly_without_readme_markers(course: Path, readme: str | None) -> None:
    path = course / "README.md"
    if readme is None:
        path.unlink()
    else:
        path.write_text(readme, encoding="utf-8")
    before = snapshot(course)
    result = run(course)
    assert result.returncode != 0
    assert START in result.stderr
    assert END in result.stderr
    assert snapshot(course) == before  # nothing half-written
    assert run(course, "--check").returncode == 1


def test_bad_sections_toml_is_reported(course: Path) -> None:
    toml = course / "notebooks" / "sections.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8").replace(f'path = "{P42}"', 'path = "4.2-breaker.ipynb"'),
        encoding="utf-8",
    )
    result = run(course)
    assert result.returncode != 0
    assert "section '4.2'" in result.stderr
    assert "4.2-breaker.ipynb" in result.stderr


# --------------------------------------------------------------------------- closing navigation


def last_cell(path: Path) -> dict[str, Any]:
    cell: dict[str, Any] = load_json(path)["cells"][-1]
    return cell


def test_closing_navigation_names_next_previous_and_index(course: Path) -> None:
    assert run(course).returncode == 0
    nb_dir = course / "notebooks"
    footer = last_cell(nb_dir / P42)
    assert footer["metadata"] == {"tags": ["navigation-footer"]}
    assert footer["id"] == "navigation-footer"
    source = "".join(footer["source"])
    assert "**Next:** [5.1 Distributed locks →](../05-consistency/5.1-distributed-locks.ipynb)" in (
        source)
    assert "← [4.1 Retry and back-off](4.1-retry-and-backoff.ipynb)" in source
    assert "[Index](../00-index.ipynb)" in source
    # The last written section is no dead end: it leads back to the learning path.
    assert "**Next:** back to the [index and the learning path](../00-index.ipynb)" in (
        "".join(last_cell(nb_dir / P51)["source"]))


def test_closing_navigation_is_replaced_not_duplicated(course: Path) -> None:
    assert run(course).returncode == 0
    path = course / "notebooks" / P41
    nb = nbformat.read(path, as_version=4)
    nb.cells[-1].source = "stale"
    nbformat.write(nb, path)
    assert run(course, "--check").returncode == 1
    assert run(course).returncode == 0
    cells = load_json(path)["cells"]
    assert sum("navigation-footer" in c["metadata"].get("tags", []) for c in cells) == 1
    assert "stale" not in "".join(cells[-1]["source"])


def test_extras_get_navigation_and_are_linked_once_written(course: Path) -> None:
    assert run(course).returncode == 0
    nb_dir = course / "notebooks"
    assert "00-theory-primer.ipynb" not in "".join(last_cell(nb_dir / P42)["source"])
    primer = nb_dir / "00-theory-primer.ipynb"
    nbformat.write(new_notebook(cells=[new_markdown_cell("# Primer", id="title")]), primer)
    assert run(course, "--check").returncode == 1  # the footers now lack the primer
    assert run(course).returncode == 0
    assert "[Theory primer](../00-theory-primer.ipynb)" in "".join(
        last_cell(nb_dir / P42)["source"])
    cells = load_json(primer)["cells"]
    assert "".join(cells[0]["source"]).startswith("[Index](00-index.ipynb)")
    assert "navigation-footer" in cells[-1]["metadata"]["tags"]
    assert run(course, "--check").returncode == 0


# --------------------------------------------------------------------------- learning path


def test_learning_path_lists_every_section_in_order_with_prerequisites(course: Path) -> None:
    assert run(course).returncode == 0
    index = load_json(course / "notebooks" / "00-index.ipynb")
    cell = next(c for c in index["cells"] if c.get("id") == "learning-path")
    rows = [line for line in "".join(cell["source"]).splitlines() if line.startswith("| ")]
    course_def = build_course.load_course(course / "notebooks" / "sections.toml")
    assert len(rows) - 1 == len(course_def.learning_path)  # one header row
    by_step = {int(r.split("|")[1]): r for r in rows[1:]}
    for step, item in enumerate(course_def.learning_path, start=1):
        row = by_step[step]
        if item == "primer":
            assert "Theory primer" in row
            continue
        section = next(s for s in course_def.sections if s.number == item)
        assert f"{section.number} {section.title_en}" in row
        assert f"{section.minutes} min" in row
        if section.path == P42:  # written, and requires 4.1 (written): both linked
            assert "[4.1 Retry and back-off](04-fault-tolerance/4.1-retry-and-backoff.ipynb)" in (
                row.split("|")[3])
        if section.number == "4.3":  # not written yet
            assert "4.3 Bulkheads and isolation (coming)" in row


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('"4.2", "4.3"', '"4.3"', 1), "missing ['4.2']"),
        (lambda t: t.replace('"4.2", "4.3"', '"4.2", "4.2", "4.3"', 1), "duplicated ['4.2']"),
        (lambda t: t.replace('"4.2", "4.3"', '"4.2", "9.9", "4.3"', 1), "unknown ['9.9']"),
        (lambda t: t.replace('requires = ["4.1"]', 'requires = ["nowhere"]', 1),
         "requires unknown ['nowhere']"),
        (lambda t: t.replace('requires = ["4.1"]', 'requires = ["5.1"]', 1),
         "before what it requires: ['5.1']"),
        (lambda t: t.replace("minutes = 40", "minutes = 0", 1), "positive integer, got 0"),
    ],
    ids=["missing", "duplicated", "unknown", "unknown-requirement", "late-requirement",
         "zero-minutes"],
)
def test_bad_learning_path_is_reported(course: Path, edit: Any, message: str) -> None:
    toml = course / "notebooks" / "sections.toml"
    edited = edit(toml.read_text(encoding="utf-8"))
    assert edited != toml.read_text(encoding="utf-8")
    toml.write_text(edited, encoding="utf-8")
    result = run(course)
    assert result.returncode != 0
    assert message in result.stderr
