"""The shared simulation kit: clock, random streams, recorder, workloads, faults, widgets."""

from __future__ import annotations

import random

import numpy as np
import pytest
import simpy

from patterns.clock import Clock
from patterns.resilience.retry import AttemptStarted, RetryScheduled
from simulations.kit import (
    Constant,
    Exponential,
    FailureSchedule,
    LogNormal,
    Outage,
    RandomStreams,
    Recorder,
    SimClock,
    bursty_arrivals,
    poisson_arrivals,
    start_at,
)


def test_sim_clock_reads_simulated_time() -> None:
    env = simpy.Environment()
    clock = SimClock(env)
    assert isinstance(clock, Clock)
    seen: list[float] = []

    def proc():  # type: ignore[no-untyped-def]
        yield env.timeout(2.5)
        seen.append(clock.now())

    env.process(proc())
    env.run()
    assert seen == [2.5]


def test_random_streams_are_repeatable_and_independent() -> None:
    a, b = RandomStreams(7), RandomStreams(7)
    assert [a.stream("x").random() for _ in range(3)] == [b.stream("x").random() for _ in range(3)]
    assert a.stream("x").random() != a.stream("y").random()
    assert RandomStreams(8).stream("x").random() != a.stream("x").random()
    assert np.array_equal(a.numpy("n").random(4), b.numpy("n").random(4))
    with pytest.raises(TypeError, match="seed must be an int, got '1'"):
        RandomStreams("1")  # type: ignore[arg-type]


def test_recorder_stores_pattern_events_with_all_fields() -> None:
    recorder = Recorder()
    listen = recorder.listener("client")
    listen(AttemptStarted(1.0, 1))
    listen(RetryScheduled(1.5, 1, 0.25, None, "bad"))
    assert recorder.count("AttemptStarted") == 1
    scheduled = recorder.select("RetryScheduled")[0]
    assert scheduled.time == 1.5
    assert scheduled.source == "client"
    assert scheduled.data == {"attempt": 1, "delay": 0.25, "error": None, "result": "bad"}


def test_recorder_rate_counts_per_second() -> None:
    recorder = Recorder()
    for t in (0.1, 0.2, 0.3, 1.5):
        recorder.record(t, "call")
    starts, rates = recorder.rate("call", bin_width=0.5, until=2.0)
    assert starts.tolist() == [0.0, 0.5, 1.0, 1.5]
    assert rates.tolist() == [6.0, 0.0, 0.0, 2.0]
    with pytest.raises(ValueError, match="bin_width must be > 0, got 0"):
        recorder.rate("call", bin_width=0, until=1.0)


def test_poisson_arrivals_match_their_rate() -> None:
    times = poisson_arrivals(100.0, 100.0, np.random.default_rng(1))
    assert np.all(np.diff(times) >= 0)
    assert times.min() >= 0
    assert times.max() < 100.0
    # 10,000 expected; the standard deviation is 100
    assert abs(len(times) - 10_000) < 400
    gaps = np.diff(times)
    assert abs(gaps.mean() - 0.01) < 0.0005
    with pytest.raises(ValueError, match="rate must be >= 0, got -1"):
        poisson_arrivals(-1, 1.0, np.random.default_rng(1))


def test_bursty_arrivals_average_between_calm_and_burst_rates() -> None:
    times = bursty_arrivals(10.0, 200.0, 2000.0, np.random.default_rng(3),
                            mean_calm=5.0, mean_burst=1.0)
    long_run = len(times) / 2000.0
    expected = (10.0 * 5 + 200.0 * 1) / 6
    assert abs(long_run - expected) / expected < 0.15
    # burstiness: some 1 s windows see far more than the long-run mean
    counts, _ = np.histogram(times, bins=np.arange(0, 2001, 1.0))
    assert counts.max() > 3 * long_run


def test_start_at_runs_processes_at_the_given_times() -> None:
    env = simpy.Environment()
    started: list[tuple[int, float]] = []

    def proc(i):  # type: ignore[no-untyped-def]
        started.append((i, env.now))
        yield env.timeout(0)

    start_at(env, [0.0, 1.0, 2.5], proc)
    env.run()
    assert started == [(0, 0.0), (1, 1.0), (2, 2.5)]


def test_failure_schedule_and_outages() -> None:
    schedule = FailureSchedule(0.1, [Outage(5.0, 10.0)])
    assert schedule.probability(4.9) == 0.1
    assert schedule.probability(5.0) == 1.0
    assert schedule.probability(10.0) == 0.1
    rng = random.Random(1)
    assert all(schedule.fails(7.0, rng) for _ in range(100))
    share = sum(schedule.fails(1.0, rng) for _ in range(10_000)) / 10_000
    assert abs(share - 0.1) < 0.02
    with pytest.raises(ValueError, match="baseline must be within"):
        FailureSchedule(1.5)
    with pytest.raises(ValueError, match="start < end"):
        Outage(3.0, 2.0)


def test_latency_distributions_have_their_advertised_shape() -> None:
    rng = random.Random(2)
    assert Constant(0.2).sample(rng) == 0.2
    draws = [Exponential(0.05).sample(rng) for _ in range(20_000)]
    assert abs(np.mean(draws) - 0.05) < 0.002
    lognormal = LogNormal(median=0.01, p99=0.1)
    draws = [lognormal.sample(rng) for _ in range(20_000)]
    assert abs(np.median(draws) - 0.01) < 0.0007
    assert abs(np.percentile(draws, 99) - 0.1) < 0.015
    assert abs(np.mean(draws) - lognormal.mean) / lognormal.mean < 0.05
    with pytest.raises(ValueError, match="median <= p99"):
        LogNormal(median=1.0, p99=0.5)


def test_redis_server_helper_starts_and_stops_a_server() -> None:
    import shutil
    import socket

    from simulations.kit.servers import redis_server

    with redis_server() as port:
        if shutil.which("redis-server") is None:
            assert port is None
            return
        assert port is not None
        with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
            connection.sendall(b"PING\r\n")
            assert connection.recv(16) == b"+PONG\r\n"
    with pytest.raises(ConnectionRefusedError):  # stopped
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()


def test_queueing_mmck_with_a_long_queue_is_mm1() -> None:
    from simulations.kit.queueing import mmck

    theory = mmck(8.0, 10.0, 1, 2000)  # rho = 0.8: L = rho / (1 - rho), W = 1 / (mu - lambda)
    assert abs(theory.mean_in_system - 4.0) < 1e-9
    assert abs(theory.mean_sojourn - 0.5) < 1e-9
    assert theory.blocking < 1e-12
