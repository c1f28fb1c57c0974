"""An idempotency store on Redis (guide section 5.5, ``RedisIdempotencyStore``, fixed).

The guide's store writes the *response* with ``SET NX EX`` after the handler has run, so
the key is claimed only when the work is already done: two concurrent duplicates both
run it. Here ``SET key <in-progress record> NX PX <lease>`` is the **reservation**, made
before the work; Redis answers it for exactly one caller. The reservation is one Lua
script (:data:`RESERVE_SCRIPT`): it sets the record if the key is free and otherwise
returns the record that holds it, so a duplicate check is one round trip, not a ``SET``
then a ``GET``. The in-progress record expires
with its lease, so a crashed owner's key frees itself; completing (or failing, or
releasing) is a Lua script that checks the owner token and writes in one step, so an
owner whose lease passed to another caller cannot overwrite that caller's record.

Expiry is kept by the server (``PX``): the store's records carry ``expires_at = None``
and :meth:`purge_expired` has nothing to do. The ``redis`` package is imported only by
:meth:`RedisIdempotencyStore.from_url`; any client with ``get`` and
``register_script`` works. Leases and TTLs are bounded (``MAX_DURATION``) where they
are given, so Redis never refuses an expiry after the effect has run.
"""

from __future__ import annotations

import json
from typing import Any, Final

from patterns.consistency.idempotency._store import (
    IdempotencyKeyReusedError,
    IdempotencyRecord,
    IdempotencyStore,
    LeaseLostError,
    RecordState,
    Reservation,
    _check_text,
    _validate_finish,
    _validate_reserve,
    check_key,
    new_token,
)

__all__ = ["FINISH_SCRIPT", "RELEASE_SCRIPT", "RESERVE_SCRIPT", "RedisIdempotencyStore"]

RESERVE_SCRIPT: Final = """
-- Reserve a key, or say who holds it, in one round trip (guide section 5.5, fixed).
-- KEYS[1] the record; ARGV the in-progress record, the lease in ms.
-- Returns nil when reserved, else the record that is there.
local value = redis.call('GET', KEYS[1])
if value then return value end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""

FINISH_SCRIPT: Final = """
-- Complete or fail a reservation, only for its owner (guide section 5.5, fixed).
-- KEYS[1] the record; ARGV token, new state, response text, ttl in ms. Returns 1 or 0.
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local record = cjson.decode(value)
if record.token ~= ARGV[1] or record.state ~= 'in_progress' then return 0 end
record.state = ARGV[2]
record.response = ARGV[3]
redis.call('SET', KEYS[1], cjson.encode(record), 'PX', ARGV[4])
return 1
"""

RELEASE_SCRIPT: Final = """
-- Give a reservation up, only for its owner. KEYS[1] the record; ARGV[1] the token.
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local record = cjson.decode(value)
if record.token ~= ARGV[1] or record.state ~= 'in_progress' then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisIdempotencyStore(IdempotencyStore):
    """Keys in Redis, shared by every process that reaches the server."""

    def __init__(self, client: Any, *, prefix: str = "idempotency:") -> None:
        for method in ("get", "register_script"):
            if not callable(getattr(client, method, None)):
                raise TypeError(f"client must be a Redis client (no {method}()), got {client!r}")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {prefix!r}")
        _check_text("prefix", prefix)
        self.client = client
        self.prefix = prefix
        self._reserve_script = client.register_script(RESERVE_SCRIPT)
        self._finish_script = client.register_script(FINISH_SCRIPT)
        self._release_script = client.register_script(RELEASE_SCRIPT)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisIdempotencyStore:
        """Connect with the ``redis`` package (imported here, not at module import)."""
        import redis  # optional dependency

        return cls(redis.Redis.from_url(url), **options)

    def _decode(self, key: str, raw: bytes | str) -> IdempotencyRecord:
        data = json.loads(raw)
        response = data.get("response")
        return IdempotencyRecord(key, RecordState(data["state"]), data["fp"], data["token"],
                                 response if isinstance(response, str) else None, None)

    def reserve(self, key: str, fingerprint: str, *, lease: float) -> Reservation:
        _validate_reserve(key, fingerprint, lease)
        token = new_token()
        value = json.dumps({"state": RecordState.IN_PROGRESS.value, "fp": fingerprint,
                            "token": token})
        raw = self._reserve_script(keys=[self.prefix + key], args=[value, _ms(lease)])
        if raw is None:
            return Reservation(True, token, None)
        record = self._decode(key, raw)
        if record.fingerprint != fingerprint:
            raise IdempotencyKeyReusedError(key, record.fingerprint, fingerprint)
        return Reservation(False, None, record)

    def _finish(self, key: str, token: str, state: RecordState, text: str,
                ttl: float) -> None:
        done = self._finish_script(keys=[self.prefix + key],
                                   args=[token, state.value, text, _ms(ttl)])
        if int(done) != 1:
            raise LeaseLostError(key, token)

    def complete(self, key: str, token: str, response: str, *, ttl: float) -> None:
        _validate_finish(key, token, response, ttl, "response")
        self._finish(key, token, RecordState.COMPLETED, response, ttl)

    def fail(self, key: str, token: str, error: str, *, ttl: float) -> None:
        _validate_finish(key, token, error, ttl, "error")
        self._finish(key, token, RecordState.FAILED, error, ttl)

    def complete_unrecorded(self, key: str, token: str, reason: str, *, ttl: float) -> None:
        _validate_finish(key, token, reason, ttl, "reason")
        self._finish(key, token, RecordState.COMPLETED_UNRECORDED, reason, ttl)

    def release(self, key: str, token: str) -> bool:
        check_key(key)
        _check_text("token", token)
        return int(self._release_script(keys=[self.prefix + key], args=[token])) == 1

    def get(self, key: str) -> IdempotencyRecord | None:
        check_key(key)
        raw = self.client.get(self.prefix + key)
        return None if raw is None else self._decode(key, raw)

    def __repr__(self) -> str:
        return f"RedisIdempotencyStore(prefix={self.prefix!r})"
