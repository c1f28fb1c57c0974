"""Figures lent back to an explorer's draw function, emptied, instead of built anew.

An explorer redraws the same figure with new data on every slider move. Building the
figure (its axes, and the tick marks and labels matplotlib creates on the first draw) is a
fifth to a quarter of a move. Inside :meth:`FigurePool.lending`, :func:`~simulations.kit.\
plotting.subplots` hands back the figure of the same shape that the last move returned,
with its axes emptied to the state they were made in; the draw function fills it as it
would fill a new one, and the picture is the same, pixel for pixel (tested for every
explorer of the course).

Emptying removes what was drawn (lines, patches, collections, texts, legends), the titles
and axis labels, limits, margins, scales, locators and formatters, inversion, colour
cycles and unit converters (categories), the figure title, and puts the layout back.
A figure is lent again only if the draw function left the rest as it was made: the same
axes, no twin or inset axes, no changed tick parameters, spines, aspect or axis
visibility, no figure legends or other figure texts. A draw function that changes any of
that simply gets a new figure next time.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.text import Text

_LENDER: contextvars.ContextVar[FigurePool | None] = contextvars.ContextVar(
    "figure_pool", default=None)


def _template(text: Text) -> Text:
    """A detached copy of a text's looks (font, colour, alignment) and place."""
    copy = Text()
    copy.update_from(text)
    copy.set_position(text.get_position())
    return copy


def _restore(text: Text, template: Text) -> None:
    text.update_from(template)
    text.set_position(template.get_position())
    text.set_text("")


def _axis_state(axis: Axis) -> tuple[Any, ...]:
    """What a draw function may change on an axis that emptying does not undo."""
    kinds = []
    for kind in (axis._major_tick_kw, axis._minor_tick_kw):  # tick_params
        kinds.append({name: value for name, value in kind.items() if name != "gridOn"})
    return (*kinds,
            axis.get_visible(), axis.get_label_position(), axis.get_ticks_position(), axis.labelpad)


def _axes_state(axes: Axes) -> tuple[Any, ...]:
    return (_axis_state(axes.xaxis), _axis_state(axes.yaxis), axes.axison,
            axes.get_visible(), axes.get_aspect(), axes.get_axisbelow(),
            axes.get_facecolor(), axes.get_frame_on(), tuple(axes.child_axes),
            tuple((name, spine.get_visible()) for name, spine in axes.spines.items()))


@dataclass
class _Made:
    """A pooled figure and how it was made."""

    key: tuple[Any, ...]
    figure: Figure
    axes: Any  # what ``subplots`` returned: one Axes or an array of them
    all_axes: tuple[Axes, ...]
    layout_engine: Any
    subplot_params: dict[str, float]
    states: list[tuple[Any, ...]]
    texts: list[tuple[Text, Text]] = field(default_factory=list)

    def unchanged(self) -> bool:
        """Whether the draw function left the figure's structure as it was made."""
        figure = self.figure
        if tuple(figure.axes) != self.all_axes or figure.legends or figure.images:
            return False
        title = getattr(figure, "_suptitle", None)
        if [text for text in figure.texts if text is not title]:
            return False
        if any(getattr(figure, name, None) is not None for name in ("_supxlabel", "_supylabel")):
            return False
        return [_axes_state(axes) for axes in self.all_axes] == self.states

    def empty(self) -> None:
        """Back to the state it was made in (the ticks objects stay: that is the point)."""
        figure = self.figure
        title = getattr(figure, "_suptitle", None)
        if title is not None:
            title.remove()
            figure._suptitle = None  # matplotlib has no public way to drop the title
        figure.set_layout_engine(self.layout_engine)
        figure.subplotpars.update(**self.subplot_params)
        with mpl.rc_context(_style()):
            for axes in self.all_axes:
                for artist in [*axes.lines, *axes.patches, *axes.collections, *axes.texts,
                               *axes.images, *axes.tables, *axes.artists]:
                    artist.remove()
                legend = axes.get_legend()
                if legend is not None:
                    legend.remove()
                axes.containers.clear()
                axes.set_prop_cycle(None)  # colours start over, as on new axes
                axes.grid(False)  # the grid as the style has it (as Axes.clear does)
                axes.grid(mpl.rcParams["axes.grid"], which=mpl.rcParams["axes.grid.which"],
                          axis=mpl.rcParams["axes.grid.axis"])
                for axis in (axes.xaxis, axes.yaxis):
                    axis.set_inverted(False)
                    if axis.get_converter() is not None:  # categories, dates: forgotten
                        axis._converter = None  # as matplotlib's own Axis.clear does
                        axis._converter_is_explicit = False
                        axis.units = None
                # default locators and formatters (also undoes set_xticks, locator_params)
                axes.set_xscale("linear")
                axes.set_yscale("linear")
                axes.set_xmargin(mpl.rcParams["axes.xmargin"])
                axes.set_ymargin(mpl.rcParams["axes.ymargin"])
                axes.use_sticky_edges = True
                axes.set_autoscale_on(True)
                axes.ignore_existing_data_limits = True
                axes.relim()
            for text, template in self.texts:
                _restore(text, template)


def _style() -> dict[str, Any]:
    from simulations.kit.plotting import STYLE

    return STYLE


class FigurePool:
    """Lends an explorer's last figure back to its draw function (see the module)."""

    def __init__(self) -> None:
        self._idle: dict[tuple[Any, ...], _Made] = {}
        self._made: dict[int, _Made] = {}  # by id of figure, for this redraw
        self.lent = 0  # figures lent again
        self.refused = 0  # figures a draw function changed too much to be lent again

    @contextmanager
    def lending(self) -> Iterator[FigurePool]:
        """Within the block, ``subplots`` draws on this pool."""
        token = _LENDER.set(self)
        try:
            yield self
        finally:
            _LENDER.reset(token)

    def take(self, key: tuple[Any, ...]) -> tuple[Figure, Any] | None:
        """An idle figure of this shape, emptied, or ``None``."""
        made = self._idle.pop(key, None)
        if made is None:
            return None
        made.empty()
        self._made[id(made.figure)] = made
        self.lent += 1
        return made.figure, made.axes

    def made(self, key: tuple[Any, ...], figure: Figure, axes: Any) -> None:
        """Remember how a new figure was made, so it can be lent again."""
        all_axes = tuple(figure.axes)
        texts = []
        for one in all_axes:
            for text in (one.title, one._left_title, one._right_title,
                         one.xaxis.label, one.yaxis.label):
                texts.append((text, _template(text)))
        engine = figure.get_layout_engine()
        self._made[id(figure)] = _Made(
            key, figure, axes, all_axes, engine, dict(vars(figure.subplotpars)),
            [_axes_state(one) for one in all_axes], texts)

    def give_back(self, figure: Figure) -> None:
        """The figure a draw returned, now shown: idle until the next draw, if it is
        still as it was made. Every other figure of the draw is forgotten."""
        made = self._made.pop(id(figure), None)
        self._made.clear()
        if made is None:
            return
        if made.unchanged():
            self._idle[made.key] = made
        else:
            self.refused += 1


def current_pool() -> FigurePool | None:
    """The pool of the redraw in progress, if any."""
    return _LENDER.get()
