"""Build the course's generated parts from ``notebooks/sections.toml``.

``notebooks/sections.toml`` lists every section of the guide. From it this script
generates, idempotently:

* ``notebooks/00-index.ipynb``: a Markdown-only index of the course;
* the block between ``<!-- sections:start -->`` and ``<!-- sections:end -->`` in
  ``README.md``: the same list, with links relative to the repository root;
* the navigation cell (the first cell, tagged ``navigation``) of every section
  notebook that exists: index, previous and next *written* notebook;
* the closing navigation cell (the last cell, tagged ``navigation-footer``) of every
  section notebook and of the course's extra notebooks (the theory primer, the glossary):
  previous and next again, the index, and the extras;
* the learning path of the index: an order through the course (``learning_path`` in
  ``[course]``), with each notebook's prerequisites and time, and a setup check to run.

A section is "written" iff its notebook file exists.

Usage::

    python tools/build_course.py            # write what is stale
    python tools/build_course.py --check    # list what is stale, exit 1; change nothing
    python tools/build_course.py --root DIR # work on another copy of the repository
"""

from __future__ import annotations

import argparse
import posixpath
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

SECTIONS_FILE = "notebooks/sections.toml"
NOTEBOOKS_DIR = "notebooks"
INDEX_NAME = "00-index.ipynb"
README_NAME = "README.md"
START_MARKER = "<!-- sections:start -->"
END_MARKER = "<!-- sections:end -->"
NAV_TAG = "navigation"
NAV_CELL_ID = "navigation"
FOOTER_TAG = "navigation-footer"
FOOTER_CELL_ID = "navigation-footer"
COMING = "(coming)"

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python"}

_NUMBER_RE = re.compile(r"^[1-9][0-9]*(\.[1-9][0-9]*)?$")
_FOLDER_RE = re.compile(r"^[0-9]{2}-[a-z0-9]+(-[a-z0-9]+)*$")
_FILE_RE = re.compile(r"^(?P<number>[0-9.]+)-[a-z0-9]+(-[a-z0-9]+)*\.ipynb$")


class CourseError(Exception):
    """A problem in the inputs that the script cannot work around."""


@dataclass(frozen=True)
class Section:
    number: str
    title_zh: str
    title_en: str
    summary: str
    path: str  # relative to notebooks/, POSIX separators
    minutes: int | None = None  # time a learner needs, for the learning path
    requires: tuple[str, ...] = ()  # ids (section numbers or extras) to read first


@dataclass(frozen=True)
class Extra:
    """A course notebook outside the guide's sections (the theory primer, the glossary)."""

    id: str
    title: str
    summary: str
    path: str  # relative to notebooks/, at its top level
    minutes: int | None = None


@dataclass(frozen=True)
class Chapter:
    number: str
    title_zh: str
    title_en: str
    folder: str
    sections: tuple[Section, ...]


@dataclass(frozen=True)
class Course:
    title: str
    intro: str
    chapters: tuple[Chapter, ...]
    extras: tuple[Extra, ...] = ()
    learning_path: tuple[str, ...] = ()  # ids: section numbers and extra ids, in order

    @property
    def sections(self) -> tuple[Section, ...]:
        return tuple(s for c in self.chapters for s in c.sections)


# --------------------------------------------------------------------------- loading


