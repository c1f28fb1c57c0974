"""Resilient design patterns: a typed, standard-library-only implementation of the guide.

Each module implements sections of the guide *Rust 复杂设计模式与架构设计模式全面指南*
(the section numbers below are the guide's). Where things live:

Foundations

* :mod:`patterns.clock` -- the ``Clock`` protocol every pattern reads time through
  (``MONOTONIC``, ``WALL_CLOCK`` for deadlines stored on disk, ``ManualClock`` for tests);
* :mod:`patterns.events` -- listener registries for the events patterns publish;
* :mod:`patterns.storage.sqlite` -- SQLite opened safely for many threads and processes.

Chapter 1, data flow (:mod:`patterns.dataflow`)

* :mod:`patterns.dataflow.pipeline` -- stages, pipelines, batching (1.1);
* :mod:`patterns.dataflow.reactive` -- observables, backpressure, demand (1.2);
* :mod:`patterns.dataflow.crdt` and :mod:`patterns.dataflow.gossip` -- CRDTs and gossip (1.3).

Chapter 4, fault tolerance (:mod:`patterns.resilience`)

* :mod:`patterns.resilience.backoff`, :mod:`~patterns.resilience.budget`,
  :mod:`~patterns.resilience.retry` -- back-off, retry budgets, retry policies (4.1);
* :mod:`patterns.resilience.breaker` -- the circuit breaker (4.2);
* :mod:`patterns.resilience.bulkhead` -- bulkheads (4.3);
* :mod:`patterns.resilience.timeout` -- deadlines, cancellation tokens, timeouts (4.4);
* :mod:`patterns.resilience.ratelimit` -- rate limiters, local and on Redis (4.5);
* :mod:`patterns.resilience.guards` -- the one way to stack timeout, retry, breaker,
  bulkhead and limiter around a call, in the order that is right by default.

Chapter 5, consistency (:mod:`patterns.consistency`)

* :mod:`patterns.consistency.lock` -- lease locks with fencing tokens (5.1);
* :mod:`patterns.consistency.saga` and :mod:`~patterns.consistency.twophase` -- sagas
  and two-phase commit (5.2);
* :mod:`patterns.consistency.eventsourcing` -- event store, aggregates, outbox (5.3);
* :mod:`patterns.consistency.cqrs` -- command and query buses, projections (5.4);
* :mod:`patterns.consistency.idempotency` -- idempotency keys and stores (5.5).

Decision logic never reads a wall clock and never sleeps by itself: time enters through
a :class:`~patterns.clock.Clock`, and thin drivers do the waiting: ``call`` (blocking),
``await acall`` (asyncio) and ``yield from simpy_call(env, ...)`` (SimPy). The same
policy object therefore runs in a thread pool, in an asyncio service and inside a
discrete-event simulation. A sync driver refuses an ``async def`` function with a
``TypeError`` (use ``acall``), and every decorator keeps an ``async def`` a coroutine
function. Bad arguments raise ``ValueError`` or ``TypeError`` naming the parameter and
the value.

Optional backends (``redis``) are imported only inside their adapter modules.
"""

__version__ = "0.1.0"
