"""Tests for :class:`patterns.resilience.ratelimit.RedisGCRALimiter` against a real Redis.

The ``redis_server`` fixture (``conftest.py``) starts ``redis-server`` on a loopback port;
without it these tests are skipped, except in CI, where they fail.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections.abc import Iterator
from fractions import Fraction

import pytest

if os.environ.get("CI", "").strip().lower() in ("", "0", "false", "no"):
    redis = pytest.importorskip("redis")  # the client is pinned in requirements.txt
else:
    import redis  # in CI a missing client is a failure, never a silent skip

from patterns.clock import ManualClock
from patterns.resilience.ratelimit import (
    GCRALimiter,
    RateLimiterStats,
    RateLimitExceededError,
    RedisGCRALimiter,
    Rejected,
    TieredRateLimiter,
    rate_limited,
)
from patterns.resilience.ratelimit.redis_limiter import GCRA_SCRIPT

_keys = itertools.count()


@pytest.fixture
def client(redis_server: int) -> Iterator[redis.Redis]:
    connection = redis.Redis(host="127.0.0.1", port=redis_server)
    connection.flushall()
    yield connection
    connection.close()


@pytest.fixture
def key() -> str:
    return f"limit:test:{next(_keys)}"


def stored(client: redis.Redis, key: str) -> tuple[int, int]:
    """The state the script keeps: (tat in whole µs, remainder in 1/L µs)."""
    whole, _, part = client.get(key).decode().partition(":")
    return int(whole), int(part or 0)


def take_all(limiter: RedisGCRALimiter, limit: int = 1000) -> int:
    for admitted in range(limit):
        if not limiter.try_acquire():
            return admitted
    raise AssertionError("never refused")


# =========================================================================== decisions


def test_admits_the_burst_then_refuses(client: redis.Redis, key: str) -> None:
    # A very slow rate: no permit comes back while the test runs.
    limiter = RedisGCRALimiter(client, key, 0.001, 5)
    assert take_all(limiter) == 5
    assert limiter.stats() == RateLimiterStats(admitted=5, rejected=1)
    assert limiter.time_until() == pytest.approx(1000.0, abs=0.01)
    assert limiter.time_until(5) == pytest.approx(5000.0, abs=0.01)
    assert limiter.time_until(6) == math.inf


def test_a_refused_request_writes_nothing(client: redis.Redis, key: str) -> None:
    # The guide's limiter adds every request to its sorted set before counting, so a
    # flood of refused requests keeps everyone out. Here a refusal changes nothing.
    limiter = RedisGCRALimiter(client, key, 0.001, 3)
    assert take_all(limiter) == 3
    state = client.get(key)
    for _ in range(200):
        assert not limiter.try_acquire()
    assert client.get(key) == state
    assert limiter.stats() == RateLimiterStats(admitted=3, rejected=201)


def test_a_flood_of_refusals_does_not_delay_the_next_admission(client: redis.Redis,
                                                               key: str) -> None:
    limiter = RedisGCRALimiter(client, key, 20.0, 1)
    assert limiter.try_acquire()
    wait = limiter.time_until()
    assert 0.0 < wait <= 0.05
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline - 0.005:  # refused requests in the meantime
        limiter.try_acquire()
    time.sleep(max(0.0, deadline - time.monotonic()) + 0.002)
    assert limiter.try_acquire()  # the flood did not push the next permit back


def test_permits_come_back_with_the_server_clock(client: redis.Redis, key: str) -> None:
    limiter = RedisGCRALimiter(client, key, 50.0, 2, clock=ManualClock())
    assert take_all(limiter) == 2
    # The limiter's own clock is frozen; only the server's time matters for decisions.
    time.sleep(0.045)  # a little over 2 permits at 50/s
    assert take_all(limiter) == 2


def test_the_blocking_driver_waits_as_the_server_says(client: redis.Redis, key: str) -> None:
    limiter = RedisGCRALimiter(client, key, 40.0, 1)
    started = time.monotonic()
    for _ in range(4):
        assert limiter.acquire()
    assert time.monotonic() - started >= 3 / 40 - 0.005
    assert limiter.stats() == RateLimiterStats(admitted=4, rejected=0)
    assert not limiter.acquire(timeout=0.001)


def test_weighted_requests_and_refund(client: redis.Redis, key: str) -> None:
    limiter = RedisGCRALimiter(client, key, 0.001, 10)
    assert limiter.try_acquire(7)
    assert not limiter.try_acquire(4)
    assert limiter.try_acquire(3)
    limiter.refund(2)
    assert limiter.try_acquire(2)
    assert not limiter.try_acquire()
    limiter.refund(100)  # never beyond a full bucket: the key is simply gone
    assert not client.exists(key)
    assert limiter.try_acquire(10)
    assert limiter.attempt(11) == math.inf  # never sent to the server


def test_server_time_not_client_time(client: redis.Redis, key: str) -> None:
    limiter = RedisGCRALimiter(client, key, 1.0, 1, clock=ManualClock(-1e9))
    seconds, micros = client.time()
    server_now = seconds * 1_000_000 + micros
    assert abs(limiter.server_time_us() - server_now) < 200_000
    assert limiter.try_acquire()
    tat, _ = stored(client, key)
    # The stored theoretical arrival time is the server's now plus one interval.
    assert abs(tat - (server_now + 1_000_000)) < 200_000
    assert "redis.call('TIME')" in GCRA_SCRIPT


def test_exact_fractions_of_a_microsecond(client: redis.Redis, key: str) -> None:
    # 1.5 per second is 666,666 2/3 µs per permit: held as q + r/L, nothing truncated.
    limiter = RedisGCRALimiter(client, key, 1.5, 3)
    assert limiter.interval_us == Fraction(2_000_000, 3)
    start = limiter.server_time_us()
    states = []
    for _ in range(3):
        assert limiter.try_acquire()
        states.append(stored(client, key))
    # The remainders carry: 2/3, 4/3 = 1 + 1/3, 3/3 = 1 + 0 (in thirds of a µs) ...
    assert [frac for _, frac in states] == [2, 1, 0]
    assert client.get(key) == str(states[2][0]).encode()  # no remainder: a plain integer
    # ... so the three intervals add up to exactly 2 s after the first one's start.
    assert states[2][0] - states[0][0] == 1_333_334
    assert 666_666 <= states[0][0] - start < 666_666 + 100_000
    limiter.refund(1)
    assert stored(client, key) == states[1]


def test_the_key_expires_once_the_bucket_is_full_again(client: redis.Redis, key: str) -> None:
    limiter = RedisGCRALimiter(client, key, 10.0, 4)
    assert limiter.try_acquire(2)  # full again 0.2 s from now
    ttl = client.pttl(key)
    assert 0 < ttl <= 202
    time.sleep(0.25)
    assert not client.exists(key)


def test_same_instant_requests_are_all_counted(client: redis.Redis, key: str) -> None:
    # The guide stores one sorted-set member per millisecond, so requests in the same
    # millisecond overwrite each other. 200 requests in one pipeline (well within a
    # few milliseconds) are all counted here.
    limiter = RedisGCRALimiter(client, key, 0.001, 100)
    script = client.register_script(GCRA_SCRIPT)
    q, r = divmod(limiter.interval_us.numerator, limiter.interval_us.denominator)
    pipe = client.pipeline(transaction=False)
    for _ in range(200):
        script(keys=[key], args=[q, r, limiter.interval_us.denominator, limiter._tolerance,
                                 1, "take"], client=pipe)
    results = pipe.execute()
    assert sum(wait == 0 for wait in results) == 100


# =========================================================================== sharing


def test_concurrent_clients_never_over_admit(redis_server: int, key: str) -> None:
    # 8 threads, each its own connection (its own "instance"), 60 attempts each, on a
    # limit that refills too slowly to matter: exactly the burst is admitted, atomically.
    admitted = [0] * 8
    start = threading.Barrier(8)

    def instance(index: int) -> None:
        connection = redis.Redis(host="127.0.0.1", port=redis_server)
        limiter = RedisGCRALimiter(connection, key, 0.001, 25)
        start.wait()
        for _ in range(60):
            admitted[index] += limiter.try_acquire()
        connection.close()

    threads = [threading.Thread(target=instance, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(admitted) == 25


def test_concurrent_clients_share_the_rate(redis_server: int, key: str) -> None:
    # 4 instances hammer a shared 100/s limit (burst 5) for 0.3 s: together they get
    # burst + rate * elapsed, no more.
    admitted = [0] * 4
    start = threading.Barrier(4)
    began = [0.0]

    def instance(index: int) -> None:
        connection = redis.Redis(host="127.0.0.1", port=redis_server)
        limiter = RedisGCRALimiter(connection, key, 100.0, 5)
        start.wait()
        if index == 0:
            began[0] = time.monotonic()
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            admitted[index] += limiter.try_acquire()
        connection.close()

    threads = [threading.Thread(target=instance, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began[0]
    assert sum(admitted) <= 5 + 100 * elapsed + 1
    assert sum(admitted) >= 5 + 100 * 0.3 * 0.8  # and the limit is actually used


def test_tiered_local_limiter_in_front(client: redis.Redis, key: str) -> None:
    local = GCRALimiter(0.001, 3)
    shared = RedisGCRALimiter(client, key, 0.001, 2)
    tier = TieredRateLimiter(local, shared)
    events: list[object] = []
    tier.listeners.add(events.append)
    assert tier.try_acquire()
    assert tier.try_acquire()
    assert not tier.try_acquire()  # the shared limit refused: the local permit came back
    assert local.time_until() == 0.0
    assert local.try_acquire()  # so a local permit is still there
    calls = shared.stats().total
    assert not tier.try_acquire()  # now the local tier refuses: Redis is not asked
    assert shared.stats().total == calls
    assert isinstance(events[-1], Rejected)


def test_decorator_with_redis(client: redis.Redis, key: str) -> None:
    limiter = RedisGCRALimiter(client, key, 0.001, 1)

    @rate_limited(limiter)
    def handle() -> str:
        return "ok"

    assert handle() == "ok"
    with pytest.raises(RateLimitExceededError) as caught:
        handle()
    assert caught.value.retry_after == pytest.approx(1000.0, abs=0.01)


def test_from_url(redis_server: int, key: str) -> None:
    limiter = RedisGCRALimiter.from_url(f"redis://127.0.0.1:{redis_server}/0", key, 1.0, 2)
    assert take_all(limiter) == 2


# =========================================================================== validation


def test_validation(client: redis.Redis) -> None:
    with pytest.raises(TypeError, match="client must be a Redis client"):
        RedisGCRALimiter(object(), "k", 1.0, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key must be a non-empty str"):
        RedisGCRALimiter(client, "", 1.0, 1)
    with pytest.raises(TypeError, match="key must be a non-empty str"):
        RedisGCRALimiter(client, b"k", 1.0, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rate must be > 0, got 0"):
        RedisGCRALimiter(client, "k", 0, 1)
    with pytest.raises(ValueError, match="burst must be >= 1, got 0"):
        RedisGCRALimiter(client, "k", 1.0, 0)
    with pytest.raises(ValueError, match="rate must be at most 1e9"):
        RedisGCRALimiter(client, "k", 1e13, 1)
    with pytest.raises(ValueError, match="too long a window"):
        RedisGCRALimiter(client, "k", 1e-6, 10**6)
    assert repr(RedisGCRALimiter(client, "k", 2.0, 3)) == \
        "RedisGCRALimiter(key='k', rate=2.0, burst=3)"


# ---------------------------------------------------------------------------- Redis away


def _unreachable_client() -> redis.Redis:
    import socket

    from redis.backoff import NoBackoff
    from redis.retry import Retry

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2,
                       retry=Retry(NoBackoff(), 0))


def test_unreachable_redis_raises_by_default() -> None:
    limiter = RedisGCRALimiter(_unreachable_client(), "limit:away", rate=10, burst=2)
    with pytest.raises(redis.exceptions.ConnectionError):
        limiter.try_acquire()
    with pytest.raises(redis.exceptions.ConnectionError):  # no cooldown when raising
        limiter.try_acquire()
    assert limiter.unavailable == 0


class _FlakyClient:
    """A client whose script fails while ``down`` is set (counting the attempts), and
    otherwise runs on ``real`` Redis, if any."""

    def __init__(self, real: redis.Redis | None = None) -> None:
        self.real, self.down, self.attempts = real, False, 0

    def register_script(self, script: str):  # type: ignore[no-untyped-def]
        run = self.real.register_script(script) if self.real is not None else None

        def call(**kwargs: object) -> object:
            self.attempts += 1
            if self.down or run is None:
                raise redis.exceptions.TimeoutError("Timeout reading from socket")
            return run(**kwargs)

        return call


def test_fail_open_admits_and_fail_closed_rejects_while_redis_is_away(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    away = _FlakyClient()
    open_limiter = RedisGCRALimiter(away, "limit:away", rate=10, burst=2, clock=clock,
                                    when_unavailable="admit", unavailable_cooldown=5.0)
    assert all(open_limiter.try_acquire() for _ in range(5))  # no limit at all
    assert open_limiter.time_until() == 0.0
    assert away.attempts == 1  # the cooldown spares the dead server (and the caller's time)
    clock.advance(5.0)
    assert open_limiter.try_acquire()
    assert away.attempts == 2  # after the cooldown it asks again
    closed = RedisGCRALimiter(_FlakyClient(), "limit:away", rate=10, burst=2, clock=clock,
                              when_unavailable="reject")
    assert not any(closed.try_acquire() for _ in range(3))
    assert closed.time_until() == pytest.approx(0.1)  # ask again after one interval
    closed.refund()  # lost, not raised
    assert (open_limiter.unavailable, closed.unavailable) == (7, 5)
    assert open_limiter.stats() == RateLimiterStats(admitted=6, rejected=0)
    assert closed.stats() == RateLimiterStats(admitted=0, rejected=3)
    assert caplog.text.count("Redis unavailable") == 2  # once per outage, not per call


def test_a_real_unreachable_server_is_tried_once_per_cooldown() -> None:
    limiter = RedisGCRALimiter(_unreachable_client(), "limit:away", rate=10, burst=2,
                               when_unavailable="admit", unavailable_cooldown=60.0)
    started = time.monotonic()
    assert all(limiter.try_acquire() for _ in range(100))
    assert time.monotonic() - started < 5.0  # one failed connection, not a hundred


def test_limits_resume_when_redis_is_back(client: redis.Redis, key: str,
                                          caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    flaky = _FlakyClient(client)
    limiter = RedisGCRALimiter(flaky, key, rate=1, burst=2, clock=clock,
                               when_unavailable="admit", unavailable_cooldown=1.0)
    assert [limiter.try_acquire() for _ in range(3)] == [True, True, False]
    flaky.down = True
    assert [limiter.try_acquire() for _ in range(3)] == [True, True, True]  # blind
    flaky.down = False
    assert limiter.try_acquire()  # still cooling down: blind
    clock.advance(1.0)
    assert not limiter.try_acquire()  # the shared state is still there: limited again
    assert limiter.unavailable == 4
    assert "Redis is back" in caplog.text


def test_when_unavailable_and_cooldown_are_validated(client: redis.Redis) -> None:
    with pytest.raises(ValueError, match=r"when_unavailable must be one of .* got 'open'"):
        RedisGCRALimiter(client, "k", rate=1, burst=1, when_unavailable="open")
    with pytest.raises(ValueError, match="unavailable_cooldown"):
        RedisGCRALimiter(client, "k", rate=1, burst=1, unavailable_cooldown=-1.0)


# =========================================================================== issue 11


@pytest.fixture(scope="module")
def password_server() -> Iterator[int]:
    """A second throw-away redis-server that requires a password ("s3cret")."""
    import shutil
    import socket
    import subprocess
    import tempfile

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    with tempfile.TemporaryDirectory(prefix="redis-auth-") as directory:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory, "--requirepass", "s3cret"],
            cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            give_up = time.monotonic() + 10.0
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > give_up:
                        raise RuntimeError("redis-server with a password did not start") \
                            from None
                    time.sleep(0.02)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _no_retry() -> dict[str, object]:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {"socket_connect_timeout": 2.0, "retry": Retry(NoBackoff(), 0)}


@pytest.mark.parametrize("mode", ["admit", "reject", "raise"])
@pytest.mark.parametrize("credentials", [
    {"password": "wrong"},  # WRONGPASS
    {},  # NOAUTH: no password at all
    {"username": "nobody", "password": "s3cret"},  # no such user
])
def test_a_wrong_password_raises_whatever_the_mode(password_server: int, mode: str,
                                                   credentials: dict[str, str]) -> None:
    # A wrong password used to count as "Redis is down": with when_unavailable="admit"
    # every request went through, and limiting was silently off.
    client = redis.Redis(host="127.0.0.1", port=password_server, **credentials, **_no_retry())
    limiter = RedisGCRALimiter(client, "limit:auth", 1.0, 1, when_unavailable=mode)
    for _ in range(3):
        with pytest.raises(redis.exceptions.AuthenticationError):
            limiter.try_acquire()
    with pytest.raises(redis.exceptions.AuthenticationError):
        limiter.time_until()
    with pytest.raises(redis.exceptions.AuthenticationError):
        limiter.refund()
    assert limiter.unavailable == 0
    assert limiter.stats() == RateLimiterStats(admitted=0, rejected=0)
    client.close()


def test_the_right_password_limits(password_server: int) -> None:
    client = redis.Redis(host="127.0.0.1", port=password_server, password="s3cret")
    limiter = RedisGCRALimiter(client, f"limit:auth:{next(_keys)}", 0.001, 2,
                               when_unavailable="admit")
    assert take_all(limiter) == 2
    client.close()


def test_a_user_without_permission_raises(password_server: int) -> None:
    admin = redis.Redis(host="127.0.0.1", port=password_server, password="s3cret")
    admin.execute_command("ACL", "SETUSER", "reader", "on", ">pw", "~*", "+get")
    client = redis.Redis(host="127.0.0.1", port=password_server, username="reader",
                         password="pw")
    limiter = RedisGCRALimiter(client, "limit:perm", 1.0, 1, when_unavailable="admit")
    with pytest.raises(redis.exceptions.NoPermissionError):
        limiter.try_acquire()
    assert limiter.unavailable == 0
    client.close()
    admin.close()


def test_a_wrong_database_raises(redis_server: int) -> None:
    client = redis.Redis(host="127.0.0.1", port=redis_server, db=99, **_no_retry())
    limiter = RedisGCRALimiter(client, "limit:db", 1.0, 1, when_unavailable="admit")
    with pytest.raises(redis.exceptions.ResponseError, match="DB index"):
        limiter.try_acquire()
    assert limiter.unavailable == 0


@pytest.mark.parametrize("mode", ["admit", "reject"])
def test_a_key_that_does_not_hold_a_limit_raises(client: redis.Redis, key: str,
                                                 mode: str) -> None:
    limiter = RedisGCRALimiter(client, key, 1.0, 1, when_unavailable=mode)
    client.rpush(key, "a list")
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        limiter.try_acquire()
    client.delete(key)
    client.set(key, "not a time")
    with pytest.raises(redis.exceptions.ResponseError, match="GCRA"):
        limiter.try_acquire()
    assert client.get(key) == b"not a time"  # left as it was
    assert limiter.unavailable == 0


class _FailingClient:
    """A client whose script raises ``error`` on every call."""

    def __init__(self, error: BaseException) -> None:
        self.error, self.attempts = error, 0

    def register_script(self, script: str):  # type: ignore[no-untyped-def]
        def call(**kwargs: object) -> object:
            self.attempts += 1
            raise self.error

        return call


@pytest.mark.parametrize("error", [
    redis.exceptions.ResponseError("unknown command 'EVALSHA'"),
    redis.exceptions.ResponseError("Error running script (call to f_0): @user_script:1: x"),
    redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
    redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
    redis.exceptions.AuthorizationError("not authorized"),
    redis.exceptions.DataError("Invalid input of type: 'dict'"),
])
def test_misconfiguration_raises_in_every_mode(error: Exception) -> None:
    for mode in ("admit", "reject"):
        limiter = RedisGCRALimiter(_FailingClient(error), "limit:x", 1.0, 1,
                                   when_unavailable=mode)
        with pytest.raises(type(error)):
            limiter.try_acquire()
        assert limiter.unavailable == 0


@pytest.mark.parametrize("error", [
    redis.exceptions.ConnectionError("Error 111 connecting. Connection refused."),
    redis.exceptions.TimeoutError("Timeout reading from socket"),
    redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
    redis.exceptions.ResponseError("BUSY Redis is busy running a script. You can only "
                                   "call SCRIPT KILL or SHUTDOWN NOSAVE."),
    redis.exceptions.MasterDownError("Link with MASTER is down"),
    redis.exceptions.TryAgainError("Multiple keys request during rehashing of slot"),
    ConnectionResetError("reset by peer"),
])
def test_connectivity_failures_are_unavailability(error: Exception) -> None:
    limiter = RedisGCRALimiter(_FailingClient(error), "limit:x", 1.0, 1,
                               when_unavailable="admit")
    assert limiter.try_acquire()
    assert limiter.unavailable == 1


# --------------------------------------------------------------------------- lean script


def _commands(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()
            if name not in ("cmdstat_info", "cmdstat_config|resetstat")}


@pytest.mark.parametrize(("rate", "burst", "admitted"), [
    (0.001, 1, False),  # refused: nothing written
    (1e5, 10**6, True),  # admitted, the state stored
    (1.5, 10**6, True),  # admitted, with a remainder of a microsecond
])
def test_a_decision_is_one_evalsha_reading_time_and_state(client: redis.Redis, key: str,
                                                          rate: float, burst: int,
                                                          admitted: bool) -> None:
    # It used to be EVALSHA + TIME + HMGET + HSET + PEXPIRE (5) per admission.
    limiter = RedisGCRALimiter(client, key, rate, burst)
    limiter.try_acquire()  # the state exists (and the script is loaded)
    client.config_resetstat()
    results = [limiter.try_acquire() for _ in range(50)]
    assert all(results) if admitted else not any(results)
    commands = _commands(client)
    writes = {"set": 50} if admitted else {}
    assert commands == {"evalsha": 50, "time": 50, "get": 50, **writes}


def test_the_script_is_loaded_again_after_a_flush(client: redis.Redis, key: str) -> None:
    limiter = RedisGCRALimiter(client, key, 0.001, 2)
    assert limiter.try_acquire()
    client.script_flush()  # a restart or a failover loses the script cache
    assert limiter.try_acquire()
    assert not limiter.try_acquire()


def test_importing_the_limiters_does_not_import_redis() -> None:
    # redis is an optional backend, imported only by those who use it: a module-level
    # table of its error classes imported it with every limiter (issue 11 review).
    import subprocess
    import sys

    code = ("import sys, patterns.resilience.ratelimit, patterns.resilience.guards; "
            "print('redis' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "False"
