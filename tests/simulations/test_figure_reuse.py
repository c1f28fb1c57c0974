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


def _line_explorer(draw: Callable[..., Any]) -> Explorer:
    from simulations.kit.widgets import int_slider

    return Explorer(draw, {"top": int_slider("top", 1, 1, 5)})


def _plain(top: int) -> Any:
    from simulations.kit.plotting import subplots

    fig, ax = subplots(width=4, height=3)
    ax.plot([0, 1], [0, top])
    ax.set_title(f"up to {top}")
    return fig


def test_a_draw_that_fails_on_a_lent_figure_leaves_the_next_move_a_new_one() -> None:
    failing = {"now": False}

    def draw(top: int) -> Any:
        fig = _plain(top)
        if failing["now"]:
            raise RuntimeError("the model failed half-way")
        return fig

    explorer = _line_explorer(draw)
    reference = SteadyLayout()  # fed the same figures, new ones
    reference.render(_plain(1))
    explorer.controls["top"].value = 2  # drawn on the lent figure
    assert explorer.figure_pool.lent == 1
    reference.render(_plain(2))
    failing["now"] = True
    with pytest.raises(RuntimeError):
        explorer.controls["top"].value = 3  # takes the figure, half fills it, fails
    failing["now"] = False
    explorer.controls["top"].value = 4
    assert explorer.figure_pool.lent == 2  # nothing idle after the failure: a new figure
    assert explorer.image.value == reference.render(_plain(4))


def test_a_figure_a_draw_changed_too_much_is_not_lent_again() -> None:
    def draw(top: int) -> Any:
        fig = _plain(top)
        twin = fig.axes[0].twinx()  # another axes: not as the figure was made
        twin.plot([0, 1], [top, 0], color="red")
        return fig

    explorer = _line_explorer(draw)
    reference = SteadyLayout()
    reference.render(draw(1))
    for top in (2, 3, 5):
        explorer.controls["top"].value = top
        assert explorer.image.value == reference.render(draw(top))
    assert explorer.figure_pool.lent == 0
    assert explorer.figure_pool.refused == explorer.redraws


def test_outside_an_explorer_every_figure_is_new() -> None:
    assert _plain(1) is not _plain(1)
