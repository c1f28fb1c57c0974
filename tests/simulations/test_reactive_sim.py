"""Simulations of guide section 1.2 assert the behaviour the notebook claims."""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import numpy as np
import pytest
import simpy
from matplotlib.figure import Figure

from patterns.dataflow.reactive import Observable, Subject
from simulations.reactive import (
    ARRIVALS,
    STRATEGIES,
    Emit,
    FlowResult,
    GuideSketchDeadlockError,
    GuideSketchDropOldestStrategy,
    GuideSketchMapOperator,
    SimPyScheduler,
    arrival_times,
    check_theory,
    compare_drop_oldest,
    compare_explorer,
    compare_strategies,
    draw_compare_explorer,
    draw_flow_explorer,
    draw_guide_drop_oldest,
    draw_strategies,
    flow_explorer,
    guide_drop_oldest_table,
    mm1k,
    reentrant_subscribe,
    run_flow,
    strategy_table,
)


@pytest.fixture(scope="module")
def overload() -> dict[str, FlowResult]:
    """Poisson 50/s into a consumer of 40/s: permanently overloaded."""
    return compare_strategies(producer_rate=50.0, consumer_rate=40.0, capacity=20,
                              arrival="poisson", horizon=60.0, seed=1)


@pytest.fixture(scope="module")
def bursty() -> dict[str, FlowResult]:
    """Bursts at 150/s over a mean of 50/s into a consumer of 60/s."""
    return compare_strategies(producer_rate=50.0, consumer_rate=60.0, capacity=20,
                              arrival="bursty", horizon=60.0, seed=1)


@pytest.mark.parametrize("scenario", ["overload", "bursty"])
def test_every_strategy_keeps_its_bound_in_the_flow(
    scenario: str, request: pytest.FixtureRequest
) -> None:
    results: dict[str, FlowResult] = request.getfixturevalue(scenario)
    for name, result in results.items():
        limit = 1 if name == "latest" else 20
        assert result.max_queue <= limit, name
        # waiting + one in service + one held by a blocked producer
        assert result.max_memory <= limit + 2, name
        assert result.delivered + result.dropped == result.produced, name


def test_buffer_and_demand_lose_nothing_but_slow_the_producer(
    overload: dict[str, FlowResult]
) -> None:
    free = overload["drop_newest"].produced
    for name in ("buffer", "demand"):
        result = overload[name]
        assert result.dropped == 0
        assert result.delivered == result.produced
        # the producer was held back to about the consumer's pace (40 of 50 per second):
        # over 20 seeds produced / 2400 - 1 has mean +0.9 % and sd 2.1 %
        assert result.produced < 0.9 * free
        assert result.produced == pytest.approx(40 * 60, rel=0.08)


def test_drop_strategies_lose_the_excess(overload: dict[str, FlowResult]) -> None:
    newest, oldest = overload["drop_newest"], overload["drop_oldest"]
    # theory: M/M/1/21 at ρ = 1.25 loses about 20 % of the arrivals; a 60 s run is
    # short (sd 0.023 over 20 seeds, and 0.008 low while the empty buffer first fills):
    # the long runs of test_drop_newest_agrees_with_mm1k hold it to 0.012
    assert newest.drop_fraction == pytest.approx(mm1k(50, 40, 21).loss, abs=0.08)
    # same arrivals, same service: the same number lost, but different items
    assert newest.dropped == oldest.dropped
    assert oldest.mean_latency < 0.9 * newest.mean_latency  # fresher items are kept


def test_latest_trades_items_for_latency(overload: dict[str, FlowResult]) -> None:
    latest = overload["latest"]
    assert latest.max_queue == 1
    assert latest.dropped > max(overload[n].dropped for n in ("drop_newest", "drop_oldest"))
    assert latest.latency_percentile(95) < 0.25 * overload["drop_oldest"].latency_percentile(95)


def test_error_fails_fast(bursty: dict[str, FlowResult]) -> None:
    error = bursty["error"]
    assert error.failed_at is not None
    assert error.failed_at < 20.0
    assert error.dropped == 1  # the one item that overflowed; the stream then ended
    assert error.produced < 0.2 * bursty["drop_newest"].produced


