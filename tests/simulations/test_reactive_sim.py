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
    STRATEGIES,
    Emit,
    FlowResult,
    GuideSketchDeadlockError,
    GuideSketchDropOldestStrategy,
    GuideSketchMapOperator,
    SimPyScheduler,
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
        # the producer was held back to about the consumer's pace (40 of 50 per second)
        assert result.produced < 0.9 * free
        assert result.produced == pytest.approx(40 * 60, rel=0.1)


def test_drop_strategies_lose_the_excess(overload: dict[str, FlowResult]) -> None:
    newest, oldest = overload["drop_newest"], overload["drop_oldest"]
    # theory: M/M/1/21 at ρ = 1.25 loses about 20 % of the arrivals
    assert newest.drop_fraction == pytest.approx(mm1k(50, 40, 21).loss, abs=0.03)
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


@pytest.mark.parametrize("capacity", [1, 5])
def test_drop_newest_agrees_with_mm1k(capacity: int) -> None:
    """A long seeded Poisson run: loss within 0.01, L and W within 4 %, Little's law
    within 2 % (stated tolerances of the notebook's table)."""
    check = check_theory(capacity, producer_rate=50.0, consumer_rate=40.0, horizon=1000.0,
                         seed=1)
    theory = check.theory
    assert check.loss == pytest.approx(theory.loss, abs=0.01)
    assert check.mean_in_system == pytest.approx(theory.mean_in_system, rel=0.04)
    assert check.mean_latency == pytest.approx(theory.mean_latency, rel=0.04)
    assert check.throughput == pytest.approx(theory.throughput, rel=0.02)
    assert check.littles_law_latency == pytest.approx(check.mean_latency, rel=0.02)


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
