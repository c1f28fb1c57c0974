"""Simulations of guide section 4.3 assert the behaviour they are meant to show."""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import numpy as np
import pytest
import simpy

from simulations.bulkhead import (
    GuideSketchBulkhead,
    GuideSketchChannel,
    GuideSketchError,
    compare_guide_sketch,
    compare_isolation,
    draw_guide_sketch,
    draw_isolation,
    draw_isolation_explorer,
    draw_queue_explorer,
    draw_queue_theory,
    guide_sketch_table,
    guide_with_bulkhead,
    isolation_explorer,
    isolation_table,
    queue_explorer,
    queue_table,
    run_guide_sketch,
    run_isolation,
    run_queue,
    split,
)
from simulations.kit.queueing import erlang_b, erlang_c, mmck

# ============================================================================ isolation


@pytest.fixture(scope="module")
def isolation() -> dict[str, Any]:
    return compare_isolation()


def test_a_slow_b_starves_a_in_a_shared_pool(isolation: dict[str, Any]) -> None:
    shared = isolation["one shared pool"]
    a = shared.dependencies["A"]
    assert a.success_rate(0, 20) == 1.0  # all is well before B slows
    assert shared.success_rate("A", 21, 60) < 0.4
    # B's slow calls hold (almost) every permit of the pool
    held_by_b = shared.dependencies["B"].mean_in_flight(np.array([25.0, 60.0]))[0]
    assert held_by_b > 0.95 * shared.concurrency
    # A's successful calls wait in the queue behind B's
    assert a.latency_percentile(95, 21, 60) > 3 * a.latency_percentile(95, 0, 20)


def test_isolated_pools_keep_a_healthy(isolation: dict[str, Any]) -> None:
    isolated = isolation["isolated pools"]
    a = isolated.dependencies["A"]
    assert isolated.success_rate("A", 0, 60) == 1.0
    assert a.latency_percentile(95, 21, 60) < 0.3
    # B is contained in its own half: it never holds more than its permits
    _, permits_b = split(isolated.concurrency)
    grid = np.linspace(0, 60, 5001)
    assert isolated.dependencies["B"].in_flight(grid).max() <= permits_b
    # and, with half the permits, B fares worse than in the shared pool: isolation
    # protects the healthy dependency, not the slow one
    assert isolated.success_rate("B", 21, 60) < isolation["one shared pool"].success_rate(
        "B", 21, 60)


def test_isolation_helps_only_once_b_is_slow() -> None:
    fast = compare_isolation(slow_latency=0.05)  # B never really slows
    for result in fast.values():
        assert result.success_rate("A") > 0.99
        assert result.success_rate("B") > 0.99


def test_in_flight_bookkeeping_is_exact() -> None:
    result = run_isolation(isolated=False, horizon=20.0, slow_at=10.0)
    trace = result.dependencies["B"]
    edges = np.array([0.0, 5.0, 12.0, 20.0])
    exact = trace.mean_in_flight(edges)
    grid = np.linspace(0.0, 20.0, 400_001)
    sampled = trace.in_flight(grid)
    for k in range(3):
        inside = (grid >= edges[k]) & (grid < edges[k + 1])
        assert exact[k] == pytest.approx(sampled[inside].mean(), abs=0.01)


def test_isolation_is_deterministic_for_a_seed() -> None:
    a = run_isolation(isolated=False, seed=4, horizon=30.0)
    b = run_isolation(isolated=False, seed=4, horizon=30.0)
    c = run_isolation(isolated=False, seed=5, horizon=30.0)
    assert np.array_equal(a.dependencies["A"].succeeded, b.dependencies["A"].succeeded)
    assert not np.array_equal(a.dependencies["A"].arrivals, c.dependencies["A"].arrivals)


def test_split_shares_permits() -> None:
    assert split(20) == (10, 10)
    assert split(7) == (4, 3)


def test_isolation_table_shows_before_and_after(isolation: dict[str, Any]) -> None:
    table = isolation_table(isolation)
    assert "one shared pool  A" in table
    assert "isolated pools   A" in table
    assert table.count("100%") >= 5


# ============================================================================ queueing theory


@pytest.mark.parametrize(("servers", "load"), [(1, 0.5), (4, 3.0), (10, 12.0)])
def test_mmck_without_a_queue_is_erlang_b(servers: int, load: float) -> None:
    theory = mmck(load * 10.0, 10.0, servers, 0)
    assert theory.blocking == pytest.approx(erlang_b(servers, load), rel=1e-12)
    assert theory.mean_wait == 0.0


@pytest.mark.parametrize(("servers", "load"), [(1, 0.5), (4, 3.0), (10, 8.0)])
def test_mmck_with_a_huge_queue_is_erlang_c(servers: int, load: float) -> None:
    mu = 10.0
    theory = mmck(load * mu, mu, servers, 2000)
    c = erlang_c(servers, load)
    assert theory.blocking < 1e-12
    assert theory.wait_probability == pytest.approx(c, rel=1e-9)
    assert theory.mean_wait == pytest.approx(c / (servers * mu - load * mu), rel=1e-9)


