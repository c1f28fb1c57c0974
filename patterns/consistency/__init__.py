"""Consistency patterns (guide chapter 5, 一致性模式).

Modules:

* :mod:`patterns.consistency.lock` -- lease locks with fencing tokens, auto-renewal and
  a fenced resource (5.1 分布式锁); in-memory, SQLite and Redis stores.
* :mod:`patterns.consistency.saga` -- orchestrated sagas with a durable log (5.2).
* :mod:`patterns.consistency.twophase` -- two-phase commit (5.2).
* :mod:`patterns.consistency.eventsourcing` -- event store, aggregates, snapshots (5.3).
* :mod:`patterns.consistency.cqrs` -- command and query buses, projections (5.4).
* :mod:`patterns.consistency.idempotency` -- idempotency keys and stores (5.5).
"""
