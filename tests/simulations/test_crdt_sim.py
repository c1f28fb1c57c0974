"""Simulations of guide section 1.3 (CRDT half) assert the behaviour they are meant to show."""

from __future__ import annotations

import itertools
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from patterns.dataflow.crdt import Ordering, VersionVector
from simulations.crdt import (
    GuideSketchGSet,
    GuideSketchReplica,
    GuideSketchVersionVector,
    compare_partition,
    draw_lww_skew,
    draw_partition,
    draw_payload,
    expected_gcounter_delta_units,
    expected_gcounter_full_units,
    gcounter_theory_table,
    guide_comparison_table,
    guide_comparisons,
    lww_setup,
    lww_skew_explorer,
    lww_skew_table,
    partition_evidence,
    partition_explorer,
    partition_setup,
    partition_table,
    payload_explorer,
    payload_table,
    run_lww_skew,
    run_lww_skew_sweep,
    run_partition,
    run_payload,
    run_payload_sweep,
)

# ============================================================================ partition


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_guide_receive_state_loses_acknowledged_updates_and_crdt_loses_none(seed: int) -> None:
    results = compare_partition(seed)
    guide, crdt = results["guide"], results["crdt"]
    assert guide.acknowledged == crdt.acknowledged > 100  # the same clients
    assert guide.lost > 0.5 * guide.acknowledged
    assert crdt.lost == 0
    assert crdt.converged
    assert crdt.final_values == (crdt.acknowledged,) * crdt.nodes
    assert guide.messages == crdt.messages  # the same gossip


def test_crdt_halves_diverge_during_the_partition_and_agree_after_healing() -> None:
    result = run_partition("crdt", seed=1, partition=(20.0, 60.0))
    at = result.times.index(59.0)
    during = [series[at] for series in result.values]
    assert max(during) < result.acknowledged_over_time[at]  # neither half saw everything
    after = result.times.index(100.0)
    assert {series[after] for series in result.values} == {result.acknowledged}


def test_guide_loses_updates_even_without_a_partition() -> None:
    result = run_partition("guide", partition=None, seed=1)
    assert result.lost > 0
    # a stale replica's state overwrites a newer one: values can go down
    assert any(b < a for series in result.values for a, b in itertools.pairwise(series))


def test_crdt_values_never_go_down() -> None:
    result = run_partition("crdt", seed=2)
    for series in result.values:
        assert all(b >= a for a, b in itertools.pairwise(series))


def test_partition_is_deterministic_per_seed() -> None:
    assert run_partition("guide", seed=5) == run_partition("guide", seed=5)
    assert run_partition("crdt", seed=5) != run_partition("crdt", seed=6)


def test_guide_sketch_replica_overwrites() -> None:
    a, b = GuideSketchReplica("a"), GuideSketchReplica("b")
    a.increment()
    a.increment()
    b.increment()
    a.receive_state("b", b.get_state())
    assert a.value == 1  # a's two acknowledged increments are gone


def test_partition_validation() -> None:
    with pytest.raises(ValueError, match="strategy"):
        run_partition("merge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nodes"):
        run_partition(nodes=1)


def test_partition_table_and_figure() -> None:
    evidence = partition_evidence()
    table = partition_table(evidence)
    assert "acknowledged" in table
    assert len(table.splitlines()) == 2 + 4
    crdt_rows = [r for r in evidence if r.strategy == "crdt"]
    assert all(r.lost == 0 for r in crdt_rows)
    assert isinstance(draw_partition(), Figure)


# ============================================================================ comparisons


def test_every_guide_comparison_case_is_wrong() -> None:
    cases = guide_comparisons()
    assert len(cases) >= 5
    assert all(case.wrong for case in cases)
    answers = {case.case: (case.guide, case.correct) for case in cases}
    assert answers["explicit zero (dominates)"] == ("after", "equal")
    assert answers["derived < reverses causality"] == ("before", "after")
    assert answers["two new empty GSets"] == ("concurrent", "equal")
    assert answers["same set after a sync"] == ("before", "equal")
    assert "guide says" in guide_comparison_table()


