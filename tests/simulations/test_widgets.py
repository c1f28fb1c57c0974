"""The widget helpers: an Explorer redraws when a control changes."""

from __future__ import annotations

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
    import pytest

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