def test_bursts_are_absorbed_by_a_bound(bursty: dict[str, FlowResult]) -> None:
    # the consumer is faster on average: the queue is mostly short, full only in bursts
    for name in ("buffer", "drop_newest", "drop_oldest", "demand"):
        assert bursty[name].mean_queue < 6, name
        assert bursty[name].max_queue >= 19, name


def test_demand_window_bounds_what_waits(bursty: dict[str, FlowResult]) -> None:
    # window 20: at most 19 wait while one is in service
    assert bursty["demand"].max_queue <= 19
    assert bursty["demand"].max_memory <= 21


def test_runs_are_deterministic() -> None:
    a = run_flow("drop_oldest", seed=3, horizon=10.0)
    b = run_flow("drop_oldest", seed=3, horizon=10.0)
    assert a.dropped == b.dropped
    assert np.array_equal(a.latencies, b.latencies)
    c = run_flow("drop_oldest", seed=4, horizon=10.0)
    assert not np.array_equal(a.latencies, c.latencies)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"strategy": "shed"}, "strategy must be one of"),
    ({"capacity": 0}, "capacity must be an int >= 1"),
    ({"producer_rate": 0.0}, "producer_rate must be"),
    ({"arrival": "weekly"}, "arrival must be one of"),
])
def test_bad_parameters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_flow(**kwargs)  # type: ignore[arg-type]


# ============================================================================ theory


def test_mm1k_formulas() -> None:
    one = mm1k(30.0, 10.0, 1)  # M/M/1/1: loss = ρ / (1 + ρ)
    assert one.loss == pytest.approx(3 / 4)
    balanced = mm1k(10.0, 10.0, 4)  # ρ = 1: uniform over 0..K
    assert balanced.loss == pytest.approx(1 / 5)
    assert balanced.mean_in_system == pytest.approx(2.0)
    huge = mm1k(100.0, 1.0, 500)  # no overflow at large ρ and K
    assert math.isfinite(huge.loss)
    assert huge.loss == pytest.approx(0.99, abs=1e-3)
    with pytest.raises(ValueError, match="places"):
        mm1k(1.0, 1.0, 0)


THEORY_SEEDS = (1, 2, 3)


@pytest.mark.parametrize("capacity", [1, 5])
def test_drop_newest_agrees_with_mm1k(capacity: int) -> None:
    """Three seeded Poisson runs of 1,000 s each against M/M/1/K, K = bound + 1.

    Over 20 seeds one run's loss has an sd of 0.0030 (bound 1) and 0.0046 (bound 5);
    L, W and throughput 0.55 / 0.78 %, 0.69 / 1.0 % and 0.29 / 0.41 %; Little's law
    holds to 0.02 %. The tolerances are about 3.5 standard errors of the mean of three.
    """
    checks = [check_theory(capacity, producer_rate=50.0, consumer_rate=40.0,
                           horizon=1000.0, seed=seed) for seed in THEORY_SEEDS]
    theory = checks[0].theory

    def mean(values: list[float]) -> float:
        return float(np.mean(values))

    loss = mean([c.loss for c in checks])
    in_system = mean([c.mean_in_system for c in checks])
    latency = mean([c.mean_latency for c in checks])
    assert loss == pytest.approx(theory.loss, abs=0.01)
    assert in_system == pytest.approx(theory.mean_in_system, rel=0.02)
    assert latency == pytest.approx(theory.mean_latency, rel=0.025)
    assert mean([c.throughput for c in checks]) == pytest.approx(theory.throughput, rel=0.01)
    for c in checks:
        assert c.littles_law_latency == pytest.approx(c.mean_latency, rel=0.001)
    # the same tolerances reject a buffer one place short (K = bound)
    short = mm1k(50.0, 40.0, capacity)
    assert abs(loss - short.loss) > 0.01
    assert abs(in_system / short.mean_in_system - 1) > 0.02


