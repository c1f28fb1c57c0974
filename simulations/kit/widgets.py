"""Small helpers for the notebooks' sliders.

:class:`Explorer` wires controls to a drawing function: every change re-runs the model,
redraws the figure, and says how long that took, so a learner sees at once what a
parameter does (and a teacher sees if a slider is too slow).
"""

from __future__ import annotations

import gc
import io
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import ipywidgets as widgets
import PIL.Image
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from simulations.kit.reuse import FigurePool

_STYLE = {"description_width": "initial"}


def _slider_layout(description: str) -> widgets.Layout:
    """Wide enough for the label and a usable track: a long label in a fixed width would
    squeeze the track to nothing (about 8 px a character of label, 220 px of track and
    readout, 340 px at least)."""
    return widgets.Layout(width=f"{max(340, 8 * len(description) + 220)}px")


def int_slider(
    description: str, value: int, low: int, high: int, step: int = 1
) -> widgets.IntSlider:
    """An integer slider that reports only when released."""
    return widgets.IntSlider(value=value, min=low, max=high, step=step, description=description,
                             continuous_update=False, style=_STYLE,
                             layout=_slider_layout(description))


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
                               style=_STYLE, layout=_slider_layout(description))


def log_slider(
    description: str, value: float, low_exponent: float, high_exponent: float, step: float = 0.1,
    readout_format: str = ".3g",
) -> widgets.FloatLogSlider:
    """A slider over ``10**low_exponent .. 10**high_exponent`` on a log scale."""
    return widgets.FloatLogSlider(value=value, base=10, min=low_exponent, max=high_exponent,
                                  step=step, description=description, continuous_update=False,
                                  readout_format=readout_format, style=_STYLE,
                                  layout=_slider_layout(description))


def choice(
    description: str, options: Sequence[str], value: str | None = None
) -> widgets.ToggleButtons:
    """A row of buttons to pick one option (each as wide as its label: none is cut)."""
    return widgets.ToggleButtons(options=list(options), value=value or options[0],
                                 description=description,
                                 style={**_STYLE, "button_width": "auto"})


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


def _draw(figure: Figure) -> FigureCanvasAgg:
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return canvas


def _encode(canvas: FigureCanvasAgg) -> bytes:
    width, height = canvas.get_width_height(physical=True)
    pixels = PIL.Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw",
                                  "RGBA", 0, 1)
    encoded = io.BytesIO()
    # Level 1 encodes several times faster than the default 6, for a file about 10 % larger.
    pixels.save(encoded, format="png", compress_level=1)
    return encoded.getvalue()


def render_png(figure: Figure) -> bytes:
    """The figure as PNG bytes, drawn once.

    ``savefig`` (and so the notebook's inline display, which also asks for a tight bounding
    box) draws a figure with a layout engine two or three times: once without rendering to
    lay it out, once to find the tight box, once for real. Drawing the Agg canvas runs the
    layout engine and renders in one pass; the pixels are then encoded as they are.
    """
    return _encode(_draw(figure))


def _suptitle(figure: Figure) -> Text | None:
    title: Text | None = getattr(figure, "_suptitle", None)  # matplotlib has no getter
    return title


def _drawn_reach(axes: Axes, renderer: Any) -> Bbox | None:
    """How far an axes that was just drawn reaches, in pixels: its frame, the tick labels
    inside its view, axis labels and offsets, titles, legend and texts.

    What ``axes.get_tightbbox(renderer, for_layout_only=True)`` measures for constrained
    layout, read off the drawn artists instead of computing the ticks and title positions
    again (that costs as much as a quarter of the drawing). Like the layout, it counts
    only the height of titles and axis labels along the axes (their width is free).
    """
    if not axes.get_visible():
        return None
    frame = axes.get_window_extent(renderer)
    boxes = [frame]
    for axis, along_x in ((axes.xaxis, True), (axes.yaxis, False)):
        if not axis.get_visible():
            continue
        low, high = sorted(axis.get_view_interval())
        slack = (high - low) * 1e-9
        for tick in [*axis.majorTicks, *axis.minorTicks]:
            if not low - slack <= tick.get_loc() <= high + slack:
                continue
            boxes += [label.get_window_extent(renderer) for label in (tick.label1, tick.label2)
                      if label.get_visible() and label.get_text()]
        for text in (axis.label, axis.offsetText):
            if text.get_visible() and text.get_text():
                box = text.get_window_extent(renderer)
                # a label along the axes may be wider than it: only its depth counts
                boxes.append(Bbox([[frame.x0, box.y0], [frame.x1, box.y1]]) if along_x
                             else Bbox([[box.x0, frame.y0], [box.x1, frame.y1]]))
    for title in (axes.title, axes._left_title, axes._right_title):
        if title.get_visible() and title.get_text():
            box = title.get_window_extent(renderer)
            boxes.append(Bbox([[frame.x0, box.y0], [frame.x1, box.y1]]))
    legend = axes.get_legend()
    if legend is not None and legend.get_visible():
        boxes.append(legend.get_window_extent(renderer))
    boxes += [text.get_window_extent(renderer) for text in axes.texts
              if text.get_visible() and text.get_in_layout() and text.get_text()]
    return Bbox.union(boxes)