def _text(table: dict[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise CourseError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    if "\n" in value.strip() and key != "intro":
        raise CourseError(f"{where}: {key!r} must be a single line, got {value!r}")
    return value.strip()


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise CourseError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def load_course(path: Path) -> Course:
    """Read and validate ``sections.toml``."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise CourseError(f"{path}: not found") from None
    except tomllib.TOMLDecodeError as e:
        raise CourseError(f"{path}: invalid TOML: {e}") from None

    _check_keys(data, {"course", "chapters", "extras"}, str(path))
    course_table = data.get("course")
    if not isinstance(course_table, dict):
        raise CourseError(f"{path}: missing [course] table")
    _check_keys(course_table, {"title", "intro", "learning_path"}, f"{path} [course]")
    title = _text(course_table, "title", f"{path} [course]")
    intro = _text(course_table, "intro", f"{path} [course]")

    chapter_tables = data.get("chapters")
    if not isinstance(chapter_tables, list) or not chapter_tables:
        raise CourseError(f"{path}: no [[chapters]]")

    chapters: list[Chapter] = []
    seen_numbers: set[str] = set()
    seen_paths: set[str] = set()
    for ct in chapter_tables:
        where = f"{path} chapter {ct.get('number', '?')!r}"
        _check_keys(ct, {"number", "title_zh", "title_en", "folder", "sections"}, where)
        number = _text(ct, "number", where)
        if not number.isdigit():
            raise CourseError(f"{where}: chapter number must be digits, got {number!r}")
        folder = _text(ct, "folder", where)
        if not _FOLDER_RE.match(folder) or not folder.startswith(f"{int(number):02d}-"):
            raise CourseError(
                f"{where}: folder must look like '{int(number):02d}-kebab-name', got {folder!r}"
            )
        section_tables = ct.get("sections")
        if not isinstance(section_tables, list) or not section_tables:
            raise CourseError(f"{where}: no [[chapters.sections]]")
        sections: list[Section] = []
        for st in section_tables:
            swhere = f"{path} section {st.get('number', '?')!r}"
            _check_keys(st, {"number", "title_zh", "title_en", "summary", "path",
                             "minutes", "requires"}, swhere)
            section = Section(
                number=_text(st, "number", swhere),
                title_zh=_text(st, "title_zh", swhere),
                title_en=_text(st, "title_en", swhere),
                summary=_text(st, "summary", swhere),
                path=_text(st, "path", swhere),
                minutes=_minutes(st, swhere),
                requires=_ids(st, "requires", swhere),
            )
            _validate_section(section, number, folder, swhere)
            if section.number in seen_numbers:
                raise CourseError(f"{swhere}: duplicate section number")
            if section.path in seen_paths:
                raise CourseError(f"{swhere}: duplicate path {section.path!r}")
            seen_numbers.add(section.number)
            seen_paths.add(section.path)
            sections.append(section)
        chapters.append(
            Chapter(
                number=number,
                title_zh=_text(ct, "title_zh", where),
                title_en=_text(ct, "title_en", where),
                folder=folder,
                sections=tuple(sections),
            )
        )

    extras = _load_extras(data.get("extras", []), str(path), seen_paths)
    course = Course(title=title, intro=intro, chapters=tuple(chapters), extras=extras,
                    learning_path=_ids(course_table, "learning_path", f"{path} [course]"))
    keys = [_sort_key(s.number) for s in course.sections]
    if keys != sorted(keys):
        raise CourseError(f"{path}: sections are not in the guide's order")
    _validate_learning_path(course, str(path))
    return course


def _minutes(table: dict[str, Any], where: str) -> int | None:
    value = table.get("minutes")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CourseError(f"{where}: 'minutes' must be a positive integer, got {value!r}")
    return value


def _ids(table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CourseError(f"{where}: {key!r} must be a list of ids, got {value!r}")
    return tuple(value)


def _load_extras(tables: Any, where: str, seen_paths: set[str]) -> tuple[Extra, ...]:
    if not isinstance(tables, list):
        raise CourseError(f"{where}: [[extras]] must be an array of tables")
    extras: list[Extra] = []
    for table in tables:
        ewhere = f"{where} extra {table.get('id', '?')!r}"
        _check_keys(table, {"id", "title", "summary", "path", "minutes"}, ewhere)
        extra = Extra(id=_text(table, "id", ewhere), title=_text(table, "title", ewhere),
                      summary=_text(table, "summary", ewhere),
                      path=_text(table, "path", ewhere), minutes=_minutes(table, ewhere))
        if not re.match(r"^[a-z][a-z-]*$", extra.id):
            raise CourseError(f"{ewhere}: id must be a lower-case word, got {extra.id!r}")
        if "/" in extra.path or not extra.path.endswith(".ipynb"):
            raise CourseError(f"{ewhere}: path must be a notebook at the top of notebooks/, "
                              f"got {extra.path!r}")
        if extra.path in seen_paths or extra.path == INDEX_NAME:
            raise CourseError(f"{ewhere}: duplicate path {extra.path!r}")
        seen_paths.add(extra.path)
        extras.append(extra)
    return tuple(extras)


def _validate_learning_path(course: Course, where: str) -> None:
    known = {s.number for s in course.sections} | {e.id for e in course.extras}
    for section in course.sections:
        unknown = sorted(set(section.requires) - known)
        if unknown:
            raise CourseError(f"{where} section {section.number!r}: requires unknown {unknown}")
    if not course.learning_path:
        return
    path = list(course.learning_path)
    duplicates = sorted({i for i in path if path.count(i) > 1})
    missing = sorted({s.number for s in course.sections} - set(path), key=str)
    unknown = sorted(set(path) - known)
    if duplicates or missing or unknown:
        raise CourseError(f"{where} [course] learning_path: every section exactly once, "
                          f"extras at most once; duplicated {duplicates}, missing {missing}, "
                          f"unknown {unknown}")
    position = {item: i for i, item in enumerate(path)}
    for section in course.sections:
        late = [r for r in section.requires if position[r] > position[section.number]]
        if late:
            raise CourseError(f"{where} [course] learning_path: {section.number} comes "
                              f"before what it requires: {late}")


def _sort_key(number: str) -> tuple[int, ...]:
    return tuple(int(part) for part in number.split("."))


def _validate_section(section: Section, chapter: str, folder: str, where: str) -> None:
    if not _NUMBER_RE.match(section.number):
        raise CourseError(f"{where}: number must look like '4.1', got {section.number!r}")
    if section.number.split(".")[0] != chapter:
        raise CourseError(f"{where}: number does not belong to chapter {chapter}")
    folder_part, _, name = section.path.rpartition("/")
    match = _FILE_RE.match(name)
    if folder_part != folder or match is None or match["number"] != section.number:
        raise CourseError(
            f"{where}: path must be '{folder}/{section.number}-kebab-title.ipynb', "
            f"got {section.path!r}"
        )
    if "|" in section.summary or "|" in section.title_en or "|" in section.title_zh:
        raise CourseError(f"{where}: titles and summary must not contain '|'")


# --------------------------------------------------------------------------- rendering


def section_label(section: Section) -> str:
    return f"{section.number} {section.title_en}"


def render_section_list(
    course: Course, written: set[str], link_prefix: str, heading: str
) -> list[str]:
    """One Markdown block per chapter: a heading and a table of its sections.

    ``link_prefix`` is prepended to each section's path (``""`` from ``notebooks/``,
    ``"notebooks/"`` from the repository root).
    """
    blocks: list[str] = []
    for chapter in course.chapters:
        lines = [
            f"{heading} {chapter.number} {chapter.title_zh} · {chapter.title_en}",
            "",
            "| § | 标题 | Notebook | What it shows |",
            "|---|---|---|---|",
        ]
        for s in chapter.sections:
            if s.path in written:
                notebook = f"[{s.title_en}]({link_prefix}{s.path})"
            else:
                notebook = f"{s.title_en} {COMING}"
            lines.append(f"| {s.number} | {s.title_zh} | {notebook} | {s.summary} |")
        blocks.append("\n".join(lines))
    return blocks


def markdown_cell(source: str, metadata: dict[str, Any], cell_id: str | None) -> NotebookNode:
    """A Markdown cell; ``cell_id`` None for notebooks older than nbformat 4.5 (no ids)."""
    cell: dict[str, Any] = {"cell_type": "markdown", "metadata": metadata, "source": source}
    if cell_id is not None:
        cell["id"] = cell_id
    node: NotebookNode = nbformat.from_dict(cell)  # type: ignore[no-untyped-call]
    return node


SETUP_CHECK = """\
# Run this cell first (Shift+Enter): it checks that everything the course needs is installed.
from simulations.kit.setup_check import check_setup

check_setup()"""


def code_cell(source: str, cell_id: str | None) -> NotebookNode:
    cell: dict[str, Any] = {"cell_type": "code", "metadata": {}, "source": source,
                            "execution_count": None, "outputs": []}
    if cell_id is not None:
        cell["id"] = cell_id
    node: NotebookNode = nbformat.from_dict(cell)  # type: ignore[no-untyped-call]
    return node


def _label(course: Course, item: str, written: set[str], link_prefix: str) -> str:
    """A Markdown link to a section or extra by id (plain text when not written yet)."""
    for extra in course.extras:
        if extra.id == item:
            return f"[{extra.title}]({link_prefix}{extra.path})"
    section = next(s for s in course.sections if s.number == item)
    if section.path in written:
        return f"[{section_label(section)}]({link_prefix}{section.path})"
    return f"{section_label(section)} {COMING}"


def render_learning_path(course: Course, written: set[str]) -> str:
    """The index's learning path: an order, what to read first, and the time each takes."""
    lines = [
        "## Learning path",
        "",
        "The guide's order is not the only one. This path starts with the theory the "
        "simulations are checked against, then the patterns that protect one call (retry, "
        "breaker, bulkhead, timeout, rate limit), then data flow, execution and control, "
        "then consistency across services, and ends with architecture. *Read first* lists "
        "what a notebook builds on; the time is for reading, running and one exercise.",
        "",
        "| Step | Notebook | Read first | Time |",
        "|---|---|---|---|",
    ]
    by_number = {s.number: s for s in course.sections}
    extras = {e.id: e for e in course.extras}
    total = 0
    for step, item in enumerate(course.learning_path, start=1):
        requires = by_number[item].requires if item in by_number else ()
        minutes = (by_number[item].minutes if item in by_number else extras[item].minutes)
        first = ", ".join(_label(course, r, written, "") for r in requires) or "—"
        time = f"{minutes} min" if minutes else "—"
        if minutes and (item in extras or by_number[item].path in written):
            total += minutes
        lines.append(f"| {step} | {_label(course, item, written, '')} | {first} | {time} |")
    lines += ["", f"The notebooks written so far take about {total / 60:.0f} hours in all."]
    return "\n".join(lines)


def render_extras(course: Course) -> str:
    lines = ["## Companions", "", "| Notebook | What it gives |", "|---|---|"]
    lines += [f"| [{e.title}]({e.path}) | {e.summary} |" for e in course.extras]
    return "\n".join(lines)


def build_index(course: Course, written: set[str]) -> NotebookNode:
    cells = [
        markdown_cell(f"# {course.title}\n\n{course.intro}", {}, "title"),
        markdown_cell("## Before you start\n\nRun the cell below. It lists what the course "
                      "needs and ends with **ready** when all of it is there; anything "
                      "missing is named with the command that installs it.", {}, "setup"),
        code_cell(SETUP_CHECK, "setup-check"),
    ]
    if course.learning_path:
        cells.append(markdown_cell(render_learning_path(course, written), {}, "learning-path"))
    if course.extras:
        cells.append(markdown_cell(render_extras(course), {}, "companions"))
    blocks = render_section_list(course, written, "", "##")
    for chapter, block in zip(course.chapters, blocks, strict=True):
        cells.append(markdown_cell(block, {}, f"chapter-{chapter.number}"))
    nb: NotebookNode = nbformat.from_dict(  # type: ignore[no-untyped-call]
        {
            "cells": cells,
            "metadata": {"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )
    return nb


def render_readme_block(course: Course, written: set[str]) -> str:
    return "\n\n".join(render_section_list(course, written, f"{NOTEBOOKS_DIR}/", "###"))


def _relative(target: str, source: str) -> str:
    """Link from the notebook at ``source`` to ``target`` (both relative to notebooks/)."""
    return posixpath.relpath(target, posixpath.dirname(source) or ".")


def nav_line(section: Section, previous: Section | None, following: Section | None) -> str:
    parts = [f"[Index]({_relative(INDEX_NAME, section.path)})"]
    if previous is not None:
        parts.append(f"← [{section_label(previous)}]({_relative(previous.path, section.path)})")
    if following is not None:
        parts.append(f"[{section_label(following)} →]({_relative(following.path, section.path)})")
    return " · ".join(parts)


def footer_line(course: Course, here: str, previous: Section | None,
                following: Section | None, written: set[str]) -> str:
    """The closing navigation of the notebook at ``here`` (relative to notebooks/)."""
    parts = []
    if following is not None:
        parts.append(f"**Next:** [{section_label(following)} →]"
                     f"({_relative(following.path, here)})")
    else:
        parts.append(f"**Next:** back to the [index and the learning path]"
                     f"({_relative(INDEX_NAME, here)})")
    if previous is not None:
        parts.append(f"← [{section_label(previous)}]({_relative(previous.path, here)})")
    parts.append(f"[Index]({_relative(INDEX_NAME, here)})")
    parts += [f"[{e.title}]({_relative(e.path, here)})" for e in course.extras
              if e.path != here and e.path in written]
    return "---\n\n" + " · ".join(parts)


def extra_nav_line(course: Course, extra: Extra, written: set[str]) -> str:
    parts = [f"[Index]({INDEX_NAME})"]
    parts += [f"[{e.title}]({e.path})" for e in course.extras
              if e.id != extra.id and e.path in written]
    return " · ".join(parts)


def dumps_notebook(nb: NotebookNode) -> str:
    """Serialise as nbformat does (indent 1, sorted keys), with a trailing newline."""
    text: str = nbformat.writes(nb, version=nbformat.NO_CONVERT)  # type: ignore[no-untyped-call]
    return text if text.endswith("\n") else text + "\n"


def read_notebook(path: Path) -> NotebookNode:
    try:
        with path.open(encoding="utf-8") as f:
            nb: NotebookNode = nbformat.read(f, as_version=nbformat.NO_CONVERT)  # type: ignore[no-untyped-call]
    except Exception as e:  # nbformat raises several unrelated types
        raise CourseError(f"{path}: cannot read notebook: {e}") from None
    if int(nb.nbformat) != 4:
        raise CourseError(f"{path}: nbformat {nb.nbformat} is not supported (need 4)")
    return nb


def _is_nav_cell(cell: NotebookNode) -> bool:
    tags = cell.get("metadata", {}).get("tags", [])
    return isinstance(tags, list) and NAV_TAG in tags


def _uses_ids(nb: NotebookNode) -> bool:
    return (int(nb.nbformat), int(nb.nbformat_minor)) >= (4, 5)


def apply_nav(nb: NotebookNode, line: str, where: str) -> bool:
    """Make the notebook's first cell the navigation cell; return whether it changed."""
    cells: list[NotebookNode] = nb.cells
    has_nav = bool(cells) and _is_nav_cell(cells[0])
    if _uses_ids(nb):
        others = cells[1:] if has_nav else cells
        if any(c.get("id") == NAV_CELL_ID for c in others):
            raise CourseError(
                f"{where}: a cell other than the first has the id {NAV_CELL_ID!r}, "
                "which the navigation cell needs"
            )
    wanted_id = NAV_CELL_ID if _uses_ids(nb) else None
    if not has_nav:
        cells.insert(0, markdown_cell(line, {"tags": [NAV_TAG]}, wanted_id))
        return True
    old = cells[0]
    if (
        old.cell_type == "markdown"
        and old.source == line
        and old.get("id") == wanted_id
        and not old.get("attachments")
    ):
        return False
    # Keep the cell's own metadata (extra tags, "editable", ...); replace the rest.
    cells[0] = markdown_cell(line, old.metadata, wanted_id)
    return True


def apply_footer(nb: NotebookNode, line: str, where: str) -> bool:
    """Make the notebook's last cell the closing navigation cell; return whether it changed."""
    cells: list[NotebookNode] = nb.cells
    tags_of_last = cells[-1].get("metadata", {}).get("tags", []) if cells else []
    has_footer = isinstance(tags_of_last, list) and FOOTER_TAG in tags_of_last
    if _uses_ids(nb):
        others = cells[:-1] if has_footer else cells
        if any(c.get("id") == FOOTER_CELL_ID for c in others):
            raise CourseError(f"{where}: a cell other than the last has the id "
                              f"{FOOTER_CELL_ID!r}, which the closing navigation cell needs")
    wanted_id = FOOTER_CELL_ID if _uses_ids(nb) else None
    if not has_footer:
        cells.append(markdown_cell(line, {"tags": [FOOTER_TAG]}, wanted_id))
        return True
    old = cells[-1]
    if old.cell_type == "markdown" and old.source == line and old.get("id") == wanted_id:
        return False
    cells[-1] = markdown_cell(line, old.metadata, wanted_id)
    return True


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Change:
    path: Path
    content: str
    reason: str


def written_sections(course: Course, notebooks: Path) -> list[Section]:
    return [s for s in course.sections if (notebooks / s.path).is_file()]


def unlisted_notebooks(course: Course, notebooks: Path) -> list[str]:
    listed = {s.path for s in course.sections} | {e.path for e in course.extras} | {INDEX_NAME}
    found = []
    for p in sorted(notebooks.rglob("*.ipynb")):
        rel = p.relative_to(notebooks).as_posix()
        if ".ipynb_checkpoints" in p.parts or rel in listed:
            continue
        found.append(rel)
    return found


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None


def replace_block(text: str, block: str, where: str) -> str:
    """Replace what lies between the marker lines of ``text`` with ``block``."""
    starts = list(re.finditer(rf"^{re.escape(START_MARKER)}[ \t]*\r?$", text, re.M))
    ends = list(re.finditer(rf"^{re.escape(END_MARKER)}[ \t]*\r?$", text, re.M))
    if len(starts) != 1 or len(ends) != 1 or ends[0].start() < starts[0].end():
        raise CourseError(
            f"{where}: needs exactly one line {START_MARKER!r} followed later by exactly "
            f"one line {END_MARKER!r}; the generated section list goes between them"
        )
    newline = "\r\n" if text[starts[0].start() : starts[0].end()].endswith("\r") else "\n"
    body = block.replace("\n", newline)
    start_end = starts[0].end() - (1 if newline == "\r\n" else 0)
    return text[:start_end] + newline + newline + body + newline + newline + text[ends[0].start() :]


def plan(root: Path, course: Course) -> list[Change]:
    """Everything that must be written to bring ``root`` up to date."""
    notebooks = root / NOTEBOOKS_DIR
    written = written_sections(course, notebooks)
    written_paths = {s.path for s in written} | {
        e.path for e in course.extras if (notebooks / e.path).is_file()}
    changes: list[Change] = []

    index_path = notebooks / INDEX_NAME
    index_text = dumps_notebook(build_index(course, written_paths))
    current = _read_text(index_path)
    if current != index_text:
        reason = "missing" if current is None else "out of date"
        changes.append(Change(index_path, index_text, f"index {reason}"))

    readme_path = root / README_NAME
    readme = _read_text(readme_path)
    if readme is None:
        raise CourseError(
            f"{readme_path}: not found; it must contain the marker lines "
            f"{START_MARKER!r} and {END_MARKER!r}"
        )
    new_readme = replace_block(readme, render_readme_block(course, written_paths), str(readme_path))
    if new_readme != readme:
        changes.append(Change(readme_path, new_readme, "section list out of date"))

    for i, section in enumerate(written):
        path = notebooks / section.path
        previous = written[i - 1] if i > 0 else None
        following = written[i + 1] if i + 1 < len(written) else None
        nb = read_notebook(path)
        nav = apply_nav(nb, nav_line(section, previous, following), str(path))
        footer = apply_footer(
            nb, footer_line(course, section.path, previous, following, written_paths),
            str(path))
        if nav or footer:
            changes.append(Change(path, dumps_notebook(nb), "navigation cells out of date"))
    for extra in course.extras:
        path = notebooks / extra.path
        if extra.path not in written_paths:
            continue
        nb = read_notebook(path)
        nav = apply_nav(nb, extra_nav_line(course, extra, written_paths), str(path))
        footer = apply_footer(nb, footer_line(course, extra.path, None, None, written_paths),
                              str(path))
        if nav or footer:
            changes.append(Change(path, dumps_notebook(nb), "navigation cells out of date"))
    return changes


# --------------------------------------------------------------------------- main


def default_root() -> Path:
    return Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Generate the course index, the README section list and the navigation "
        "cells from notebooks/sections.toml."
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="list what is stale and exit 1 if anything is; change nothing",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=default_root(),
        help="repository root (default: the parent of tools/)",
    )
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()

    try:
        course = load_course(root / SECTIONS_FILE)
        changes = plan(root, course)
    except CourseError as e:
        print(f"build_course: error: {e}", file=sys.stderr)
        return 1 if args.check else 2

    unlisted = unlisted_notebooks(course, root / NOTEBOOKS_DIR)
    for rel in unlisted:
        print(
            f"build_course: {NOTEBOOKS_DIR}/{rel} is not listed in {SECTIONS_FILE}",
            file=sys.stderr,
        )

    if args.check:
        for change in changes:
            print(f"stale: {change.path.relative_to(root).as_posix()}: {change.reason}")
        if changes or unlisted:
            print(
                "build_course: run `python tools/build_course.py` to regenerate",
                file=sys.stderr,
            )
            return 1
        print("build_course: up to date")
        return 0

    for change in changes:
        change.path.parent.mkdir(parents=True, exist_ok=True)
        with change.path.open("w", encoding="utf-8", newline="") as f:
            f.write(change.content)
        print(f"wrote {change.path.relative_to(root).as_posix()} ({change.reason})")
    if not changes:
        print("build_course: nothing to do")
    return 0


if __name__ == "__main__":
    sys.exit(main())
