"""Reactive data flow with backpressure (guide section 1.2, 反应式数据流).

* Push streams in the manner of ReactiveX: :class:`Observable`, :class:`Observer`,
  :class:`Subject`, :class:`Subscription`, and the operators ``map``, ``filter``,
  ``scan``, ``take``, ``merge``, ``buffer_with_count`` and ``buffer_with_time``. The
  observer contract is enforced by the library (see :class:`Sink`), and no lock is held
  while observers run.
* Schedulers for time-based operators: :class:`VirtualTimeScheduler` (tests),
  :class:`ThreadScheduler`, :class:`AsyncioScheduler` (and a SimPy one in
  ``simulations.reactive``).
* Backpressure by strategy: :class:`BackpressureBuffer` with the
  :class:`OverflowStrategy` ``BUFFER``, ``DROP_NEWEST``, ``DROP_OLDEST``, ``LATEST``,
  ``ERROR``; the bound always holds.
* Backpressure by demand, as in Reactive Streams: :class:`Publisher`,
  :class:`Subscriber`, :class:`DemandSubscription` with ``request(n)`` and ``cancel()``;
  :class:`IterablePublisher`, :class:`DemandPublisher`, :func:`iterate`, :func:`aiterate`.
"""

from patterns.dataflow.reactive._backpressure import (
    BackpressureBuffer,
    BufferClosedError,
    BufferEvent,
    BufferMetrics,
    BufferOverflowError,
    Entry,
    ItemDropped,
    Offer,
    OverflowStrategy,
)
from patterns.dataflow.reactive._demand import (
    UNBOUNDED,
    DemandPublisher,
    DemandSubscription,
    IterablePublisher,
    Publisher,
    Subscriber,
    aiterate,
    iterate,
)
from patterns.dataflow.reactive._observable import (
    Disposable,
    Observable,
    Observer,
    Sink,
    Subject,
    Subscription,
    merge,
)
from patterns.dataflow.reactive._schedulers import (
    AsyncioScheduler,
    Cancellable,
    Scheduler,
    ThreadScheduler,
    VirtualTimeScheduler,
)

__all__ = [
    "UNBOUNDED",
    "AsyncioScheduler",
    "BackpressureBuffer",
    "BufferClosedError",
    "BufferEvent",
    "BufferMetrics",
    "BufferOverflowError",
    "Cancellable",
    "DemandPublisher",
    "DemandSubscription",
    "Disposable",
    "Entry",
    "ItemDropped",
    "IterablePublisher",
    "Observable",
    "Observer",
    "Offer",
    "OverflowStrategy",
    "Publisher",
    "Scheduler",
    "Sink",
    "Subject",
    "Subscriber",
    "Subscription",
    "ThreadScheduler",
    "VirtualTimeScheduler",
    "aiterate",
    "iterate",
    "merge",
]
