"""Real servers for tests and notebooks: a throw-away ``redis-server`` on loopback.

:func:`redis_server` starts Debian's (or Homebrew's) ``redis-server`` on a free port of
127.0.0.1, in a temporary directory, keeping nothing on disk, and stops it on exit.
Tests use it through the ``redis_server`` fixture in ``tests/patterns/conftest.py``;
notebooks use it directly. Nothing else in the course needs a server.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["redis_available", "redis_server"]


def redis_available() -> bool:
    """Whether ``redis-server`` is installed (on the PATH)."""
    return shutil.which("redis-server") is not None


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


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def redis_server() -> Iterator[int | None]:
    """Start a throw-away ``redis-server``; yield its port (``None`` if not installed)."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="redis-") as name:
        directory = Path(name)
        log = directory / "redis.log"
        for _attempt in range(3):  # another process may take the port between probe and bind
            port = _free_port()
            process = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(directory), "--logfile", str(log)],
                cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            )
            try:
                _wait_until_listening(process, port, log)
            except RuntimeError:
                _stop(process)
                continue
            try:
                yield port
            finally:
                _stop(process)
            return
        raise RuntimeError("could not start redis-server after 3 attempts")
