"""Small helpers for the notebooks' sliders.

:class:`Explorer` wires controls to a drawing function: every change re-runs the model,
redraws the figure, and says how long that took, so a learner sees at once what a
parameter does (and a teacher sees if a slider is too slow).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure

_STYLE = {"description_width": "initial"}
_LAYOUT = widgets.Layout(width="320px")


def int_slider(
    description: str, value: int, low: int, high: int, step: int = 1
) -> widgets.IntSlider:
    """An integer slider that reports only when released."""
    return widgets.IntSlider(value=value, min=low, max=high, step=step, description=description,
                             continuous_update=False, style=_STYLE, layout=_LAYOUT)


def float_slider(
    description: str,
    value: float,
    low: float,
    high: float,
    step: float,
    readout_format: str = ".2f",
) -> widgets.FloatSlider:
    """A float slider that reports only when released."""
    return widgets.FloatSlider(value=value, min=low, max=high, step=step, description=description,
                               continuous_update=False, readout_format=readout_format,
                               style=_STYLE, layout=_LAYOUT)


def log_slider(
    description: str, value: float, low_exponent: float, high_exponent: float, step: float = 0.1,
    readout_format: str = ".3g",
) -> widgets.FloatLogSlider:
    """A slider over ``10**low_exponent .. 10**high_exponent`` on a log scale."""
    return widgets.FloatLogSlider(value=value, base=10, min=low_exponent, max=high_exponent,
                                  step=step, description=description, continuous_update=False,
                                  readout_format=readout_format, style=_STYLE, layout=_LAYOUT)


def choice(
    description: str, options: Sequence[str], value: str | None = None
) -> widgets.ToggleButtons:
    """A row of buttons to pick one option."""
    return widgets.ToggleButtons(options=list(options), value=value or options[0],
                                 description=description, style=_STYLE)


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for the length of one redraw.

    A model run allocates hundreds of thousands of small objects (events, records,
    generators); the collector then runs full passes over them, which can double the
    time a slider takes to answer. Reference counting still frees what is not in a
    cycle; the rest waits for the next collection after the redraw.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Explorer(widgets.VBox):  # type: ignore[misc]
    """Controls above a figure that ``draw(**values)`` redraws whenever a control changes.

    ``draw`` receives the controls' values as keyword arguments and returns a
    :class:`~matplotlib.figure.Figure`. The time of the last redraw (model run and
    drawing) is shown under the figure and kept in :attr:`last_seconds`.

    ``large_runs`` names control values that start a deliberately larger run (say, a
    10,000-node model one click away): the notebook says they take seconds, and the
    slider benchmark times them apart from the moves that must answer at once.
    """

    def __init__(
        self,
        draw: Callable[..., Figure],
        controls: Mapping[str, widgets.ValueWidget],
        *,
        columns: int = 2,
        large_runs: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        self.draw_function = draw
        self.controls = dict(controls)
        self.large_runs = {name: tuple(values) for name, values in (large_runs or {}).items()}
        for name, values in self.large_runs.items():
            options = getattr(self.controls.get(name), "options", None)
            if options is None or not set(values) <= set(options):
                raise ValueError(f"large_runs must name options of a choice control, "
                                 f"got {name!r}: {values!r}")
        self.output = widgets.Output()
        self.status = widgets.HTML()
        self.redraws = 0
        self.last_seconds = float("nan")
        self.last_figure: Figure | None = None
        items = list(self.controls.values())
        rows = [widgets.HBox(items[i:i + columns]) for i in range(0, len(items), columns)]
        super().__init__([*rows, self.output, self.status])
        for control in items:
            control.observe(self._on_change, names="value")
        self.redraw()

    def values(self) -> dict[str, Any]:
        """The controls' current values, by name."""
        return {name: control.value for name, control in self.controls.items()}

    def _on_change(self, _change: Any) -> None:
        self.redraw()

    def redraw(self) -> Figure:
        """Run the model with the current values and show the new figure."""
        started = time.perf_counter()
        with paused_gc():
            figure = self.draw_function(**self.values())
            with self.output:
                self.output.clear_output(wait=True)
                from IPython.display import display

                display(figure)
        self.last_seconds = time.perf_counter() - started
        self.last_figure = figure
        self.redraws += 1
        self.status.value = f"<small>redrawn in {self.last_seconds:.2f} s</small>"
        return figure
