"""One poller per mailbox across all workers (SPEC §3).

With Redis (production, tests) a Redis lock with a TTL that the holder keeps extending: if the
holder dies, the lock expires and the next scheduled poll takes over. Without Redis
(`make run` on embedded defaults: one machine, one worker) an flock on a file under var/.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from typing import Protocol

import redis
from django.conf import settings


class Lease(Protocol):
    def renew(self) -> bool: ...


class _RedisLease:
    def __init__(self, lock) -> None:  # type: ignore[no-untyped-def]
        self._lock = lock

    def renew(self) -> bool:
        try:
            return bool(self._lock.reacquire())
        except redis.exceptions.LockError:
            return False


class _FileLease:
    def renew(self) -> bool:
        return True


@contextlib.contextmanager
def mailbox_lock(name: str, ttl: int) -> Iterator[Lease | None]:
    """Yield a lease if this process now polls ``name``, None if another poller does."""
    if settings.REDIS_URL:
        client = redis.Redis.from_url(settings.REDIS_URL)
        lock = client.lock(f"servicedesk:mailbox-poller:{name}", timeout=ttl, blocking=False)
        if not lock.acquire():
            yield None
            return
        try:
            yield _RedisLease(lock)
        finally:
            with contextlib.suppress(redis.exceptions.LockError, redis.exceptions.RedisError):
                lock.release()
        return
    path = settings.VAR_DIR / f"mailbox-{name}.lock"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield _FileLease()
    finally:
        os.close(fd)
