"""Idempotency and duplicate requests (guide section 5.5, 幂等性与重复请求处理).

* :class:`ContentKeyGenerator`, :func:`fingerprint`, :func:`canonical_encoding`: stable
  keys (SHA-256 of a canonical encoding, never the per-process salted :func:`hash`).
* :class:`IdempotencyStore` and its adapters :class:`InMemoryIdempotencyStore`,
  :class:`SQLiteIdempotencyStore` and ``redis_store.RedisIdempotencyStore``: a key is
  *reserved* before the work (in progress, completed, failed), with a lease and expiry.
* :class:`IdempotencyHandler` and :func:`idempotent`: the effect runs once per key and
  every caller gets the same response; blocking, asyncio and SimPy drivers. An effect
  that ran never runs again, even when its response cannot be recorded
  (:class:`ResponseNotRecordedError`).
"""

from patterns.consistency.idempotency._handler import (
    DuplicateInProgress,
    EffectCompleted,
    EffectFailed,
    EffectStarted,
    Execute,
    IdempotencyEvent,
    IdempotencyHandler,
    OnInProgress,
    Replay,
    RequestFailedError,
    RequestInProgressError,
    ResponseNotRecorded,
    ResponseNotRecordedError,
    ResponseReplayed,
    Wait,
    idempotent,
)
from patterns.consistency.idempotency._keys import (
    ContentKeyGenerator,
    canonical_encoding,
    fingerprint,
)
from patterns.consistency.idempotency._store import (
    IdempotencyError,
    IdempotencyKeyReusedError,
    IdempotencyRecord,
    IdempotencyStore,
    InMemoryIdempotencyStore,
    LeaseLostError,
    RecordState,
    Reservation,
    SQLiteIdempotencyStore,
)

__all__ = [
    "ContentKeyGenerator",
    "DuplicateInProgress",
    "EffectCompleted",
    "EffectFailed",
    "EffectStarted",
    "Execute",
    "IdempotencyError",
    "IdempotencyEvent",
    "IdempotencyHandler",
    "IdempotencyKeyReusedError",
    "IdempotencyRecord",
    "IdempotencyStore",
    "InMemoryIdempotencyStore",
    "LeaseLostError",
    "OnInProgress",
    "RecordState",
    "Replay",
    "RequestFailedError",
    "RequestInProgressError",
    "Reservation",
    "ResponseNotRecorded",
    "ResponseNotRecordedError",
    "ResponseReplayed",
    "SQLiteIdempotencyStore",
    "Wait",
    "canonical_encoding",
    "fingerprint",
    "idempotent",
]
