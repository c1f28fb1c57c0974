"""Tests for :mod:`simulations.lock`: what the 5.1 notebook claims."""

from __future__ import annotations

import gc
from itertools import pairwise

import pytest
from matplotlib.figure import Figure

from patterns.clock import ManualClock
from patterns.consistency.lock import InMemoryLockStore
from simulations.lock import (
    GuideSketchAutoRenew,
    GuideSketchLockGuard,
    PauseResult,
    destructor_demo,
    draw_pause,
    draw_pause_comparison,
    draw_release,
    pause_explorer,
    pause_table,
    release_table,
    renewal_table,
    run_pause,
    run_release,
)


@pytest.mark.parametrize("renewer", ["fixed", "guide"])
def test_a_pause_past_the_lease_corrupts_without_fencing_only(renewer: str) -> None:
    plain = run_pause(3.0, 2.0, 0.5, fencing=False, renewer=renewer)
    fenced = run_pause(3.0, 2.0, 0.5, fencing=True, renewer=renewer)
    for result in (plain, fenced):
        assert result.both_believe > 1.0  # both clients believe they hold the lock
        holders = sorted(result.holds, key=lambda h: h[1])
        assert [h[0] for h in holders] == ["A", "B"]
        assert holders[0][2] <= holders[1][1]  # the store never grants it twice at once
    assert plain.corrupted
    assert plain.stale_accepted >= 1
    assert not fenced.corrupted
    assert fenced.stale_rejected >= 1
    assert fenced.final_value == "B2"
    rejected = [w for w in fenced.writes if not w.accepted]
    assert all(w.client == "A" and w.token == 1 for w in rejected)


def test_a_short_pause_is_harmless() -> None:
    result = run_pause(0.5, 2.0, 0.5, fencing=False)
    assert result.both_believe == 0
    assert not result.corrupted
    assert [h[0] for h in result.holds] == ["A", "B"]
    assert result.final_value == "B2"


def test_a_pause_longer_than_the_ttl_always_lets_b_in() -> None:
    for ttl in (0.5, 1.0, 2.0):
        result = run_pause(ttl + 1.0, ttl, ttl / 4, fencing=True)
        assert result.both_believe > 0
        assert not result.corrupted


def test_the_guides_renewer_lets_the_holder_carry_on_writing() -> None:
    guide = run_pause(3.0, 2.0, 0.5, fencing=False, renewer="guide")
    fixed = run_pause(3.0, 2.0, 0.5, fencing=False, renewer="fixed")
    assert guide.stale_accepted == 4  # the in-flight write and three more
    assert fixed.stale_accepted == 1  # only the in-flight write: then A is told
    a_belief = {r.renewer: next(e for c, _, e in r.beliefs if c == "A") for r in (guide, fixed)}
    assert a_belief["fixed"] < a_belief["guide"]


def test_guide_sketch_renewer_only_logs() -> None:
    clock = ManualClock()
    store = InMemoryLockStore(clock=clock)
    lease = store.try_acquire("a", 1.0)
    assert lease is not None
    clock.advance(2.0)
    renewal = GuideSketchAutoRenew(store, lease, 1.0)
    renewal.renew()
    assert renewal.stopped
    assert "Failed to extend lock" in renewal.log[0]
    assert not hasattr(renewal, "held")  # nothing for the holder to ask


def test_release_from_a_destructor_keeps_the_next_client_waiting() -> None:
    context = run_release("context", 5.0, 3.0)
    cycle = run_release("destructor-cycle", 5.0, 3.0)
    kept = run_release("destructor-kept", 5.0, 3.0)
    assert context.b_waited == pytest.approx(0.0, abs=0.06)
    assert cycle.b_waited == pytest.approx(3.0, abs=0.06)
    assert kept.released_at is None
    assert kept.b_waited == pytest.approx(4.0, abs=0.06)  # until the 5 s lease expired
    with pytest.raises(ValueError, match="mode must be one of"):
        run_release("finalizer")


