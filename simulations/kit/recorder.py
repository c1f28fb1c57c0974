"""A recorder of events over simulated time: the single source of every plot.

Models call :meth:`Recorder.record` for their own events, and subscribe
:meth:`Recorder.listener` to a pattern's listeners to capture the pattern's events
(retries, give-ups, state transitions). Plots and summaries are then computed from the
record, never from counters kept on the side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from patterns.clock import Clock


@dataclass(frozen=True, slots=True)
class Record:
    """One event: when, what kind, from which source, and its fields."""

    time: float
    kind: str
    source: str
    data: dict[str, Any] = field(default_factory=dict)


class Recorder:
    """Collects :class:`Record` rows and answers questions about them."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def record(self, time: float, kind: str, source: str = "", **data: Any) -> None:
        """Add one event."""
        self.records.append(Record(float(time), kind, source, data))

    def listener(self, source: str, clock: Clock | None = None) -> Callable[[object], None]:
        """A listener for a pattern's events: each is stored under its class name.

        The event's own ``time`` is used when it has one, else ``clock.now()``.
        """

        field_names: dict[type, tuple[str, ...] | None] = {}

        def on_event(event: object) -> None:
            time = getattr(event, "time", None)
            if time is None:
                if clock is None:
                    raise ValueError(f"event {event!r} has no time and no clock was given")
                time = clock.now()
            kind = type(event)
            names = field_names.get(kind)
            if names is None:
                names = field_names[kind] = (
                    tuple(f.name for f in dataclasses.fields(event) if f.name != "time")
                    if dataclasses.is_dataclass(event) else None
                )
            if names is None:
                fields = {k: v for k, v in vars(event).items() if k != "time"}
            else:
                fields = {name: getattr(event, name) for name in names}
            self.records.append(Record(float(time), kind.__name__, source, fields))

        return on_event

    def select(self, kind: str | None = None, source: str | None = None) -> list[Record]:
        """The records of one kind and/or source, in time order of recording."""
        return [
            r for r in self.records
            if (kind is None or r.kind == kind) and (source is None or r.source == source)
        ]

    def times(self, kind: str | None = None, source: str | None = None) -> np.ndarray:
        """The times of the selected records, as an array (seconds)."""
        return np.fromiter((r.time for r in self.select(kind, source)), dtype=float)

    def count(self, kind: str | None = None, source: str | None = None) -> int:
        """How many records match."""
        return len(self.select(kind, source))

    def rate(
        self,
        kind: str,
        *,
        bin_width: float,
        until: float,
        source: str | None = None,
        start: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Events per second in bins of ``bin_width`` seconds: (bin starts, rates)."""
        if bin_width <= 0:
            raise ValueError(f"bin_width must be > 0, got {bin_width!r}")
        if until <= start:
            raise ValueError(f"until must be > start ({start!r}), got {until!r}")
        edges = np.arange(start, until + bin_width * 0.5, bin_width)
        if edges[-1] < until:
            edges = np.append(edges, until)
        counts, _ = np.histogram(self.times(kind, source), bins=edges)
        return edges[:-1], counts / np.diff(edges)

    def __len__(self) -> int:
        return len(self.records)
