"""Fixtures for the pattern tests: a real ``redis-server`` for the Redis adapters.

The server is started by the tests themselves, on a free loopback port, in a temporary
directory, keeping nothing on disk, and stopped at the end of the session. Without
``redis-server`` on the PATH the Redis tests are skipped, except in CI (the ``CI``
environment variable set, as CI services do): there a missing server is a failure,
so that the tests can never be skipped silently where they must run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from simulations.kit.servers import redis_server as redis_server_process


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[int]:
    """Start ``redis-server`` on a free loopback port; yield the port; stop it."""
    binary = shutil.which("redis-server")
    if binary is None:
        if _in_ci():
            pytest.fail("redis-server is not installed, and CI is set: the Redis tests "
                        "must run in CI (apt-get install redis-server)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with redis_server_process() as port:
        assert port is not None
        yield port