def test_destructor_demo_shows_the_lock_held_until_gc() -> None:
    assert destructor_demo() == [
        "acquired 'report', fencing token 1",
        "after `del guard`: lock held = True",
        "after gc.collect(): lock held = False",
    ]
    store = InMemoryLockStore()
    lease = store.try_acquire("x", 10.0)
    assert lease is not None
    guard = GuideSketchLockGuard(store, lease)
    del guard  # no cycle: CPython releases at once
    gc.collect()
    assert store.holder("x") is None


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="renewer must be 'fixed' or 'guide', got 'x'"):
        run_pause(renewer="x")
    with pytest.raises(ValueError, match="pause must be >= 0, got -1"):
        run_pause(pause=-1)


def test_runs_are_deterministic_and_tables_render() -> None:
    assert run_pause(2.7, 1.5, 0.4) == run_pause(2.7, 1.5, 0.4)
    table = pause_table()
    assert "stale landed" in table
    assert "yes" in table
    assert "A5" in renewal_table()
    assert "never (lease expired)" in release_table()


def test_figures_and_explorer() -> None:
    for figure in (draw_pause(), draw_pause_comparison(), draw_release()):
        assert isinstance(figure, Figure)
        assert figure.axes
    explorer = pause_explorer()
    explorer.controls["fencing"].value = "off"
    assert explorer.redraws == 2
    last = explorer.last_figure
    assert last is not None
    assert "no fencing, fixed renewer (TTL 2 s, renew every 0.5 s)" in last.axes[0].get_title()
    assert "1 stale write(s) landed" in last.axes[0].get_title()


def test_timeline_agrees_with_the_arithmetic_of_leases() -> None:
    """A's last renewal before the pause (t = 1.0 s) plus the TTL is when the store frees it;
    B gets it at its next retry; both believe from then until A wakes and is told."""
    result = run_pause(3.0, 2.0, 0.5, fencing=True, renewer="fixed")
    (a_hold,) = [h for h in result.holds if h[0] == "A"]
    (b_hold,) = [h for h in result.holds if h[0] == "B"]
    assert a_hold[2] == pytest.approx(1.0 + 2.0)
    assert 3.0 <= b_hold[1] <= 3.0 + 0.05 + 1e-9  # B retries every 50 ms
    assert result.both_believe == pytest.approx((1.1 + 3.0) - b_hold[1])


def _picture(result: PauseResult) -> tuple[object, ...]:
    """What draw_pause draws from a run: lanes, renewal ticks, the lease end, the writes."""
    return (result.holds, result.beliefs, result.renewals, result.lease_end_at_pause,
            tuple((w.time, w.client, w.accepted, w.overwrote_newer) for w in result.writes))


@pytest.mark.parametrize("name", ["pause", "ttl", "renew_interval"])
def test_every_slider_step_changes_the_picture(name: str) -> None:
    explorer = pause_explorer()
    values = {key: control.value for key, control in explorer.controls.items()}
    control = explorer.controls[name]
    steps = round((control.max - control.min) / control.step)
    pictures = []
    for i in range(steps + 1):
        values[name] = round(control.min + i * control.step, 6)
        pictures.append(_picture(run_pause(values["pause"], values["ttl"],
                                           values["renew_interval"], fencing=False)))
    assert all(a != b for a, b in pairwise(pictures))


def test_renewal_ticks_and_the_lease_end_follow_the_arithmetic() -> None:
    result = run_pause(3.0, 2.0, 0.5)
    a_renewals = [at for client, at in result.renewals if client == "A"]
    assert a_renewals[:2] == [0.5, 1.0]  # then the pause freezes the renewer
    assert result.lease_end_at_pause == 1.0 + 2.0
    assert run_pause(3.0, 4.5, 0.5).lease_end_at_pause == 1.0 + 4.5
