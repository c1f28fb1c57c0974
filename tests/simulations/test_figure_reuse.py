"""Every explorer draws the same picture on a lent figure as on a new one."""

from __future__ import annotations

import importlib
import inspect
import io
import pkgutil
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from typing import Any

import pytest

import simulations
from simulations.kit.widgets import Explorer, SteadyLayout


def _explorer_factories() -> Iterator[tuple[str, Callable[[], Explorer]]]:
    for module_info in pkgutil.iter_modules(simulations.__path__):
        if module_info.ispkg:
            continue
        module = importlib.import_module(f"simulations.{module_info.name}")
        for name, function in vars(module).items():
            if (inspect.isfunction(function) and function.__module__ == module.__name__
                    and inspect.signature(function).return_annotation in ("Explorer", Explorer)
                    and all(parameter.default is not parameter.empty for parameter
                            in inspect.signature(function).parameters.values())):
                yield f"{module_info.name}.{name}", function


FACTORIES = dict(_explorer_factories())
NOT_LENT = {
    "saga.saga_explorer",  # a figure legend, and a height that grows with the orders
}


def _moves(explorer: Explorer) -> Iterator[tuple[str, Any]]:
    """Each control to its ends (each option of a choice), then back, one at a time."""
    for name, control in explorer.controls.items():
        default = control.value
        options = getattr(control, "options", None)
        if options is not None:
            heavy = set(explorer.large_runs.get(name, ()))
            values = [option for option in options if option not in heavy]
        else:
            values = [control.max, control.min]
            if hasattr(control, "base"):
                values = [control.base**control.max, control.base**control.min]
        for value in [*values, default]:
            yield name, value


def test_every_explorer_is_found() -> None:
    assert len(FACTORIES) >= 30
    assert "cqrs.staleness_explorer" in FACTORIES
    assert "eventsourcing.concurrent_writers_explorer" in FACTORIES


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_a_lent_figure_draws_what_a_new_one_draws(name: str) -> None:
    with redirect_stdout(io.StringIO()):
        explorer = FACTORIES[name]()
    fresh_layout = SteadyLayout()
    assert explorer.image.value == fresh_layout.render(
        explorer.draw_function(**explorer.values()))
    for control, value in _moves(explorer):
        explorer.controls[control].value = value  # redrawn on a lent figure if it can be
        new = explorer.draw_function(**explorer.values())
        assert explorer.image.value == fresh_layout.render(new), f"{control} = {value!r}"
    if name in NOT_LENT:
        assert explorer.figure_pool.lent == 0
    else:  # every redraw after the first drew on the figure of the one before
        assert explorer.figure_pool.lent == explorer.redraws - 1
