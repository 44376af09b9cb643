"""Fixed-window request counters in the Django cache (Redis in production, so limits hold across replicas).

The limiter fails open: while the cache is unreachable, requests are not counted (a customer is never
refused or shown an error because Redis is down). The outage is logged once when it starts and once
when it ends, and for RETRY_AFTER_S after a failure the cache is not asked at all, so a hung Redis
costs one request its socket timeout, not every request.
"""

from __future__ import annotations

import logging
import time

from django.core.cache import cache
from redis.exceptions import RedisError

from chat.errors import RateLimited
from chat.outage import Outage

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5.0
CACHE_ERRORS = (RedisError, OSError)


outage = Outage(
    logger,
    "cache unreachable: rate limits are off until it is back (%s: %s)",
    "cache reachable again after %.0f s: rate limits are on",
    RETRY_AFTER_S,
)


def hit(scope: str, key: str, limit: int, window_s: int = 60) -> None:
    """Count one request for ``key``; raise RateLimited past ``limit`` per window (never if the cache is down)."""
    if outage.skip():
        return
    bucket = f"rl:{scope}:{key}:{int(time.time() // window_s)}"
    try:
        count = _count(bucket, window_s)
    except CACHE_ERRORS as exc:
        outage.failed(exc)
        return
    outage.succeeded()
    if count > limit:
        raise RateLimited(f"Too many requests; please wait a moment and try again (limit {limit} per minute).")


def _count(bucket: str, window_s: int) -> int:
    cache.add(bucket, 0, timeout=window_s + 5)
    try:
        return int(cache.incr(bucket))
    except ValueError:  # expired between add and incr
        cache.set(bucket, 1, timeout=window_s + 5)
        return 1