def test_guide_vector_dominates_fails_on_explicit_zero() -> None:
    with_zero = GuideSketchVersionVector({"A": 1, "B": 0})
    without = GuideSketchVersionVector({"A": 1})
    assert with_zero.dominates(without)
    assert not without.dominates(with_zero)
    assert VersionVector({"A": 1}).dominates(VersionVector({"A": 1, "B": 0}))


def test_guide_gset_counts_its_creation() -> None:
    s = GuideSketchGSet("A")
    assert s.version.versions == {"A": 1}
    assert s.add("A", "x") is True
    assert s.add("A", "x") is False
    assert s.version.versions == {"A": 2}
    assert s.contains("x")
    # the guide's vectors agree with ours where no zero entries and no creation are involved
    a, b = GuideSketchVersionVector({"A": 2}), GuideSketchVersionVector({"A": 3, "B": 1})
    assert a.compare(b) is VersionVector({"A": 2}).compare(VersionVector({"A": 3, "B": 1}))
    assert a.compare(b) is Ordering.BEFORE


# ============================================================================ clock skew


def test_lww_loses_later_writes_only_with_skew_and_sets_counters_never() -> None:
    results = run_lww_skew_sweep((0.0, 0.5, 2.0, 5.0), seed=1)
    assert results[0].lww_lost == 0
    losses = [r.lww_lost for r in results]
    assert losses == sorted(losses)
    assert losses[-1] > 0.1 * results[-1].writes
    for r in results:
        assert r.orset_lost == 0
        assert r.pncounter_lost == 0
        assert r.writes > 500


@pytest.mark.parametrize("seed", [2, 3])
def test_lww_skew_holds_on_other_seeds(seed: int) -> None:
    small, large = run_lww_skew(0.0, seed=seed), run_lww_skew(5.0, seed=seed)
    assert small.lww_lost == 0
    assert large.lww_lost > 0
    assert large.lww_rounds_with_loss <= large.rounds
    assert large.orset_lost == large.pncounter_lost == 0


def test_sweep_runs_the_clockless_crdts_once_and_they_do_not_depend_on_the_skew() -> None:
    sweep = run_lww_skew_sweep((0.0, 5.0), seed=2, horizon=200.0, write_rate=2.0)
    full = run_lww_skew(5.0, seed=2, horizon=200.0, write_rate=2.0)
    assert sweep[1] == full  # the copied OR-Set and PN-Counter figures are the real ones
    register_only = run_lww_skew(5.0, seed=2, horizon=200.0, write_rate=2.0, crdts=False)
    assert register_only.lww_lost == full.lww_lost > 0
    assert run_lww_skew_sweep(()) == ()


def test_lww_skew_validation_table_and_figure() -> None:
    with pytest.raises(ValueError, match="skew"):
        run_lww_skew(-1.0)
    results = run_lww_skew_sweep((0.0, 1.0), horizon=100.0)
    assert "LWW lost" in lww_skew_table(results)
    assert isinstance(draw_lww_skew(results), Figure)


# ============================================================================ payload


@pytest.mark.parametrize("kind", ["gcounter", "pncounter", "orset"])
def test_delta_payload_is_smaller_once_there_are_a_few_replicas(kind: str) -> None:
    for replicas in (4, 8, 16):
        result = run_payload(kind, replicas=replicas, rounds=8)
        assert result.agree
        assert sum(result.delta_per_round) < sum(result.full_per_round)
        assert result.ratio > replicas / 4


def test_full_state_payload_grows_with_replicas_faster_than_delta() -> None:
    sweep = run_payload_sweep((4, 16), kinds=("gcounter",), rounds=8)
    small, large = sweep
    assert large.full_units / small.full_units > 40  # ~n^2 (n - 1)
    assert large.delta_units / small.delta_units < 15  # at most ~n (n - 1), fewer here
    assert large.ratio > 2 * small.ratio