class SteadyLayout:
    """Lays out an explorer's figures once and keeps that layout while it still fits.

    An explorer draws a new figure of the same shape for every move of a slider. Letting
    matplotlib's constrained layout place each one costs a third of the drawing, and it
    moves the axes whenever a tick label grows or shrinks, so the plot jumps under the
    learner's eyes. Here the first figure is laid out by its layout engine; the next ones of
    the same shape (size, grid of axes, title, figure legends) are drawn with the same axes
    positions, and then checked: if anything reaches further out than it did in the
    laid-out figure (a wider tick label, a longer axes title, a taller figure title, a
    bigger figure legend), that figure is laid out afresh and becomes the new reference.
    Labels that shrink leave a little room unused; nothing is ever cut off or overlapped.
    Figures without a layout engine are drawn as they are.

    A constrained layout is made with :attr:`HEADROOM_PX` more padding at the sides of
    every axes, and that room counts as the axes' reach (not a figure legend's): a tick
    label one or two digits wider (the common change when a slider moves, which would
    otherwise cost a second layout and draw) still fits. Only the width: titles and tick
    labels rarely grow taller.
    """

    TOLERANCE_PX = 1.0
    HEADROOM_PX = 14.0

    def __init__(self) -> None:
        self._shape: tuple[Any, ...] | None = None
        self._positions: list[Bbox] = []
        self._reach: list[tuple[Bbox | None, bool]] = []
        self._suptitle: tuple[float, float] | None = None
        self._canvas: FigureCanvasAgg | None = None
        self.layouts = 0  # figures laid out by their engine (the others kept the layout)

    @staticmethod
    def _shape_of(figure: Figure) -> tuple[Any, ...]:
        grids = []
        for axes in figure.axes:
            spec = axes.get_subplotspec()
            if spec is None:
                grids.append(None)
                continue
            grid = spec.get_gridspec()
            grids.append((spec.get_geometry(), tuple(grid.get_width_ratios() or ()),
                          tuple(grid.get_height_ratios() or ())))
        return (tuple(figure.get_size_inches()), figure.dpi, type(figure.get_layout_engine()),
                tuple(grids), _suptitle(figure) is not None, len(figure.legends))

    @staticmethod
    def _extents(figure: Figure, renderer: Any) -> list[tuple[Bbox | None, bool]]:
        """What the layout must make room for, each with whether only its height counts
        (a centred figure title may grow sideways freely)."""
        found: list[tuple[Bbox | None, bool]] = [
            (_drawn_reach(axes, renderer), False) for axes in figure.axes]
        found += [(legend.get_window_extent(renderer), False) for legend in figure.legends]
        title = _suptitle(figure)
        if title is not None:
            found.append((title.get_window_extent(renderer), True))
        return found

    def _draw(self, figure: Figure) -> FigureCanvasAgg:
        """Draw on one canvas kept from figure to figure: its renderer, and with it
        matplotlib's cache of text sizes (tick labels, titles), is reused while the
        figure's size stays the same."""
        canvas = self._canvas
        if canvas is None:
            canvas = self._canvas = FigureCanvasAgg(figure)
        else:
            canvas.figure = figure
            figure.set_canvas(canvas)
        canvas.draw()
        return canvas

    def _finish(self, figure: Figure, canvas: FigureCanvasAgg) -> bytes:
        """The PNG; then the figure gets a canvas of its own again, so that saving it
        later (``explorer.last_figure.savefig``) draws this figure, not the next one."""
        encoded = _encode(canvas)
        FigureCanvasAgg(figure)
        return encoded

    def _lay_out(self, figure: Figure, shape: tuple[Any, ...]) -> FigureCanvasAgg:
        engine = figure.get_layout_engine()
        headroom = 0.0
        if isinstance(engine, ConstrainedLayoutEngine):
            headroom = self.HEADROOM_PX
            settings = engine.get()
            padded = ConstrainedLayoutEngine(
                **{**settings, "w_pad": settings["w_pad"] + headroom / figure.dpi})
            figure.set_layout_engine(padded)
            try:
                canvas = self._draw(figure)
            finally:
                figure.set_layout_engine(engine)
        else:
            canvas = self._draw(figure)
        self._shape = shape
        self._positions = [axes.get_position(original=True) for axes in figure.axes]
        reach = self._extents(figure, canvas.get_renderer())
        # the headroom is the axes' own (the layout padded their sides), not the legends'
        for index, (box, height_only) in enumerate(reach[:len(figure.axes)]):
            if box is not None:
                reach[index] = (Bbox([[box.x0 - headroom, box.y0],
                                      [box.x1 + headroom, box.y1]]), height_only)
        self._reach = reach
        title = _suptitle(figure)
        self._suptitle = None if title is None else title.get_position()
        self.layouts += 1
        return canvas

    def _fits(self, now: list[tuple[Bbox | None, bool]]) -> bool:
        slack = self.TOLERANCE_PX
        for (box, _), (reach, height_only) in zip(now, self._reach, strict=True):
            if box is None or reach is None:
                continue
            if box.y0 < reach.y0 - slack or box.y1 > reach.y1 + slack:
                return False
            if not height_only and (box.x0 < reach.x0 - slack or box.x1 > reach.x1 + slack):
                return False
        return True

    def render(self, figure: Figure) -> bytes:
        """The figure as PNG bytes (drawn as :func:`render_png` draws), in the steady
        layout when it fits."""
        engine = figure.get_layout_engine()
        if engine is None:  # laid out by its maker
            return self._finish(figure, self._draw(figure))
        shape = self._shape_of(figure)
        if shape != self._shape:
            return self._finish(figure, self._lay_out(figure, shape))
        in_layout = [axes.get_in_layout() for axes in figure.axes]
        figure.set_layout_engine("none")
        for axes, position in zip(figure.axes, self._positions, strict=True):
            axes.set_position(position, which="both")  # (this takes it out of any layout)
        title = _suptitle(figure)
        if self._suptitle is not None and title is not None:
            title.set_position(self._suptitle)
        # Checked after the draw, from what was drawn. (A check before it costs about a
        # tenth of the draw on every move, to save a draw on the rare move that does not
        # fit the headroom.)
        canvas = self._draw(figure)
        kept = self._fits(self._extents(figure, canvas.get_renderer()))
        # The figure keeps its own layout engine: drawn again (saved, or updated and shown
        # again by an explorer that keeps one figure), it is laid out afresh.
        figure.set_layout_engine(engine)
        for axes, was_in_layout in zip(figure.axes, in_layout, strict=True):
            axes.set_in_layout(was_in_layout)
        if kept:
            return self._finish(figure, canvas)
        return self._finish(figure, self._lay_out(figure, shape))


