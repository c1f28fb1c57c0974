"""The claims of notebook 5.5, checked on the simulation (guide section 5.5)."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from simulations.idempotency import (
    expected_charges,
    keys_across_processes,
    run_payments,
)


def test_the_model_is_deterministic_for_a_seed() -> None:
    one = run_payments(mode="reserve", loss=0.2, orders=100, seed=5)
    two = run_payments(mode="reserve", loss=0.2, orders=100, seed=5)
    assert one == two
    assert run_payments(mode="none", orders=100, seed=6) != run_payments(
        mode="none", orders=100, seed=7)


@pytest.mark.parametrize("loss", [0.1, 0.3])
def test_without_idempotency_charges_follow_theory(loss: float) -> None:
    result = run_payments(mode="none", loss=loss, redelivery=0.05, orders=3000, seed=1)
    theory = expected_charges(loss, 4, idempotent=False, redelivery=0.05)
    assert result.effects_per_order == pytest.approx(theory, rel=0.03)
    assert result.double_charged > 0.08 * result.orders


def test_reserving_the_key_charges_every_order_at_most_once() -> None:
    for loss in (0.0, 0.2, 0.4):
        result = run_payments(mode="reserve", loss=loss, redelivery=0.2, workers=2,
                              orders=400, seed=2)
        assert max(result.charges) == 1
        assert result.effects_per_order == pytest.approx(
            expected_charges(loss, 4, idempotent=True), abs=0.02)


def test_the_guides_check_then_act_lets_concurrent_duplicates_through() -> None:
    # Redeliveries arrive while the first copy is still running: both run.
    guide = run_payments(mode="guide", loss=0.0, redelivery=0.3, orders=400, seed=3)
    reserve = run_payments(mode="reserve", loss=0.0, redelivery=0.3, orders=400, seed=3)
    none = run_payments(mode="none", loss=0.0, redelivery=0.3, orders=400, seed=3)
    assert guide.double_charged >= 50
    assert reserve.double_charged == 0
    assert guide.double_charged <= none.double_charged


def test_a_crash_between_effect_and_record_charges_twice_unless_atomic() -> None:
    two_writes = run_payments(mode="reserve", crash=0.1, loss=0.1, attempts=6, seed=1)
    one_transaction = run_payments(mode="atomic", crash=0.1, loss=0.1, attempts=6, seed=1)
    assert two_writes.double_charged >= 20
    assert one_transaction.double_charged == 0
    assert max(one_transaction.charges) == 1
    # Nothing was lost by the fix: orders still got charged.
    assert one_transaction.never_charged <= two_writes.never_charged + 2


def test_the_builtin_hash_differs_between_processes_the_sha256_key_does_not() -> None:
    table = keys_across_processes(("1", "2"))
    rows = [line.split() for line in table.splitlines()[2:]]
    assert rows[0][1] != rows[1][1]
    assert rows[0][2] == rows[1][2]


def test_bad_parameters_are_refused_with_their_value() -> None:
    with pytest.raises(ValueError, match=r"mode must be one of .* got 'fast'"):
        run_payments(mode="fast")
    with pytest.raises(ValueError, match=r"loss must be within \[0, 1\], got 1.5"):
        run_payments(loss=1.5)
    with pytest.raises(ValueError, match="attempts must be >= 1, got 0"):
        run_payments(attempts=0)


def test_the_figures_draw() -> None:
    from simulations.idempotency import draw_crash_window, draw_loss_sweep

    assert isinstance(draw_loss_sweep(orders=40), Figure)
    assert isinstance(draw_crash_window(orders=40), Figure)
