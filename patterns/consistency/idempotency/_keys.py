"""Stable idempotency keys: a SHA-256 of a canonical encoding (guide section 5.5).

The guide's ``ContentBasedKeyGenerator`` hashes the request with Rust's ``DefaultHasher``,
whose algorithm is not guaranteed to stay the same between Rust releases; the Python
analogue, the built-in :func:`hash`, is *salted per process* (``PYTHONHASHSEED``), so two
processes, or one process after a restart, compute different keys for the same request,
and a retry is then never recognised as a duplicate. Here the key is a SHA-256 of a
canonical byte encoding that every process and every Python version computes alike.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import hashlib
import json
import math
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["ContentKeyGenerator", "canonical_encoding", "fingerprint"]


def _tag(name: str, value: Any) -> dict[str, Any]:
    return {"$" + name: value}


def _text(value: str, path: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"cannot encode a string with a lone surrogate at {path} "
                         f"(position {error.start}; it has no UTF-8 encoding): "
                         f"{value[:40]!r}") from None
    return value


def _canonical(value: Any, path: str) -> Any:
    # Order matters: bool before int, enum before its mixin type.
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _text(value, path)
    if isinstance(value, enum.Enum):
        return _tag("enum", [type(value).__qualname__, _canonical(value.value, path)])
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot encode a non-finite float at {path}: {value!r}")
        # repr is the shortest string that round-trips, the same on every platform;
        # -0.0 and 0.0 compare equal, so they encode alike. 1.0 and 1 stay distinct.
        return _tag("float", repr(value + 0.0))
    if isinstance(value, bytes | bytearray | memoryview):
        return _tag("bytes", base64.b64encode(bytes(value)).decode("ascii"))
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"cannot encode a naive datetime at {path} (its instant is "
                             f"ambiguous; attach a timezone): {value!r}")
        return _tag("datetime", value.astimezone(dt.UTC).isoformat())
    if isinstance(value, dt.date):
        return _tag("date", value.isoformat())
    if isinstance(value, dt.time):
        if value.tzinfo is not None:
            raise ValueError(f"cannot encode a time with a timezone at {path}: {value!r}")
        return _tag("time", value.isoformat())
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot encode a non-finite Decimal at {path}: {value!r}")
        return _tag("decimal", str(value.normalize()))
    if isinstance(value, uuid.UUID):
        return _tag("uuid", str(value))
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"mapping keys must be str at {path}, got {key!r} "
                                f"({type(key).__name__})")
            _text(key, f"{path} (a key)")
            # A user key that starts with "$" is escaped so it can never pose as a tag.
            out["$" + key if key.startswith("$") else key] = _canonical(item, f"{path}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_canonical(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, set | frozenset):
        items = [_canonical(item, f"{path}{{}}") for item in value]
        return _tag("set", sorted(items, key=_dumps))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return _tag("dataclass", [type(value).__qualname__, _canonical(fields, path)])
    raise TypeError(f"cannot encode a {type(value).__name__} at {path}: {value!r} (use "
                    "JSON types, bytes, dates, Decimal, UUID, enums, sets or dataclasses)")


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def canonical_encoding(value: Any) -> bytes:
    """The canonical UTF-8 bytes of ``value``: equal values give equal bytes, everywhere.

    JSON with sorted keys and no spaces; floats by their shortest round-trip ``repr``
    (non-finite floats are refused); ``bytes`` as base64, aware datetimes in UTC (naive
    ones are refused), dates, ``Decimal``, ``UUID``, enums, sets (sorted) and dataclasses
    as tagged objects. Anything else raises :class:`TypeError` naming where it was.
    """
    return _dumps(_canonical(value, "request")).encode("utf-8")


def fingerprint(value: Any) -> str:
    """The SHA-256 (hex) of :func:`canonical_encoding` of ``value``."""
    return hashlib.sha256(canonical_encoding(value)).hexdigest()


_MAX_NAMESPACE = 512 - 1 - 64  # "<namespace>:<64 hex digits>" fits a key


class ContentKeyGenerator:
    """Keys from the request's content (guide section 5.5, ``ContentBasedKeyGenerator``).

    ``generate_key(request)`` is ``"<namespace>:<sha256 of the canonical encoding>"``:
    the same request gives the same key in every process, on every machine. Use it when
    two identical requests *are* the same operation; when a client may legitimately send
    the same payload twice (two equal payments), let the client send its own key.
    """

    __slots__ = ("namespace",)

    def __init__(self, namespace: str) -> None:
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be a str, got {namespace!r}")
        if not namespace or ":" in namespace or namespace.isspace():
            raise ValueError(f"namespace must be non-empty and contain no ':', got {namespace!r}")
        _text(namespace, "namespace")
        if len(namespace) > _MAX_NAMESPACE:
            raise ValueError(f"namespace must be at most {_MAX_NAMESPACE} characters (a key "
                             f"is at most 512), got {len(namespace)} characters")
        self.namespace = namespace

    def generate_key(self, request: Any) -> str:
        return f"{self.namespace}:{fingerprint(request)}"

    def __repr__(self) -> str:
        return f"ContentKeyGenerator({self.namespace!r})"