@pytest.mark.parametrize(("replicas", "updates"), [(4, 10), (8, 5), (16, 10), (32, 20)])
def test_gcounter_payload_agrees_with_theory(replicas: int, updates: int) -> None:
    result = run_payload("gcounter", replicas=replicas, updates_per_round=updates, rounds=60)
    expected = expected_gcounter_delta_units(replicas, updates)
    assert result.delta_units == pytest.approx(expected, rel=0.1)
    # full state: every entry present once each replica has incremented (late rounds)
    late = result.full_per_round[-10:]
    assert max(late) <= expected_gcounter_full_units(replicas)
    assert min(late) >= 0.9 * expected_gcounter_full_units(replicas)


def test_orset_full_state_grows_with_updates_and_delta_does_not() -> None:
    result = run_payload("orset", replicas=4, rounds=30)
    assert result.full_per_round[-1] > 5 * result.full_per_round[0]
    assert max(result.delta_per_round) < 3 * min(result.delta_per_round)


def test_payload_validation_determinism_table_and_figure() -> None:
    with pytest.raises(ValueError, match="kind"):
        run_payload("lww")
    with pytest.raises(ValueError, match="replicas"):
        run_payload(replicas=1)
    assert run_payload(seed=3, rounds=5) == run_payload(seed=3, rounds=5)
    sweep = run_payload_sweep((2, 4), rounds=5)
    assert "delta units/round" in payload_table(sweep)
    assert isinstance(draw_payload(sweep, run_payload(replicas=3, rounds=5)), Figure)


def test_gcounter_theory_table() -> None:
    table = gcounter_theory_table((4, 8), rounds=30)
    assert "delta (theory)" in table
    assert len(table.splitlines()) == 4


# ============================================================================ explorers


def test_explorers_redraw_when_a_slider_moves() -> None:
    partition = partition_explorer()
    assert set(partition.controls) == {"nodes", "update_rate", "partition_length",
                                       "sync_interval", "gossip_factor"}
    partition.controls["partition_length"].value = 0.0
    assert partition.redraws == 2
    assert "lost" in partition.last_figure.axes[0].get_title()
    skew = lww_skew_explorer()
    skew.controls["replicas"].value = 4
    assert skew.redraws == 2
    payload = payload_explorer()
    payload.controls["kind"].value = "gcounter"
    assert payload.redraws == 2
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in payload.last_figure.axes)


def test_setups_read_the_defaults_the_prose_quotes() -> None:
    assert partition_setup() == (
        "6 replicas; clients send 4 increments per s until 80 s; every 5 s each replica "
        "sends its state to ceil(5 x 0.5) = 3 peers; partition from 20 s to 60 s")
    assert lww_setup().startswith("3 replicas, about 1 write per s for 600 s, full sync "
                                  "every 5 s")
    assert "lost (%)" in partition_table(partition_evidence())


def drawn(figure: Figure) -> tuple[Any, ...]:
    """What a figure shows (every line's points, bar, text and title), to compare two."""
    parts: list[Any] = []
    for ax in figure.axes:
        parts += [tuple(np.round(line.get_xydata(), 9).ravel()) for line in ax.get_lines()]
        parts += [tuple(np.round(patch.get_bbox().bounds, 9)) for patch in ax.patches]
        parts += [text.get_text() for text in ax.texts] + [ax.get_title()]
    plt.close(figure)
    return tuple(parts)


def steps(control: Any, every: bool) -> list[Any]:
    if hasattr(control, "options"):
        return list(control.options)
    count = round((control.max - control.min) / control.step)
    chosen = range(count + 1) if every else (0, count // 2, count)
    return [round(control.min + i * control.step, 9) for i in chosen]


@pytest.mark.parametrize("make", [partition_explorer, lww_skew_explorer, payload_explorer])
def test_every_control_changes_the_picture(make: Any) -> None:
    explorer = make()
    defaults = explorer.values()
    for name, control in explorer.controls.items():
        # every step of the gossip factor (its peer count is a ceiling: steps can repeat)
        values = steps(control, every=name == "gossip_factor")
        pictures = [drawn(explorer.draw_function(**{**defaults, name: value}))
                    for value in values]
        assert all(a != b for a, b in itertools.pairwise(pictures)), (name, values)
