"""The README's Python examples run as written (a stale example is the first thing a new
user meets)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_each_python_example_runs(index: int) -> None:
    namespace: dict[str, object] = {"__name__": f"readme_example_{index}"}
    exec(compile(BLOCKS[index], f"README.md example {index}", "exec"), namespace)


def test_the_guard_example_keeps_an_async_function_async() -> None:
    (block,) = [b for b in BLOCKS if "Guard(" in b]
    namespace: dict[str, object] = {"__name__": "readme_guard"}
    exec(compile(block, "README.md guard example", "exec"), namespace)
    assert inspect.iscoroutinefunction(namespace["reserve"])
