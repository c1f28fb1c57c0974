"""The widget helpers: an Explorer redraws when a control changes."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from simulations.kit.plotting import subplots
from simulations.kit.widgets import Explorer, choice, float_slider, int_slider, log_slider


def test_explorer_redraws_with_the_new_values() -> None:
    calls: list[dict[str, object]] = []

    def draw(n: int, rate: float, kind: str) -> Figure:
        calls.append({"n": n, "rate": rate, "kind": kind})
        fig, ax = subplots()
        ax.plot(range(n))
        return fig

    controls = {
        "n": int_slider("n", 3, 1, 10),
        "rate": float_slider("rate", 0.5, 0.0, 1.0, 0.1),
        "kind": choice("kind", ["a", "b"]),
    }
    explorer = Explorer(draw, controls)
    assert explorer.redraws == 1
    assert calls[-1] == {"n": 3, "rate": 0.5, "kind": "a"}
    controls["n"].value = 7
    controls["kind"].value = "b"
    assert explorer.redraws == 3
    assert calls[-1] == {"n": 7, "rate": 0.5, "kind": "b"}
    assert explorer.last_figure is not None
    assert len(explorer.last_figure.axes[0].lines[0].get_xdata()) == 7
    assert explorer.last_seconds >= 0
    assert "redrawn in" in explorer.status.value


def test_sliders_report_only_on_release() -> None:
    assert int_slider("a", 1, 0, 2).continuous_update is False
    assert float_slider("b", 0.1, 0, 1, 0.1).continuous_update is False
    slider = log_slider("c", 10.0, 0, 3)
    assert slider.continuous_update is False
    assert slider.value == 10.0


def test_large_runs_must_name_options_of_a_choice() -> None:
    def draw(size: str, rate: float) -> Figure:
        return subplots()[0]

    controls = {"size": choice("size", ["small", "huge"]),
                "rate": float_slider("r", 0.5, 0, 1, 0.1)}
    explorer = Explorer(draw, controls, large_runs={"size": ["huge"]})
    assert explorer.large_runs == {"size": ("huge",)}
    with pytest.raises(ValueError, match="large_runs"):
        Explorer(draw, controls, large_runs={"size": ["gigantic"]})
    with pytest.raises(ValueError, match="large_runs"):
        Explorer(draw, controls, large_runs={"rate": [1.0]})


def _two_panels(top: float, title: str = "a panel") -> Figure:
    fig, axes = subplots(1, 2, width=6, height=3)
    for ax in axes:
        ax.plot([0, 1], [0, top])
        ax.set_title(title)
        ax.set_ylabel("value (units)")
    fig.suptitle("two panels")
    return fig


def _fresh(fig: Figure) -> bytes:
    from simulations.kit.widgets import render_png

    return render_png(fig)


def _with_headroom(fig: Figure) -> Figure:
    """``fig`` with the side padding a steady layout adds for its headroom."""
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    from simulations.kit.widgets import SteadyLayout

    settings = fig.get_layout_engine().get()
    fig.set_layout_engine(ConstrainedLayoutEngine(
        **{**settings, "w_pad": settings["w_pad"] + SteadyLayout.HEADROOM_PX / fig.dpi}))
    return fig


def test_a_steady_layout_draws_what_a_fresh_layout_with_headroom_draws() -> None:
    from simulations.kit.widgets import SteadyLayout

    steady = SteadyLayout()
    first = steady.render(_two_panels(1.0))
    again = steady.render(_two_panels(1.0))
    assert steady.layouts == 1  # the second figure kept the first one's layout
    assert again == first == _fresh(_with_headroom(_two_panels(1.0)))
    assert first != _fresh(_two_panels(1.0))  # (the headroom is there)


def _reaches_apart(fig: Figure) -> None:
    """Every axes with its labels inside the picture, none overlapping another."""
    renderer = fig.canvas.get_renderer()
    boxes = [ax.get_tightbbox(renderer) for ax in fig.axes]
    inside = fig.bbox.padded(1)
    for index, box in enumerate(boxes):
        assert inside.x0 <= box.x0
        assert box.x1 <= inside.x1
        assert inside.y0 <= box.y0
        assert box.y1 <= inside.y1
        for other in boxes[index + 1:]:
            assert not box.overlaps(other)


def test_a_tick_label_one_digit_wider_fits_the_headroom() -> None:
    from simulations.kit.widgets import SteadyLayout

    steady = SteadyLayout()
    first = _two_panels(1.0)  # y tick labels like 0.8
    steady.render(first)
    wider = _two_panels(-1.0)  # -0.8: one character wider
    steady.render(wider)
    assert steady.layouts == 1
    assert [a.get_position().bounds for a in wider.axes] == [
        a.get_position().bounds for a in first.axes]
    _reaches_apart(wider)


def test_a_steady_layout_keeps_the_axes_in_place_when_labels_shrink() -> None:
    from simulations.kit.widgets import SteadyLayout

    steady = SteadyLayout()
    wide = _two_panels(100_000.0)
    steady.render(wide)
    narrow = _two_panels(1.0)
    steady.render(narrow)
    assert steady.layouts == 1
    assert [a.get_position().bounds for a in narrow.axes] == [
        a.get_position().bounds for a in wide.axes]


def test_a_steady_layout_lays_out_again_when_something_grows() -> None:
    from simulations.kit.widgets import SteadyLayout

    steady = SteadyLayout()
    steady.render(_two_panels(1.0))
    wider = _two_panels(100_000.0)  # wider tick labels on the y axes
    steady.render(wider)
    assert steady.layouts == 2
    fresh = _with_headroom(_two_panels(100_000.0))
    _fresh(fresh)
    for mine, theirs in zip(wider.axes, fresh.axes, strict=True):  # as a fresh layout
        assert mine.get_position().bounds == pytest.approx(theirs.get_position().bounds,
                                                           abs=1e-3)
    longer = _two_panels(100_000.0, title="a panel\nwith a second line")  # a taller title
    steady.render(longer)
    assert steady.layouts == 3
    renderer = longer.canvas.get_renderer()
    inside = longer.bbox.padded(1)
    for ax in longer.axes:  # nothing of a laid-out figure leaves the picture
        box = ax.get_tightbbox(renderer)
        assert inside.x0 <= box.x0
        assert box.x1 <= inside.x1


def test_a_steady_layout_lays_out_a_figure_of_another_shape() -> None:
    from simulations.kit.widgets import SteadyLayout

    steady = SteadyLayout()
    steady.render(_two_panels(1.0))
    one, ax = subplots(width=6, height=3)
    ax.plot([0, 1], [0, 1])
    assert steady.render(one) == _fresh(_with_headroom(_one_panel()))
    assert steady.layouts == 2


def _one_panel() -> Figure:
    fig, ax = subplots(width=6, height=3)
    ax.plot([0, 1], [0, 1])
    return fig


def test_an_explorer_shows_its_figure_as_png_bytes() -> None:
    explorer = Explorer(lambda n: _two_panels(float(n)), {"n": int_slider("n", 1, 1, 5)})
    assert explorer.image.format == "png"
    assert bytes(explorer.image.value).startswith(b"\x89PNG\r\n\x1a\n")
    first = explorer.image.value
    explorer.controls["n"].value = 5
    assert explorer.image.value != first


def test_the_drawn_reach_is_what_constrained_layout_measures() -> None:
    from simulations.kit.widgets import _draw, _drawn_reach

    fig, (lines, bars, logs) = subplots(1, 3, width=9, height=3)
    lines.plot([0, 1, 2], [0, 10_000, 5], label="a line")
    lines.legend(loc="upper left", bbox_to_anchor=(0.0, 1.3))  # reaching above the axes
    lines.set_title("lines")
    lines.set_xlabel("time (s)")
    bars.bar(["a", "b"], [1.0, 2.5])
    bars.bar_label(bars.containers[0], labels=["one", "two and a half"])
    bars.annotate("far note", (1, 2.5), xytext=(40, 30), textcoords="offset points")
    logs.semilogy([1, 2, 3], [1e-3, 1.0, 1e3])
    logs.set_ylabel("events (log)")
    logs.yaxis.tick_right()
    renderer = _draw(fig).get_renderer()
    for ax in fig.axes:
        mine = _drawn_reach(ax, renderer)
        theirs = ax.get_tightbbox(renderer, for_layout_only=True)
        assert mine is not None
        assert mine.extents == pytest.approx(theirs.extents, abs=1.0)


def test_a_figure_drawn_on_the_shared_canvas_still_saves_itself() -> None:
    from simulations.kit.widgets import SteadyLayout, _encode

    steady = SteadyLayout()
    first, second, third = _two_panels(1.0), _two_panels(2.0), _two_panels(3.0)
    steady.render(first)
    steady.render(second)  # in the kept layout
    steady.render(third)
    assert second.canvas is not third.canvas
    assert second.canvas.figure is second  # saving it draws it, not the next figure
    second.canvas.draw()
    assert _encode(second.canvas).startswith(b"\x89PNG")


def test_an_explorer_may_update_one_figure_instead_of_drawing_new_ones() -> None:
    from simulations.kit.widgets import render_png

    fig, ax = subplots(width=6, height=3)
    (line,) = ax.plot([0, 1, 2], [0, 1, 2])
    ax.set_ylabel("value (units)")

    def update(top: int) -> Figure:  # the same figure each time, its artists updated
        line.set_ydata([0, top / 2, top])
        ax.relim()
        ax.autoscale_view()
        return fig

    explorer = Explorer(update, {"top": int_slider("top", 2, 1, 100_000, 1)})
    for top in (5, 100_000, 3):
        explorer.controls["top"].value = top
        fresh, fresh_ax = subplots(width=6, height=3)
        fresh_ax.plot([0, 1, 2], [0, top / 2, top])
        fresh_ax.set_ylabel("value (units)")
        render_png(fresh)
        assert explorer.last_figure is fig
        assert ax.get_ylim() == fresh_ax.get_ylim()
        assert ax.get_position().x0 >= fresh_ax.get_position().x0 - 1e-3  # labels fit
