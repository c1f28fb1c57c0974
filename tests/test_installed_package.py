"""The package as a user gets it after the README's install (issue 11).

A user's own module, outside this repository, must import ``patterns`` and type-check
against it with ``mypy --strict``: an editable install that hides the package behind an
import hook (setuptools' default for a flat layout) leaves type checkers blind, and the
library then looks untyped (every call ``Any``). ``pyproject.toml`` maps the packages to
the project root (``package-dir = {"" = "."}``) so that the editable install is a plain
path entry that every tool sees.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import patterns

USER_MODULE = textwrap.dedent("""
    from patterns.resilience.breaker import CircuitBreaker
    from patterns.resilience.retry import RetryPolicy, StopAfterAttempts

    breaker = CircuitBreaker()
    retry = RetryPolicy(stop=StopAfterAttempts(3))


    def answer() -> int:
        return breaker.call(lambda: 42)


    wrong: str = answer()
""")


def test_a_users_module_type_checks_against_the_installed_package(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(USER_MODULE)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "app.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    output = result.stdout + result.stderr
    assert "import-not-found" not in output, output
    assert "import-untyped" not in output, output
    # The types reach the user's code: the one deliberate mistake is found, and only it.
    assert 'app.py:13: error: Incompatible types in assignment (expression has type "int", '\
        'variable has type "str")' in output, output
    assert "Found 1 error in 1 file" in output, output


def test_the_package_is_marked_typed() -> None:
    assert (Path(patterns.__file__).parent / "py.typed").is_file()