class Explorer(widgets.VBox):  # type: ignore[misc]
    """Controls above a figure that ``draw(**values)`` redraws whenever a control changes.

    ``draw`` receives the controls' values as keyword arguments and returns a
    :class:`~matplotlib.figure.Figure`. The figure is shown as an image widget whose
    picture is replaced in place (no output is cleared, so the page does not jump), sent
    as binary PNG (no base64). The time of the last redraw (model run, drawing and PNG
    encoding) is shown under the figure and kept in :attr:`last_seconds`.

    Each redraw lends the figure of the last one back to ``draw`` (emptied, see
    :mod:`simulations.kit.reuse`) when ``draw`` asks :func:`~simulations.kit.plotting.\
subplots` for one of the same shape: it skips building axes and ticks. So
    :attr:`last_figure` is the figure now shown, and the next move redraws it; to keep one,
    save it (``explorer.last_figure.savefig(...)``) or keep :attr:`image`'s PNG bytes.

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
        # At most the width of the notebook: a figure never overflows a narrow window.
        self.image = widgets.Image(format="png",
                                   layout=widgets.Layout(max_width="100%", height="auto"))
        self.status = widgets.HTML()
        self.redraws = 0
        self.last_seconds = float("nan")
        self.last_figure: Figure | None = None
        self.steady_layout = SteadyLayout()
        self.figure_pool = FigurePool()
        items = list(self.controls.values())
        # rows wrap in a narrow window rather than overflow it
        rows = [widgets.HBox(items[i:i + columns], layout=widgets.Layout(flex_flow="row wrap"))
                for i in range(0, len(items), columns)]
        super().__init__([*rows, self.image, self.status])
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
            with self.figure_pool.lending():
                figure = self.draw_function(**self.values())
            self.image.value = self.steady_layout.render(figure)
            self.figure_pool.give_back(figure)
        self.last_seconds = time.perf_counter() - started
        self.last_figure = figure
        self.redraws += 1
        self.status.value = f"<small>redrawn in {self.last_seconds:.2f} s</small>"
        return figure
