"""``help(patterns)`` is the map of the library, and it must not go stale (issue 11)."""

from __future__ import annotations

import pkgutil

import pytest

import patterns


def _public_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(patterns.__path__, prefix="patterns."):
        parts = info.name.split(".")
        if any(part.startswith("_") for part in parts):
            continue
        # Depth: patterns.x and patterns.x.y; deeper modules are described by their package.
        if len(parts) <= 3:
            names.append(info.name)
    return names


@pytest.mark.parametrize("module", _public_modules())
def test_the_package_docstring_names_every_public_module(module: str) -> None:
    doc = patterns.__doc__ or ""
    short = "~" + module  # Sphinx's short form, ``:mod:`~patterns.x.y```
    leaf = module.rsplit(".", 1)[-1]
    assert module in doc or (short in doc and leaf in doc), (
        f"help(patterns) does not say where {module} lives")


def test_the_package_docstring_names_no_module_that_does_not_exist() -> None:
    import re

    doc = patterns.__doc__ or ""
    named = set(re.findall(r"patterns(?:\.[a-z_]+)+", doc))
    existing = {info.name for info in pkgutil.walk_packages(patterns.__path__,
                                                            prefix="patterns.")}
    assert named <= existing, sorted(named - existing)
