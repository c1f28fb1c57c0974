"""Simulations of guide section 1.1 assert the behaviour the notebook claims."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from patterns.dataflow.pipeline import StageError
from simulations.kit.faults import Constant, Exponential
from simulations.pipeline import (
    ORDER_STAGES,
    GuideSketchBatchStage,
    GuideSketchFnStage,
    GuideSketchPipelineError,
    GuideSketchStageError,
    StageSpec,
    batch_capacity,
    batching_cost,
    batching_explorer,
    bottleneck,
    draw_batching,
    draw_line,
    example_line,
    fill_wait,
    guide_nested_pipeline,
    jackson_tandem,
    library_pipeline,
    line_capacity,
    line_explorer,
    mm1_line,
    nested_error_table,
    run_failures,
    run_line,
    saturated_throughput,
)

# --------------------------------------------------------------------------- theory


def test_jackson_formulas() -> None:
    theory = jackson_tandem(1.0, [3.0, 2.0, 2.5])
    assert theory.stable
    assert theory.throughput == 1.0
    assert theory.utilisations == pytest.approx((1 / 3, 0.5, 0.4))
    assert theory.sojourn == pytest.approx(1 / 2 + 1 / 1 + 1 / 1.5)
    assert theory.waits[1] == pytest.approx(0.5)  # rho / (mu - lambda)
    assert not jackson_tandem(3.0, [3.0, 4.0]).stable


def test_batch_capacity_formula() -> None:
    assert batch_capacity(1, 0.02, 0.002) == pytest.approx(1 / 0.022)
    assert batch_capacity(10, 0.02, 0.002) == pytest.approx(10 / 0.04)
    assert batch_capacity(10, 0.02, 0.002, amortise=False) == pytest.approx(1 / 0.022)
    line = example_line()
    assert bottleneck(line, 1) == "lookup"
    assert bottleneck(line, 32) == "store"
    assert line_capacity(line, 32) == pytest.approx(250)


# --------------------------------------------------------------------------- the line


def test_tandem_sojourn_agrees_with_jackson() -> None:
    # A long seeded run of three M/M/1 stations: Jackson's mean sojourn within 10 %.
    rates = (3.0, 2.0, 2.5)
    result = run_line(mm1_line(rates), 1.2, horizon=12_000.0, seed=3)
    theory = jackson_tandem(1.2, rates)
    assert result.mean_latency == pytest.approx(theory.sojourn, rel=0.10)
    assert result.throughput == pytest.approx(1.2, rel=0.03)
    for figures, rho in zip(result.stages, theory.utilisations, strict=True):
        assert figures.utilisation == pytest.approx(rho, abs=0.03)
    # the busiest station is the slowest one
    assert result.bottleneck == "stage 2"
    # the library's StageTimer, on the simulation's clock, saw every service
    timings = result.timings["stage 2"]
    assert timings.mean == pytest.approx(1 / 2.0, rel=0.05)
    assert timings.total / result.horizon == pytest.approx(theory.utilisations[1], abs=0.03)


@pytest.mark.parametrize("rate", [30.0, 100.0, 200.0])
def test_throughput_is_the_arrival_rate_below_capacity(rate: float) -> None:
    result = run_line(example_line(), rate, batch_size=16, max_wait=0.05, horizon=60.0)
    assert result.capacity > rate
    assert result.throughput == pytest.approx(rate, rel=0.05)


@pytest.mark.parametrize(("batch_size", "store_ms"), [(1, 4.0), (4, 4.0), (16, 4.0),
                                                      (16, 8.0)])
def test_throughput_is_the_bottleneck_capacity_above_it(batch_size: int, store_ms: float) -> None:
    line = example_line(store_ms=store_ms)
    capacity = line_capacity(line, batch_size)
    result = run_line(line, 1.5 * capacity, batch_size=batch_size, horizon=30.0)
    assert result.throughput == pytest.approx(capacity, rel=0.05)
    # the slowest stage is busy all the time (a stage upstream may be too, when the
    # offered load exceeds its own capacity as well)
    assert result.utilisation(bottleneck(line, batch_size)) > 0.97


def test_larger_batches_raise_capacity_until_another_stage_caps_it() -> None:
    line = example_line()
    measured = [saturated_throughput(line, b) for b in (1, 2, 4, 8)]
    assert all(a < b for a, b in itertools.pairwise(measured))
    assert measured[-1] > 4 * measured[0]
    assert saturated_throughput(line, 32) == pytest.approx(250, rel=0.05)  # store caps it


def test_larger_batches_raise_latency_at_low_load() -> None:
    latencies = [run_line(example_line(), 10.0, batch_size=b, horizon=200.0).mean_latency
                 for b in (1, 4, 16)]
    assert latencies[0] < latencies[1] < latencies[2]
    assert latencies[2] > 10 * latencies[0]


def test_batching_lowers_latency_near_the_unbatched_capacity() -> None:
    # At 40 items/s the unbatched lookup is 88 % busy; batches of 2 shorten its queue.
    one = run_line(example_line(), 40.0, batch_size=1, horizon=100.0)
    two = run_line(example_line(), 40.0, batch_size=2, horizon=100.0)
    assert two.mean_latency < 0.7 * one.mean_latency


@pytest.mark.parametrize("batch_size", [4, 16])
def test_fill_wait_agrees_with_theory(batch_size: int) -> None:
    result = run_line(example_line(), 10.0, batch_size=batch_size, horizon=400.0)
    assert result.mean_fill_wait == pytest.approx(fill_wait(batch_size, 10.0), rel=0.10)


def test_max_wait_bounds_the_fill_wait() -> None:
    result = run_line(example_line(), 10.0, batch_size=32, max_wait=0.05, horizon=100.0)
    assert float(np.max(result.fill_waits)) <= 0.05 + 1e-9
    assert result.mean_batch < 2.0
    assert result.mean_latency < 0.2


def test_batches_never_exceed_the_batch_size() -> None:
    result = run_line(example_line(), 200.0, batch_size=8, max_wait=0.02, horizon=20.0)
    sizes = [r.data["size"] for r in result.recorder.select("BatchEmitted")]
    assert max(sizes) <= 8
    reasons = {r.data["reason"] for r in result.recorder.select("BatchEmitted")}
    assert reasons == {"full", "timeout"}


def test_setup_is_paid_per_item_without_amortisation() -> None:
    line = (StageSpec("lookup", Constant(0.002), setup=0.02),)
    for b in (1, 8, 32):
        measured = saturated_throughput(line, b, amortise=False)
        assert measured == pytest.approx(1 / 0.022, rel=0.03)


def test_runs_are_deterministic_for_a_seed() -> None:
    a = run_line(example_line(), 80.0, batch_size=4, max_wait=0.1, horizon=20.0, seed=5)
    b = run_line(example_line(), 80.0, batch_size=4, max_wait=0.1, horizon=20.0, seed=5)
    c = run_line(example_line(), 80.0, batch_size=4, max_wait=0.1, horizon=20.0, seed=6)
    assert np.array_equal(a.latencies, b.latencies)
    assert a.stages == b.stages
    assert not np.array_equal(a.latencies, c.latencies)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [({"arrival_rate": 0.0}, "arrival_rate"), ({"arrival_rate": 1.0, "horizon": 0.0}, "horizon"),
     ({"arrival_rate": 1.0, "warmup": 100.0}, "warmup"),
     ({"arrival_rate": 1.0, "batch_size": 0}, "size")],
)
def test_bad_parameters(kwargs: dict[str, float], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        run_line(example_line(), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="setup"):
        StageSpec("x", Exponential(1.0), setup=-1.0)


# --------------------------------------------------------------------------- pitfalls


def test_guide_nested_pipeline_cannot_tell_the_first_three_stages_apart() -> None:
    guide, ours = guide_nested_pipeline(), library_pipeline()
    guide_says, ours_says = [], []
    for name in ORDER_STAGES:
        order = {"id": 7, "breaks": name}
        with pytest.raises(GuideSketchPipelineError) as guide_error:
            guide.process(order)
        guide_says.append(str(guide_error.value))
        with pytest.raises(StageError) as our_error:
            ours.process(order)
        ours_says.append((our_error.value.stage, our_error.value.path, our_error.value.input))
    assert guide_says[0] == guide_says[1] == guide_says[2] != guide_says[3]
    assert all("first" in said for said in guide_says[:3])
    assert "second" in guide_says[3]
    assert not any(name in said for said in guide_says for name in ORDER_STAGES)
    assert [s for s, _, _ in ours_says] == list(ORDER_STAGES)
    assert [p for _, p, _ in ours_says] == [f"{n} ({i} of 4)"
                                           for i, n in enumerate(ORDER_STAGES, 1)]
    table = nested_error_table()
    assert "first" in table
    assert "enrich (3 of 4)" in table


def test_guide_batch_stage_calls_per_item_and_ours_per_chunk() -> None:
    for b in (1, 10, 100):
        guide, ours = batching_cost(b, items=1000)
        assert guide.calls == 1000
        assert guide.seconds == pytest.approx(1000 * 0.022)
        assert ours.calls == math.ceil(1000 / b)
        assert ours.seconds == pytest.approx(ours.calls * 0.020 + 1000 * 0.002)


def test_guide_batch_stage_drops_finished_chunks_on_one_failure() -> None:
    def check(x: int) -> int:
        if x == 95:
            raise ValueError("bad")
        return x

    with pytest.raises(GuideSketchStageError):
        GuideSketchBatchStage(GuideSketchFnStage(check), 10).execute(list(range(100)))
    run = run_failures(0.01, items=500, trials=20)
    assert run.guide_delivered < 0.05 * 500  # almost every list had a bad item: nothing back
    assert run.collect_delivered == pytest.approx(run.collect_theory, rel=0.03)
    assert run.fail_salvaged > 10 * max(run.guide_delivered, 1.0)


def test_guide_delivery_agrees_with_all_or_nothing_theory() -> None:
    run = run_failures(0.002, items=500, trials=200, seed=2)
    assert run.guide_delivered == pytest.approx(run.guide_theory, rel=0.15)


# --------------------------------------------------------------------------- figures


def test_figures_and_explorers_build() -> None:
    assert isinstance(draw_line(arrival_rate=50.0, batch_size=4, horizon=5.0), Figure)
    assert isinstance(draw_batching(arrival_rate=100.0), Figure)
    for make in (line_explorer, batching_explorer):
        explorer = make()
        assert explorer.redraws == 1
        assert isinstance(explorer.last_figure, Figure)
