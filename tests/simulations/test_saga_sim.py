"""The claims of the 5.2 notebook, checked on the simulation module."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from simulations import saga as sim


def test_run_sagas_is_deterministic_and_ends_every_order() -> None:
    first = sim.run_sagas(40, 0.2, seed=3)
    again = sim.run_sagas(40, 0.2, seed=3)
    assert first == again
    assert first.completed + first.compensated == 40
    assert first.compensated > 0
    assert first.compensation_retries > 0


def test_timeline_compensates_in_reverse_after_the_failure() -> None:
    result = sim.run_sagas(60, 0.3, seed=2)
    for timeline in result.timelines:
        kinds = [s.kind for s in timeline.segments]
        if timeline.outcome == "completed":
            assert kinds == ["forward"] * len(sim.STEPS)
            continue
        failed = kinds.index("failed")
        assert kinds[:failed] == ["forward"] * failed
        compensated = [s.step for s in timeline.segments if s.kind == "compensate"]
        assert compensated == list(range(failed, -1, -1))
        starts = [s.start for s in timeline.segments]
        assert starts == sorted(starts)


def test_failure_rate_zero_completes_everything_and_rate_raises_compensations() -> None:
    assert sim.run_sagas(30, 0.0).compensated == 0
    low = sim.run_sagas(200, 0.05).compensated
    high = sim.run_sagas(200, 0.4).compensated
    assert high > 2 * low


def test_two_phase_blocking_matches_theory() -> None:
    base = sim.run_blocking(20, 0.0, 30.0).mean_blocked
    result = sim.run_blocking(300, 0.2, 30.0, seed=4)
    crashes = sum(result.crashed) / len(result.crashed)
    assert result.mean_blocked == pytest.approx(base + crashes * 30.0, rel=0.01)
    assert max(result.blocked) >= 30.0  # a crash blocks for the whole downtime
    assert sim.run_blocking(50, 0.0, 30.0).mean_blocked < 1.0


def test_saga_pitfalls_guide_strands_orders_fix_does_not() -> None:
    results = sim.compare_saga_pitfalls(200, seed=5)
    assert results["guide"]["inconsistent"] > 20
    assert results["fixed"]["inconsistent"] == 0
    assert results["guide"]["crashed"] == results["fixed"]["crashed"] > 0


def test_commit_pitfall_guide_reports_ok_while_half_committed() -> None:
    results = sim.compare_commit_pitfall(200, 0.1, seed=6)
    assert results["guide"]["reported_ok"] == 200
    assert results["guide"]["half_committed"] > 10
    assert results["fixed"]["half_committed"] == 0


def test_tables_and_figures() -> None:
    assert "theory" in sim.blocking_table((0.0, 0.1))
    assert "left inconsistent" in sim.saga_pitfall_table(orders=50)
    assert "half committed" in sim.commit_pitfall_table(transactions=50)
    assert isinstance(sim.draw_saga_timeline(10, 0.2), Figure)
    assert isinstance(sim.draw_blocking(0.1, 30.0, orders=50), Figure)


def _texts(figure: Figure) -> list[object]:
    return [t for ax in figure.axes for t in ax.texts]


def test_timeline_letters_are_legible_and_their_absence_is_said() -> None:
    small = sim.draw_saga_timeline(30, 0.2)
    run = sim.run_sagas(30, 0.2)
    undone = sum(s.kind != "forward" for t in run.timelines for s in t.segments)
    letters = _texts(small)
    assert len(letters) == undone > 0  # every failure and compensation is lettered
    assert min(t.get_fontsize() for t in letters) >= 8  # type: ignore[attr-defined]
    assert small.get_size_inches()[0] <= 10
    (top,) = small.axes[0].child_axes  # the forward steps are named above their columns
    assert [t.get_text() for t in top.get_xticklabels()] == list(sim.STEPS)
    big = sim.draw_saga_timeline(sim.LETTER_LIMIT + 5, 0.2)
    assert _texts(big) == []
    title = big.legends[0].get_title().get_text()
    assert f"above {sim.LETTER_LIMIT} orders" in title
    assert big.get_size_inches()[1] == small.get_size_inches()[1] + 10 * 0.2


def test_explorer_sliders_change_the_timelines_at_every_step() -> None:
    explorer = sim.saga_explorer()
    orders, rate = explorer.controls["orders"], explorer.controls["failure_rate"]
    seen = {sim.run_sagas(n, rate.value).timelines
            for n in range(orders.min, orders.max + 1, orders.step)}
    assert len(seen) == len(range(orders.min, orders.max + 1, orders.step))
    rates = [round(rate.min + i * rate.step, 2)
             for i in range(round((rate.max - rate.min) / rate.step) + 1)]
    assert len({sim.run_sagas(orders.value, r).timelines for r in rates}) == len(rates)


def test_explorer_redraws_once_per_change() -> None:
    # How fast it redraws is measured in benchmarks/bench_sliders.py, not asserted here.
    explorer = sim.saga_explorer()
    explorer.controls["failure_rate"].value = 0.4
    explorer.controls["orders"].value = 60
    assert explorer.redraws == 3


def test_bad_input_names_parameter() -> None:
    with pytest.raises(ValueError, match=r"failure_rate must be within \[0, 1\], got 1.5"):
        sim.run_sagas(10, 1.5)
    with pytest.raises(ValueError, match="orders must be >= 1, got 0"):
        sim.run_sagas(0)
    with pytest.raises(ValueError, match="downtime must be >= 0, got -1"):
        sim.run_blocking(10, 0.1, -1)
