"""Fixed-window request counters in the Django cache (Redis in production, so limits hold across replicas)."""

from __future__ import annotations

import time

from django.core.cache import cache

from chat.errors import RateLimited


def hit(scope: str, key: str, limit: int, window_s: int = 60) -> None:
    """Count one request for ``key``; raise RateLimited past ``limit`` per window."""
    bucket = f"rl:{scope}:{key}:{int(time.time() // window_s)}"
    cache.add(bucket, 0, timeout=window_s + 5)
    try:
        count = cache.incr(bucket)
    except ValueError:  # expired between add and incr
        cache.set(bucket, 1, timeout=window_s + 5)
        count = 1
    if count > limit:
        raise RateLimited(f"Too many requests; please wait a moment and try again (limit {limit} per minute).")
