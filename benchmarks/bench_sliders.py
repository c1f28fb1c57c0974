"""Where a slider move's time goes in the kernel: the model and figure, then the drawing.

    python benchmarks/bench_sliders.py
    python benchmarks/bench_sliders.py --new-figures   # every move builds a new figure

The kernel's side of what ``benchmarks/bench_browser_sliders.py`` measures in a browser
(which adds the messages, the transfer and the browser's decoding, about 40 ms here).
For each explorer, every slider is moved to its lowest, default and highest value (the
others at their defaults), three times each, and the redraw is timed as
``Explorer.redraw`` does it, with the garbage collector paused: the draw function (the
model run and the filling of the figure, lent back from the move before), then the
explorer's ``SteadyLayout.render``
(drawing, PNG encoding, and the layout when the figure's shape or reach changed).
Prints, per explorer, the median over its moves and the worst move (each
move's time is the median of its three redraws), and the median split between the model
and figure and the rendering. Options an
explorer declares as ``large_runs`` (a 10,000-node run one click away) are timed once
each and listed apart: they are meant to take seconds. With ``--new-figures`` the figure
is not lent back (as before ``kit.reuse``): the two runs side by side show what lending
saves.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from contextlib import redirect_stdout
from typing import Any

from simulations.breaker import breaker_explorer
from simulations.bulkhead import isolation_explorer, queue_explorer
from simulations.cqrs import staleness_explorer
from simulations.crdt import lww_skew_explorer, partition_explorer
from simulations.eventsourcing import concurrent_writers_explorer, publish_crash_explorer
from simulations.gossip import convergence_explorer, rumour_explorer
from simulations.idempotency import crash_explorer, idempotency_explorer
from simulations.kit.reuse import FigurePool
from simulations.kit.widgets import Explorer, paused_gc
from simulations.lock import pause_explorer
from simulations.pipeline import batching_explorer, line_explorer
from simulations.primer import (
    epidemic_explorer,
    erlang_b_explorer,
    mm1_explorer,
    poisson_explorer,
    pooling_explorer,
)
from simulations.ratelimit import instances_explorer, limiter_explorer
from simulations.reactive import compare_explorer, flow_explorer
from simulations.retry import amplification_explorer, contention_explorer
from simulations.saga import saga_explorer
from simulations.timeout import overload_explorer
from simulations.twophase import twophase_explorer

TARGET_SECONDS = 0.2  # in the kernel: the browser adds about 40 ms to reach 250 ms
REPEATS = 3


def time_redraw(explorer: Explorer, values: dict[str, Any], *, lend: bool = True
                ) -> tuple[float, float]:
    """The seconds of the draw function (model and figure) and of the rendering, as
    ``Explorer.redraw`` runs them (its steady layout and, with ``lend``, its figure kept
    from move to move)."""
    pool = explorer.figure_pool if lend else FigurePool()  # a new pool lends nothing
    with paused_gc():
        started = time.perf_counter()
        with pool.lending():
            figure = explorer.draw_function(**values)
        built = time.perf_counter()
        explorer.steady_layout.render(figure)
        rendered = time.perf_counter()
        pool.give_back(figure)
        return built - started, rendered - built


def settings(explorer: Explorer, *, large: bool = False) -> list[dict[str, Any]]:
    """The moves to time: every option or slider end, one control at a time; with
    ``large``, only the explorer's declared large runs."""
    defaults = explorer.values()
    result = [] if large else [dict(defaults)]
    for name, control in explorer.controls.items():
        options = getattr(control, "options", None)
        candidates = list(options) if options is not None else [control.min, control.max]
        if hasattr(control, "base"):  # a log slider: min and max are exponents
            candidates = [control.base**control.min, control.base**control.max]
        heavy = set(explorer.large_runs.get(name, ()))
        for value in candidates:
            if (value in heavy) == large:
                result.append({**defaults, name: value})
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-figures", action="store_true",
                        help="build a new figure for every move (no figure lent back)")
    lend = not parser.parse_args().new_figures
    print("| explorer | moves | median (s) | model and figure | rendering | worst (s) "
          "| worst setting |")
    print("|---|---:|---:|---:|---:|---:|---|")
    worst_overall = 0.0
    with redirect_stdout(io.StringIO()):
        explorers = {"pipeline line (1.1)": line_explorer(),
                     "batching (1.1)": batching_explorer(),
                     "backpressure flow (1.2)": flow_explorer(),
                     "backpressure strategies (1.2)": compare_explorer(),
                     "gossip convergence (1.3)": convergence_explorer(),
                     "rumours (1.3)": rumour_explorer(),
                     "partition (1.3)": partition_explorer(),
                     "LWW skew (1.3)": lww_skew_explorer(),
                     "contention (4.1)": contention_explorer(),
                     "amplification (4.1)": amplification_explorer(),
                     "breaker (4.2)": breaker_explorer(),
                     "isolation (4.3)": isolation_explorer(),
                     "queueing (4.3)": queue_explorer(),
                     "overload (4.4)": overload_explorer(),
                     "limiters (4.5)": limiter_explorer(),
                     "instances (4.5)": instances_explorer(),
                     "lock pause (5.1)": pause_explorer(),
                     "saga (5.2)": saga_explorer(),
                     "2PC (5.2)": twophase_explorer(),
                     "writers (5.3)": concurrent_writers_explorer(),
                     "staleness (5.4)": staleness_explorer(),
                     "publish crash (5.3)": publish_crash_explorer(),
                     "idempotency (5.5)": idempotency_explorer(),
                     "effect crash (5.5)": crash_explorer(),
                     "Poisson (primer)": poisson_explorer(),
                     "M/M/1 (primer)": mm1_explorer(),
                     "pooling (primer)": pooling_explorer(),
                     "Erlang B (primer)": erlang_b_explorer(),
                     "epidemic (primer)": epidemic_explorer()}
    for name, explorer in explorers.items():
        timings = []
        for values in settings(explorer):
            # each move three times: its median, so that one stray pause does not decide
            runs = [time_redraw(explorer, values, lend=lend) for _ in range(REPEATS)]
            total = statistics.median(sum(run) for run in runs)
            timings.append((total, statistics.median(b for b, _ in runs),
                            statistics.median(r for _, r in runs), values))
        seconds = [t[0] for t in timings]
        worst, _, _, worst_values = max(timings, key=lambda item: item[0])
        changed = {k: v for k, v in worst_values.items() if v != explorer.values()[k]}
        print(f"| {name} | {len(seconds)} | {statistics.median(seconds):.3f} | "
              f"{statistics.median(t[1] for t in timings):.3f} | "
              f"{statistics.median(t[2] for t in timings):.3f} | {worst:.3f} | "
              f"{changed or 'defaults'} |")
        worst_overall = max(worst_overall, worst)
    large = [(name, explorer, values) for name, explorer in explorers.items()
             for values in settings(explorer, large=True)]
    if large:
        print("\nLarge runs, one click away (timed once each; not held to the target):\n")
        print("| explorer | setting | seconds |")
        print("|---|---|---:|")
        for name, explorer, values in large:
            changed = {k: v for k, v in values.items() if v != explorer.values()[k]}
            seconds = sum(time_redraw(explorer, values, lend=lend))
            print(f"| {name} | {changed} | {seconds:.2f} |")
    print(f"\nWorst move {worst_overall:.3f} s (a move's median in the kernel within "
          f"{TARGET_SECONDS} s answers within 250 ms in the browser)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
