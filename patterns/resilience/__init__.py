"""Chapter 4 of the guide, 容错模式 (fault tolerance).

* :mod:`patterns.resilience.backoff` -- delay schedules with jitter (4.1);
* :mod:`patterns.resilience.budget` -- a retry budget shared by many callers (4.1);
* :mod:`patterns.resilience.retry` -- the retry policy and its drivers (4.1).
"""
