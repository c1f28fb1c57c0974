"""tools/execute.py: waits for kernel messages in short steps, so a missed wake-up of the
ZeroMQ poll costs one step and not the whole cell timeout."""

from __future__ import annotations

import asyncio
from queue import Empty
from time import monotonic

import pytest

from tools import execute


class Channel:
    """A channel whose message arrives at ``ready_at``, but whose poll only notices it when
    its timeout runs out (a missed wake-up), like the edge-triggered ZeroMQ poll."""

    def __init__(self, ready_at: float) -> None:
        self.ready_at = ready_at
        self.waits: list[float | None] = []

    async def get_msg(self, timeout: float | None = None) -> dict[str, str]:
        self.waits.append(timeout)
        if timeout is None:
            raise AssertionError("a wait without end would never notice the message")
        await asyncio.sleep(timeout)
        if monotonic() >= self.ready_at:
            return {"msg_type": "execute_reply"}
        raise Empty


@pytest.fixture(autouse=True)
def short_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(execute, "POLL_STEP", 0.05)


def test_a_missed_wake_up_costs_one_step_not_the_timeout() -> None:
    channel = Channel(ready_at=monotonic() + 0.12)
    execute._poll_in_steps(channel)
    started = monotonic()
    assert asyncio.run(channel.get_msg(timeout=600)) == {"msg_type": "execute_reply"}
    assert monotonic() - started < 5  # not 600 s
    assert all(w is not None and w <= 0.05 for w in channel.waits)
    assert len(channel.waits) >= 3


def test_no_timeout_waits_in_steps_for_ever_until_the_message() -> None:
    channel = Channel(ready_at=monotonic() + 0.12)
    execute._poll_in_steps(channel)
    assert asyncio.run(channel.get_msg()) == {"msg_type": "execute_reply"}


def test_the_timeout_still_ends_the_wait() -> None:
    channel = Channel(ready_at=monotonic() + 3600)
    execute._poll_in_steps(channel)
    started = monotonic()
    with pytest.raises(Empty):
        asyncio.run(channel.get_msg(timeout=0.2))
    assert 0.2 <= monotonic() - started < 2


def test_a_notebook_runs_through_the_steady_client(tmp_path: object) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    notebook = new_notebook(cells=[new_code_cell("x = 6 * 7"), new_code_cell("print(x)")])
    execute.execute(notebook, execute.Path("."), timeout=60)
    assert notebook.cells[1].outputs[0]["text"] == "42\n"
    assert nbformat.validate(notebook) is None
