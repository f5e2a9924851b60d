"""Fixed-window rate limits, counted in Redis when there is one (shared by every worker).

``hit_many`` counts a whole batch of hits in one pipelined round trip. Without Redis
(`make run` on embedded defaults) the Django cache counts, per process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import lru_cache

import redis
from django.conf import settings
from django.core.cache import cache


@lru_cache(maxsize=1)
def _redis(url: str):  # type: ignore[no-untyped-def]
    return redis.Redis.from_url(url)


def hit_many(keys: Sequence[str], *, limit: int, window: int) -> list[bool]:
    """Count one hit per key (a key may repeat); True where that hit is over ``limit``."""
    if not keys or limit <= 0:
        return [False] * len(keys)
    bucket = int(time.time() // window)
    names = [f"servicedesk:ratelimit:{key}:{bucket}" for key in keys]
    url = getattr(settings, "REDIS_CACHE_URL", "") or getattr(settings, "REDIS_URL", "")
    if url:
        pipe = _redis(url).pipeline(transaction=False)
        for name in names:
            pipe.incr(name)
            pipe.expire(name, window + 1, nx=True)
        counts = pipe.execute()[::2]
    else:
        counts = []
        for name in names:
            cache.add(name, 0, timeout=window + 1)
            try:
                counts.append(cache.incr(name))
            except ValueError:  # expired between add and incr
                cache.set(name, 1, timeout=window + 1)
                counts.append(1)
    return [count > limit for count in counts]


def hit(key: str, *, limit: int, window: int) -> bool:
    return hit_many([key], limit=limit, window=window)[0]
