"""One plot style for the whole course: readable in class, labelled with units."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from simulations.kit.reuse import current_pool

STYLE: dict[str, Any] = {
    "figure.figsize": (9.0, 4.0),
    "figure.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "font.size": 10,
}

PALETTE: dict[str, str] = {
    # jitter kinds (4.1)
    "none": "#d62728",
    "full": "#2ca02c",
    "equal": "#1f77b4",
    "decorrelated": "#9467bd",
    "guide": "#ff7f0e",
    # outcomes
    "success": "#2ca02c",
    "failure": "#d62728",
    "rejected": "#7f7f7f",
    "offered": "#7f7f7f",
    "theory": "#000000",
}


def color(name: str) -> str:
    """The course's colour for ``name`` (a jitter kind, an outcome), grey if unknown."""
    return PALETTE.get(name, "#7f7f7f")


def apply_style() -> None:
    """Set up a notebook: the course style, and figures shown inline as PNG.

    Notebooks call this once at the top. The course's figures are built without pyplot
    (see :func:`subplots`), so this also registers matplotlib's inline PNG formatter
    with IPython, which shows any returned :class:`~matplotlib.figure.Figure`.
    """
    mpl.rcParams.update(STYLE)
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is installed with the course
        return
    shell = get_ipython()
    if shell is not None:
        shell.run_line_magic("matplotlib", "inline")


@contextmanager
def styled() -> Iterator[None]:
    """Apply the course style inside a ``with`` block only."""
    with mpl.rc_context(STYLE):
        yield


def subplots(
    nrows: int = 1, ncols: int = 1, *, width: float = 9.0, height: float = 4.0, **kwargs: Any
) -> tuple[Figure, Any]:
    """A figure in the course style, without touching pyplot's global state.

    Figures made here are not registered with pyplot, so a notebook shows exactly the
    figures it returns and memory does not grow while sliders redraw. While an explorer
    redraws, the figure it showed last is lent back, emptied, when it has this shape
    (see :mod:`simulations.kit.reuse`).
    """
    return _figure(("grid", nrows, ncols), width, height, kwargs,
                   lambda fig: fig.subplots(nrows, ncols, squeeze=True, **kwargs))


def subplot_mosaic(
    layout: list[list[str]], *, width: float = 9.0, height: float = 4.0, **kwargs: Any
) -> tuple[Figure, dict[str, Axes]]:
    """Like :func:`subplots`, for axes spanning rows or columns: ``layout`` names the axes
    cell by cell (``[["top", "top"], ["left", "right"]]``); returns them by name."""
    return _figure(("mosaic", repr(layout)), width, height, kwargs,
                   lambda fig: fig.subplot_mosaic(layout, **kwargs))


def _figure(shape: tuple[Any, ...], width: float, height: float, kwargs: dict[str, Any],
            make_axes: Callable[[Figure], Any]) -> tuple[Figure, Any]:
    pool = current_pool()
    key = (*shape, float(width), float(height), repr(sorted(kwargs.items())))
    if pool is not None:
        lent = pool.take(key)
        if lent is not None:
            return lent
    with styled():
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = make_axes(fig)
    if pool is not None:
        pool.made(key, fig, axes)
    return fig, axes


def label(ax: Axes, *, title: str, xlabel: str, ylabel: str) -> Axes:
    """Set title and axis labels (with units: every axis says what it measures)."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def show(fig: Figure) -> None:
    """Display ``fig`` in a notebook (a no-op outside IPython)."""
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is installed with the course
        return
    display(fig)


__all__ = ["PALETTE", "STYLE", "apply_style", "color", "label", "plt", "show", "styled",
           "subplots"]