def test_mm1k_closed_form() -> None:
    # M/M/1/K: P_K = (1 - rho) rho^K / (1 - rho^(K+1))
    rho, k = 0.8, 5
    theory = mmck(8.0, 10.0, 1, k - 1)
    assert theory.blocking == pytest.approx((1 - rho) * rho**k / (1 - rho ** (k + 1)))
    assert theory.utilisation == pytest.approx(rho * (1 - theory.blocking))


def test_mmck_stays_finite_for_large_systems() -> None:
    theory = mmck(5000.0, 1.0, 200, 2000)
    assert math.isfinite(theory.blocking)
    assert theory.blocking == pytest.approx(1 - 200 / 5000, rel=1e-3)  # overloaded
    assert mmck(0.0, 1.0, 2, 2).blocking == 0.0


# Over seeds 1-20 (30,000 arrivals each) the relative error of one run had these standard
# deviations: blocking 3.1 / 1.6 / 3.9 / 1.9 %, mean wait 1.6 / 1.5 / 2.5 / 1.2 % (means
# within 1.5 % of theory). Each tolerance is about four of them: a wrong model fails.
@pytest.mark.parametrize(("rate", "servers", "queue_size", "blocking_tol", "wait_tol"), [
    (40.0, 4, 6, 0.13, 0.07),    # load 1 per permit
    (50.0, 4, 6, 0.07, 0.06),    # overload
    (75.0, 8, 4, 0.16, 0.10),    # near capacity, short queue
    (25.0, 2, 10, 0.08, 0.05),   # overload, long queue
])
def test_simulated_bulkhead_agrees_with_mmck(rate: float, servers: int, queue_size: int,
                                              blocking_tol: float, wait_tol: float) -> None:
    result = run_queue(rate, service_rate=10.0, servers=servers, queue_size=queue_size,
                       arrivals=30_000, seed=3)
    theory = result.theory
    assert result.arrivals > 25_000
    assert result.blocking == pytest.approx(theory.blocking, rel=blocking_tol)
    assert result.mean_wait == pytest.approx(theory.mean_wait, rel=wait_tol)


def test_erlang_b_holds_for_any_call_time_distribution_but_a_queue_does_not() -> None:
    # M/G/c/c is insensitive: with no queue the blocking depends on the mean call time
    # only. Over seeds 1-12 (20,000 arrivals at 40/s, 4 permits) the relative error was
    # +0.1 +- 1.0 % for CV 0.4 and -0.4 +- 3.1 % for CV 2. With 6 queue places it is
    # not: -27 +- 2.9 % (CV 0.4) and +53 +- 9 % (CV 2) against M/M/c/K.
    for cv, tolerance in ((0.4, 0.04), (2.0, 0.13)):
        lossy = run_queue(40.0, servers=4, queue_size=0, service_cv=cv, seed=2)
        assert lossy.blocking == pytest.approx(lossy.theory.blocking, rel=tolerance)
    regular = run_queue(40.0, servers=4, queue_size=6, service_cv=0.4, seed=2)
    variable = run_queue(40.0, servers=4, queue_size=6, service_cv=2.0, seed=2)
    assert regular.blocking < 0.85 * regular.theory.blocking
    assert variable.blocking > 1.25 * variable.theory.blocking


def test_a_wait_limit_splits_rejections_by_reason() -> None:
    # With max_wait, a waiter leaves after that long: a queue holds about
    # rate x max_wait callers at most, and places beyond are never all used.
    for rate in (30.0, 40.0, 60.0):
        short = run_queue(rate, max_wait=0.05, arrivals=5000)  # 60/s x 50 ms = 3 < 6
        long = run_queue(rate, max_wait=0.2, arrivals=5000)    # 60/s x 200 ms = 12 > 6
        for result in (short, long):
            assert result.rejected == result.rejected_queue_full + result.rejected_wait_timeout
        assert short.rejected_wait_timeout > 5 * short.rejected_queue_full
        assert long.rejected_queue_full > 2 * long.rejected_wait_timeout
    unlimited = run_queue(40.0, arrivals=5000)
    assert unlimited.rejected_wait_timeout == 0
    with pytest.raises(ValueError, match="service_cv must be > 0, got 0"):
        run_queue(40.0, service_cv=0)


def test_queue_table_puts_theory_beside_simulation() -> None:
    results = [run_queue(rate, arrivals=2000) for rate in (20.0, 40.0)]
    lines = queue_table(results).splitlines()
    assert "rejected: theory" in lines[0]
    assert len(lines) == 4


def test_erlang_c_needs_a_stable_queue() -> None:
    with pytest.raises(ValueError,
                       match=r"offered_load must be < servers \(2\) for a stable M/M/c, got 2.5"):
        erlang_c(2, 2.5)


# ============================================================================ the guide's sketch


def test_sketch_channel_behaves_like_tokio_mpsc() -> None:
    closed = GuideSketchChannel(3, receiver_alive=False)
    assert [closed.try_send() for _ in range(2)] == ["closed", "closed"]
    assert closed.buffered == 0
    open_ = GuideSketchChannel(2, receiver_alive=True)
    assert [open_.try_send() for _ in range(3)] == [None, None, "full"]
    with pytest.raises(ValueError, match="capacity must be >= 1, got 0"):
        GuideSketchChannel(0, receiver_alive=True)


