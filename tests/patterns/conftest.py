"""Fixtures for the pattern tests: a real ``redis-server`` for the Redis adapters.

The server is started by the tests themselves, on a free loopback port, in a temporary
directory, keeping nothing on disk, and stopped at the end of the session. Without
``redis-server`` on the PATH the Redis tests are skipped, except in CI (the ``CI``
environment variable set, as CI services do): there a missing server is a failure,
so that the tests can never be skipped silently where they must run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 10.0
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                    timeout=0.2):
            return
        if process.poll() is not None or time.monotonic() > deadline:
            output = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"redis-server did not start on port {port}:\n{output}")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Start ``redis-server`` on a free loopback port; yield the port; stop it."""
    binary = shutil.which("redis-server")
    if binary is None:
        if _in_ci():
            pytest.fail("redis-server is not installed, and CI is set: the Redis tests "
                        "must run in CI (apt-get install redis-server)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    directory = tmp_path_factory.mktemp("redis")
    log = directory / "redis.log"
    for _attempt in range(3):  # another process may grab the port between probe and bind
        port = _free_port()
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(directory), "--logfile", str(log)],
            cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_listening(process, port, log)
        except RuntimeError:
            process.terminate()
            process.wait(timeout=10)
            continue
        try:
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        return
    raise RuntimeError("could not start redis-server after 3 attempts")
