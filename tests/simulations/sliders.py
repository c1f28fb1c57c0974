"""One check for every explorer: each slider changes what is drawn over its whole range."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from matplotlib.figure import Figure


def slider_positions(control: Any) -> tuple[Any, Any, Any]:
    """A slider's lowest value, the step nearest its middle, and its highest value."""
    middle = control.min + round((control.max - control.min) / 2 / control.step) * control.step
    return control.min, middle, control.max


def assert_every_slider_changes(explorer: Any, picture: Callable[[Figure], Any]) -> None:
    """Move each slider of ``explorer`` to its start, middle and end; ``picture(figure)``
    (what the figure shows of the simulation) must differ between neighbouring positions.
    Each slider is put back before the next is moved."""
    for name, control in explorer.controls.items():
        start = control.value
        pictures = []
        for value in slider_positions(control):
            control.value = value
            pictures.append(picture(explorer.last_figure))
        control.value = start
        low, mid, high = pictures
        assert low != mid, f"{name}: the picture does not change from the start to the middle"
        assert mid != high, f"{name}: the picture does not change from the middle to the end"
