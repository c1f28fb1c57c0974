"""Run a notebook in a fresh kernel, without the stall of a missed reply.

Why not plain ``nbclient.NotebookClient``: its asyncio kernel client waits for each reply
with one ``socket.poll(timeout)`` on a ZeroMQ socket, whose file descriptor is
edge-triggered. On a loaded machine that poll now and then misses the wake-up of a
reply that has already arrived; it then sleeps the whole timeout (600 s here) before its
last look finds the reply, and the run goes on as if nothing happened. That was the
"notebook stalls for about 600 s after a cell" seen in CI. It was reproduced with a
45 s timeout under load: a 45 s gap between one cell's reply and the next cell's start,
with the kernel idle, and the run still "ok".

:class:`SteadyNotebookClient` waits in steps of :data:`POLL_STEP` seconds instead, so a
missed wake-up costs at most one step; the timeout for a cell stays what it was.

Usage::

    from tools.execute import execute
    execute(notebook, directory)          # runs every cell, in place
"""

from __future__ import annotations

from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from nbclient import NotebookClient
from nbformat import NotebookNode

POLL_STEP = 1.0  # seconds: the most a missed wake-up can cost
DEFAULT_TIMEOUT = 600  # seconds per cell


def _poll_in_steps(channel: Any) -> None:
    """Make ``channel.get_msg(timeout)`` wait in steps of at most :data:`POLL_STEP`."""
    original = channel.get_msg

    async def get_msg(timeout: float | None = None) -> dict[str, Any]:
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            step = POLL_STEP if deadline is None else min(POLL_STEP,
                                                          max(0.0, deadline - monotonic()))
            try:
                message: dict[str, Any] = await original(timeout=step)
                return message
            except Empty:
                if deadline is not None and monotonic() >= deadline:
                    raise

    channel.get_msg = get_msg


class SteadyNotebookClient(NotebookClient):  # type: ignore[misc]
    """A ``NotebookClient`` whose waits for replies and outputs cannot miss a wake-up."""

    async def async_start_new_kernel_client(self) -> Any:
        client = await super().async_start_new_kernel_client()
        _poll_in_steps(client.shell_channel)
        _poll_in_steps(client.iopub_channel)
        return client


def execute(notebook: NotebookNode, directory: Path, *, timeout: int = DEFAULT_TIMEOUT,
            **options: Any) -> NotebookNode:
    """Run every cell of ``notebook`` top to bottom in a fresh ``python3`` kernel whose
    working directory is ``directory``; the outputs are written into ``notebook``."""
    SteadyNotebookClient(notebook, timeout=timeout, kernel_name="python3",
                         resources={"metadata": {"path": str(directory)}}, **options).execute()
    return notebook
