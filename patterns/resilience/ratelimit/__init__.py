"""Rate limiting (guide section 4.5, 流量控制与限流).

* :mod:`~patterns.resilience.ratelimit.limiters` -- seven in-process algorithms: token
  bucket, leaky bucket (meter and queue), GCRA, fixed window, sliding log, sliding
  window counter;
* :mod:`~patterns.resilience.ratelimit.tiered` -- a local limiter in front of a shared one;
* :mod:`~patterns.resilience.ratelimit.middleware` -- a decorator that limits a function;
* :mod:`~patterns.resilience.ratelimit.redis_limiter` -- GCRA shared through Redis, one
  atomic Lua script per decision (the ``redis`` client is imported only there).

Every limiter has the same contract (:class:`RateLimiter`): ``try_acquire(n)`` admits or
refuses at once, ``time_until(n)`` says how long until ``n`` would fit, and the drivers
``acquire`` (blocking), ``aacquire`` (asyncio) and ``simpy_acquire`` (SimPy) wait.
"""

from patterns.resilience.ratelimit._base import (
    Admitted,
    RateLimiter,
    RateLimiterStats,
    RateLimitEvent,
    RateLimitExceededError,
    Rejected,
)
from patterns.resilience.ratelimit.limiters import (
    FixedWindowLimiter,
    GCRALimiter,
    LeakyBucket,
    LeakyBucketQueue,
    SlidingLogLimiter,
    SlidingWindowCounterLimiter,
    TokenBucket,
)
from patterns.resilience.ratelimit.middleware import RateLimitMiddleware, rate_limited
from patterns.resilience.ratelimit.redis_limiter import RedisGCRALimiter
from patterns.resilience.ratelimit.tiered import TieredRateLimiter

__all__ = [
    "Admitted",
    "FixedWindowLimiter",
    "GCRALimiter",
    "LeakyBucket",
    "LeakyBucketQueue",
    "RateLimitEvent",
    "RateLimitExceededError",
    "RateLimitMiddleware",
    "RateLimiter",
    "RateLimiterStats",
    "RedisGCRALimiter",
    "Rejected",
    "SlidingLogLimiter",
    "SlidingWindowCounterLimiter",
    "TieredRateLimiter",
    "TokenBucket",
    "rate_limited",
]
