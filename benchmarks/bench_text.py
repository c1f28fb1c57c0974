"""What drawing text costs, under two matplotlib versions, side by side in one run.

    python benchmarks/bench_text.py                      # this interpreter's matplotlib
    python benchmarks/bench_text.py --other /tmp/mpl311/bin/python

``--other`` names a second interpreter with another matplotlib (make one with
``python -m venv --system-site-packages /tmp/mpl311 && /tmp/mpl311/bin/pip install
matplotlib==3.11.2``); the script runs itself there and prints both columns and their
ratio. The cases, each the median of 7 repeats:

* one line of text of 72 characters drawn on an Agg canvas;
* a 2 x 2 grid of empty axes with titles and axis labels, drawn (mostly tick labels);
* the figure of five of the course's slowest explorers, drawn again as a slider move
  draws it (``SteadyLayout.render``: Agg draw and PNG encoding, layout kept).

Why: the course pins matplotlib 3.10, because 3.11 draws text glyph by glyph (its new
complex text layout) and text is most of an explorer's redraw. Upstream has merged text
rendering speedups after 3.11.2 (matplotlib pull request 32120); when a release carries
them, this script says whether the pin can go.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REPEATS = 7
EXPLORERS = ("bulkhead:isolation_explorer", "cqrs:staleness_explorer",
             "reactive:compare_explorer", "gossip:rumour_explorer",
             "timeout:overload_explorer")


def _median_ms(action: Callable[[], object], inner: int) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(inner):
            action()
        times.append((time.perf_counter() - started) / inner)
    return 1000 * statistics.median(times)


def measure() -> tuple[str, dict[str, float]]:
    """This interpreter's matplotlib version, and the cases in ms."""
    import importlib

    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from simulations.kit.widgets import paused_gc

    results: dict[str, float] = {}
    fig = Figure(figsize=(10, 4))
    text = fig.text(0.1, 0.5, "A and B, 20 requests/s each, calls of 0.05 s on average; "
                    "from 20 s (red)")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    results["one line of text, 72 characters"] = _median_ms(lambda: text.draw(renderer), 50)

    grid = Figure(figsize=(10, 6), layout="constrained")
    for ax in grid.subplots(2, 2).flat:
        ax.set_title("a title of some length")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("requests per second")
    grid_canvas = FigureCanvasAgg(grid)
    results["2 x 2 empty axes, drawn"] = _median_ms(grid_canvas.draw, 3)

    for spec in EXPLORERS:
        module, name = spec.split(":")
        with redirect_stdout(io.StringIO()):
            explorer = getattr(importlib.import_module(f"simulations.{module}"), name)()
        figure = explorer.draw_function(**explorer.values())
        explorer.steady_layout.render(figure)
        with paused_gc():
            results[f"explorer figure redrawn: {name}"] = _median_ms(
                lambda f=figure, e=explorer: e.steady_layout.render(f), 2)
    return matplotlib.__version__, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", help="a second Python with another matplotlib")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    version, mine = measure()
    if args.json:
        print(json.dumps({"version": version, "cases": mine}))
        return 0
    versions, columns = [version], [mine]
    if args.other:
        output = subprocess.run([args.other, __file__, "--json"], check=True,
                                capture_output=True, text=True, cwd=ROOT).stdout
        other = json.loads(output.strip().splitlines()[-1])
        versions.append(other["version"])
        columns.append(other["cases"])
    header = " | ".join(f"matplotlib {v} (ms)" for v in versions)
    print(f"| case | {header} |" + (" ratio |" if len(columns) == 2 else ""))
    print("|---|" + "---:|" * len(columns) + ("---:|" if len(columns) == 2 else ""))
    for case in columns[0]:
        cells = " | ".join(f"{column[case]:.1f}" for column in columns)
        ratio = (f" {columns[1][case] / columns[0][case]:.1f}x |" if len(columns) == 2
                 else "")
        print(f"| {case} | {cells} |{ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