def test_sketch_as_written_rejects_every_request() -> None:
    env = simpy.Environment()
    sketch = GuideSketchBulkhead(env, 4, 10)  # plenty of free permits
    outcomes: list[str] = []

    def attempt() -> Generator[Any, Any, str]:
        yield env.timeout(0.1)
        return "ok"

    def client() -> Generator[Any, Any, None]:
        try:
            outcomes.append((yield from guide_with_bulkhead(sketch, attempt)))
        except GuideSketchError as error:
            outcomes.append(str(error))

    for _ in range(3):
        env.process(client())
    env.run()
    assert outcomes == ["QueueFull"] * 3
    assert sketch.metrics() == {"available_permits": 4, "max_permits": 4}


def test_sketch_permit_drop_adds_to_the_queue() -> None:
    env = simpy.Environment()
    sketch = GuideSketchBulkhead(env, 1, 10, keep_receiver=True)

    def attempt() -> Generator[Any, Any, None]:
        yield env.timeout(1.0)

    def client() -> Generator[Any, Any, None]:
        yield from guide_with_bulkhead(sketch, attempt)

    env.process(client())
    env.run()
    # one call, finished: it left two messages in the "queue" instead of none
    assert sketch.queue.buffered == 2


def test_guide_sketch_simulation_shows_both_flaws() -> None:
    results = compare_guide_sketch(rate=20.0, concurrency=4, queue_size=20, seed=1)
    guide, kept, fixed = (results[v] for v in ("guide", "guide, receiver kept", "Bulkhead"))
    assert guide.rejected.all()
    # with the receiver kept, between 10 and 20 calls get in, then the queue is full forever
    admitted = int((~kept.rejected).sum())
    assert 10 <= admitted <= 20
    assert kept.queue_lengths[-1] == 20
    assert kept.rejected[kept.arrival_times > 2.0].all()
    # the library's bulkhead at the same load: nothing rejected, waiters come and go
    assert fixed.rejected_share < 0.01
    assert fixed.queue_lengths.max() <= 20
    assert fixed.queue_lengths[-1] == 0
    table = guide_sketch_table(results)
    assert "100.0%" in table


def test_bulkhead_queue_count_matches_its_metrics_under_overload() -> None:
    result = run_guide_sketch("Bulkhead", rate=60.0, concurrency=2, queue_size=5,
                              max_wait=0.2, horizon=10.0)
    assert result.rejected_share > 0.3
    assert result.queue_lengths.min() >= 0
    assert result.queue_lengths.max() == 5
    assert result.queue_lengths[-1] == 0


# ============================================================================ for the notebook


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="concurrency must be >= 2, got 1"):
        run_isolation(isolated=True, concurrency=1)
    with pytest.raises(ValueError, match="max_wait must be >= 0, got -1"):
        run_isolation(isolated=False, max_wait=-1)
    with pytest.raises(ValueError, match="rate must be > 0, got 0"):
        run_isolation(isolated=False, rate=0)
    with pytest.raises(ValueError, match="servers must be >= 1, got 0"):
        mmck(1.0, 1.0, 0, 1)
    with pytest.raises(ValueError, match="warmup must be within"):
        run_queue(10.0, warmup=1.0)
    with pytest.raises(ValueError, match=r"variant must be one of .* got 'other'"):
        run_guide_sketch("other")


def test_figures_are_labelled() -> None:
    figures = [draw_isolation(rate=10.0), draw_isolation_explorer(rate=10.0),
               draw_queue_theory(arrivals=1000, points=3), draw_guide_sketch()]
    for fig in figures:
        for ax in fig.axes:
            assert ax.get_title()
            assert ax.get_ylabel() or ax.get_subplotspec().colspan.start > 0
        assert any(ax.get_xlabel() for ax in fig.axes)


def test_explorers_redraw_when_a_slider_moves() -> None:
    explorer = isolation_explorer()
    assert set(explorer.controls) == {"concurrency", "queue_size", "max_wait", "slow_latency",
                                      "rate"}
    explorer.controls["concurrency"].value = 10
    assert explorer.redraws == 2
    assert explorer.controls["queue_size"].max == 20  # 2 x rate x max_wait at the defaults
    queue = queue_explorer()
    assert set(queue.controls) == {"servers", "queue_size", "service_cv"}
    queue.controls["servers"].value = 2
    assert queue.redraws == 2
    assert draw_queue_explorer(2, 3, 1.5).axes


def test_isolation_table_says_how_long_refused_callers_waited(isolation: dict[str, Any]) -> None:
    shared = isolation["one shared pool"].dependencies["A"]
    # in the shared pool A's refused callers sat in the queue before hearing no
    assert 0.1 < shared.refused_wait(20, 60) <= 0.5
    assert math.isnan(isolation["isolated pools"].dependencies["A"].refused_wait(20, 60))
    assert "wait to be refused" in isolation_table(isolation)
