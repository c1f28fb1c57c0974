"""Resilient design patterns: a typed, standard-library-only implementation of the guide.

The package follows the chapters of the guide (``../shared/seed``):

* :mod:`patterns.clock` -- the ``Clock`` protocol every pattern reads time through;
* :mod:`patterns.events` -- listener registries for pattern events;
* :mod:`patterns.resilience` -- chapter 4, fault tolerance (retry and back-off, ...).

Decision logic never reads a wall clock and never sleeps by itself: time enters through
a :class:`~patterns.clock.Clock`, and thin drivers (blocking, asyncio, SimPy) do the
waiting. The same policy object therefore runs in a thread pool, in an asyncio service
and inside a discrete-event simulation.
"""

__version__ = "0.1.0"
