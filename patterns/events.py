"""Listener registries: how stateful patterns publish what they do.

Patterns publish events (an attempt, a retry, a give-up, a state transition) to
listeners, in the manner of resilience4j's event publishers. Simulations record these
events and draw their plots from them; services log or count them.

The registry is copy-on-write: emitting iterates an immutable snapshot, so a listener may
subscribe or unsubscribe other listeners (or itself) while being called, and no lock is
held while listeners run. A listener that raises is logged and does not disturb the
pattern or the other listeners.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Listener", "Listeners"]

E = TypeVar("E")

Listener = Callable[[E], object]
"""A callable that receives one event."""

_log = logging.getLogger(__name__)


class Listeners(Generic[E]):
    """A thread-safe, copy-on-write set of listeners for events of type ``E``."""

    __slots__ = ("_lock", "snapshot")

    def __init__(self) -> None:
        self.snapshot: tuple[Callable[[E], object], ...] = ()
        """The listeners subscribed now (read it; subscribe with :meth:`add`)."""
        self._lock = threading.Lock()

    def add(self, listener: Callable[[E], object]) -> Callable[[], None]:
        """Subscribe ``listener``; return a function that unsubscribes it again."""
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {listener!r}")
        with self._lock:
            self.snapshot = (*self.snapshot, listener)

        def unsubscribe() -> None:
            self.remove(listener)

        return unsubscribe

    def remove(self, listener: Callable[[E], object]) -> bool:
        """Unsubscribe one registration of ``listener``; return whether it was there."""
        with self._lock:
            items = list(self.snapshot)
            for index, item in enumerate(items):
                if item is listener or item == listener:
                    del items[index]
                    self.snapshot = tuple(items)
                    return True
            return False

    def emit(self, event: E) -> None:
        """Call every listener with ``event``, outside any lock; log listener errors."""
        for listener in self.snapshot:
            try:
                listener(event)
            except Exception:
                _log.exception("listener %r failed on event %r", listener, event)

    def __bool__(self) -> bool:
        return bool(self.snapshot)

    def __len__(self) -> int:
        return len(self.snapshot)

    def __repr__(self) -> str:
        return f"Listeners({len(self.snapshot)} subscribed)"
