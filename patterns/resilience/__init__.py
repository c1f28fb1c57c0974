"""Chapter 4 of the guide, 容错模式 (fault tolerance).

* :mod:`patterns.resilience.backoff` -- delay schedules with jitter (4.1);
* :mod:`patterns.resilience.budget` -- a retry budget shared by many callers (4.1);
* :mod:`patterns.resilience.retry` -- the retry policy and its drivers (4.1);
* :mod:`patterns.resilience.breaker` -- the circuit breaker (4.2);
* :mod:`patterns.resilience.bulkhead` -- semaphore and thread-pool bulkheads (4.3);
* :mod:`patterns.resilience.timeout` -- cancellation tokens and timeouts that cancel (4.4);
* :mod:`patterns.resilience.ratelimit` -- rate limiters, local and on Redis (4.5);
* :mod:`patterns.resilience.guards` -- all of them stacked in the right order, with the
  reasons for that order (4.1-4.5).
"""