def test_arrivals_have_their_rate_and_keep_their_pattern() -> None:
    for arrival in ARRIVALS:
        times = arrival_times(arrival, 50.0, 2000.0, np.random.default_rng(3))
        assert np.all(np.diff(times) >= 0)
        assert times[0] >= 0
        assert times[-1] < 2000.0
        # about 100,000 items: a Poisson count's sd is 0.3 %; bursts add to it
        assert len(times) / 2000.0 == pytest.approx(50.0, rel=0.01 if arrival == "poisson"
                                                    else 0.05)
    gaps = np.diff(arrival_times("poisson", 50.0, 2000.0, np.random.default_rng(3)))
    assert np.std(gaps) / np.mean(gaps) == pytest.approx(1.0, abs=0.02)  # exponential
    bursty = np.diff(arrival_times("bursty", 50.0, 2000.0, np.random.default_rng(3)))
    assert np.std(bursty) / np.mean(bursty) > 1.1  # burstier than Poisson
    # common random numbers: for a seed, twice the rate is the same pattern, twice as dense
    for arrival in ARRIVALS:
        slow = arrival_times(arrival, 20.0, 60.0, np.random.default_rng(5))
        fast = arrival_times(arrival, 40.0, 60.0, np.random.default_rng(5))
        if arrival == "poisson":
            assert np.allclose(fast[:len(slow) // 2], slow[:len(slow) // 2] / 2)
        else:  # the same bursts: same start times, whatever the rate
            assert np.allclose(fast[:100], arrival_times(arrival, 40.0, 60.0,
                                                         np.random.default_rng(5))[:100])
            counts_slow = np.histogram(slow, bins=12, range=(0, 60))[0]
            counts_fast = np.histogram(fast, bins=12, range=(0, 60))[0]
            assert np.corrcoef(counts_slow, counts_fast)[0, 1] > 0.9


def test_demand_in_whole_windows_idles_the_consumer() -> None:
    # request_size: the consumer asks for the next window only when it has finished the
    # last one, so it waits for the producer at every window and the producer waits for
    # it in between: fewer items are made, and those wait less
    one = run_flow("demand", producer_rate=50.0, consumer_rate=60.0, capacity=10,
                   horizon=60.0, seed=1)
    whole = run_flow("demand", producer_rate=50.0, consumer_rate=60.0, capacity=10,
                     request_size=10, horizon=60.0, seed=1)
    assert whole.produced < 0.95 * one.produced
    assert whole.mean_latency < one.mean_latency
    assert whole.max_queue <= 9
    assert whole.dropped == 0
    with pytest.raises(ValueError, match="request_size"):
        run_flow("demand", capacity=4, request_size=5)
    with pytest.raises(ValueError, match="request_size"):
        run_flow("buffer", request_size=2)


# ============================================================================ SimPy scheduler


def test_buffer_with_time_runs_in_simulated_time() -> None:
    env = simpy.Environment()
    scheduler = SimPyScheduler(env)
    subject: Subject[int] = Subject()
    batches: list[tuple[float, list[int]]] = []
    subject.buffer_with_time(1.0, scheduler).subscribe(
        lambda items: batches.append((scheduler.now(), items)))

    def source() -> Generator[Any, Any, None]:
        for value in range(5):
            yield env.timeout(0.4)
            subject.on_next(value)
        subject.on_complete()

    env.process(source())
    env.run(until=10)
    assert batches == [(1.0, [0, 1]), (2.0, [2, 3]), (2.0, [4])]


def test_interval_on_the_simpy_scheduler() -> None:
    env = simpy.Environment()
    seen: list[tuple[float, int]] = []
    Observable.interval(0.5, SimPyScheduler(env)).take(3).subscribe(
        lambda n: seen.append((env.now, n)))
    env.run(until=10)
    assert seen == [(0.5, 0), (1.0, 1), (1.5, 2)]


# ============================================================================ pitfalls


def test_guide_drop_oldest_always_emits() -> None:
    strategy = GuideSketchDropOldestStrategy(capacity=2)
    actions = [strategy.handle_backpressure(i) for i in range(5)]
    assert actions == [Emit(i) for i in range(5)]  # nothing held back, nothing dropped
    assert list(strategy.buffer) == [3, 4]  # the "buffer" only keeps copies


def test_guide_drop_oldest_lets_the_consumer_queue_grow_without_bound() -> None:
    guide, ours = compare_drop_oldest(producer_rate=50.0, consumer_rate=40.0, capacity=20,
                                      horizon=60.0, seed=1)
    assert guide.dropped == 0
    assert guide.sketch_buffer == 20
    # everything produced was handed to the consumer: served, or still waiting for it
    assert guide.delivered + guide.consumer_queue[-1] + 1 >= guide.produced
    assert guide.max_queue > 20 * 20  # ~ (50 - 40) items/s x 60 s
    assert guide.latencies.mean() > 10 * ours.mean_latency
    assert ours.max_queue <= 20
    table = guide_drop_oldest_table(horizon=20.0)
    assert "guide's DropOldestStrategy" in table


def test_guide_map_operator_deadlocks_on_reentrant_subscribe() -> None:
    lines = reentrant_subscribe(guide=True, lock_timeout=0.05)
    assert lines[0].startswith("deadlock: write lock not granted")
    assert lines[-1].endswith("received []")
    operator = GuideSketchMapOperator(lambda x: x, lock_timeout=0.05)
    with pytest.raises(GuideSketchDeadlockError), operator._lock.read():
        operator.subscribe(object())


def test_our_operator_allows_reentrant_subscribe() -> None:
    assert reentrant_subscribe(guide=False) == [
        "first observer received [10, 20, 30]",
        "second observer (subscribed inside on_next) received [20, 30]",
    ]


# ============================================================================ figures


def test_figures_and_tables() -> None:
    for figure in (draw_strategies(horizon=10.0), draw_flow_explorer("demand"),
                   draw_compare_explorer(), draw_guide_drop_oldest(horizon=10.0)):
        assert isinstance(figure, Figure)
    table = strategy_table(compare_strategies(horizon=5.0))
    assert all(name in table for name in STRATEGIES)


def test_explorers_redraw() -> None:
    explorer = flow_explorer()
    explorer.controls["strategy"].value = "latest"
    assert explorer.redraws == 2
    assert compare_explorer().redraws == 1


def _picture(fig: Figure) -> list[object]:
    """What a figure shows: its titles, its lines' data and its bars' heights."""
    shown: list[object] = [fig.get_suptitle()]
    for ax in fig.axes:
        shown.append(ax.get_title())
        shown.extend(tuple(map(float, line.get_ydata())) for line in ax.get_lines())
        shown.append(tuple(round(float(p.get_height()), 9) for p in ax.patches))
    return shown


@pytest.mark.parametrize("make", [flow_explorer, compare_explorer])
def test_every_slider_changes_the_picture_over_its_whole_range(make: Any) -> None:
    # the last step at each end of every slider (the others at their defaults) changes
    # what is drawn, and so does the whole range: no end of a range is flat
    explorer = make()
    defaults = explorer.values()
    for name, control in explorer.controls.items():
        if not hasattr(control, "step"):
            continue  # a choice of buttons
        low, high, step = control.min, control.max, control.step
        pictures = [_picture(explorer.draw_function(**{**defaults, name: value}))
                    for value in (low, low + step, high - step, high)]
        assert pictures[0] != pictures[1], f"{name}: its first step changes nothing"
        assert pictures[2] != pictures[3], f"{name}: its last step changes nothing"
        assert pictures[0] != pictures[3], f"{name}: its two ends draw the same picture"


def test_the_bound_slider_is_off_while_latest_holds_one_item() -> None:
    explorer = flow_explorer()
    assert not explorer.controls["capacity"].disabled
    explorer.controls["strategy"].value = "latest"
    assert explorer.controls["capacity"].disabled
    explorer.controls["strategy"].value = "drop_oldest"
    assert not explorer.controls["capacity"].disabled


def test_a_warm_up_removes_the_empty_start_of_a_short_run() -> None:
    # until a bound of 100 first fills (about 10 s at 50/s into 40/s) nothing is
    # dropped: a 60 s run counted from 0 reads low by about 0.2 * 10 / 60 = 0.033
    # (over 6 seeds the warm-up raises it by 0.039, each seed by 0.024 to 0.062)
    seeds = range(1, 7)
    cold = [check_theory(100, horizon=60.0, seed=s).loss for s in seeds]
    warm = [check_theory(100, horizon=60.0, warmup=20.0, seed=s).loss for s in seeds]
    assert all(w > c + 0.01 for w, c in zip(warm, cold, strict=True))
    assert np.mean(warm) == pytest.approx(mm1k(50.0, 40.0, 101).loss, abs=0.03)
    with pytest.raises(ValueError, match="warmup"):
        check_theory(5, horizon=10.0, warmup=10.0)
