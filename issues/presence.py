"""Who else has an issue open, and who is writing a reply: presence in the cache.

Each open issue page sends a heartbeat every ``SERVICEDESK_PRESENCE_POLL`` seconds (htmx). A
viewer is one short-lived key per (issue, user), so somebody who closes the tab disappears after
two and a half heartbeats without any "leave" message. To list the viewers of an issue without
scanning keys (which Django's cache API cannot do), the issue also keeps an index of the users
seen recently; it is only written when somebody new arrives, and one ``get_many`` reads all
their keys. Two people arriving in the same instant may overwrite each other's index entry: the
next heartbeat (which finds itself missing) puts it back, so a viewer is at worst one poll late.

Works with any cache backend: Redis in production, the in-process cache of ``make run`` (one
process serves every request there).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from accounts.models import User

INDEX_TTL = 3600  # the index outlives its entries; each arrival renews it


def presence_poll_seconds() -> int:
    return max(1, settings.SERVICEDESK_PRESENCE_POLL)


def _viewer_ttl() -> int:
    return int(presence_poll_seconds() * 2.5) + 1  # two missed heartbeats and a bit: gone


@dataclass(frozen=True)
class Viewer:
    user_id: int
    name: str
    writing: str  # "", "reply" or "internal" (an internal note)


def _index_key(issue_id: int) -> str:
    return f"presence:{issue_id}"


def _viewer_key(issue_id: int, user_id: int) -> str:
    return f"presence:{issue_id}:{user_id}"


def presence_touch(*, issue_id: int, user: User, writing: str) -> None:
    """``user`` has the issue open, and is writing a reply or an internal note (``writing``
    is "reply" or "internal") or not ("")."""
    cache.set(_viewer_key(issue_id, user.pk), {"writing": writing}, _viewer_ttl())
    index: dict[int, str] = cache.get(_index_key(issue_id)) or {}
    if index.get(user.pk) != user.display_name:
        index[user.pk] = user.display_name
        cache.set(_index_key(issue_id), index, INDEX_TTL)


def presence_leave(*, issue_id: int, user: User) -> None:
    """The user posted or left: stop showing them at once rather than after the TTL."""
    cache.delete(_viewer_key(issue_id, user.pk))


def presence_others(*, issue_id: int, user: User) -> list[Viewer]:
    """Everyone else with the issue open now: those writing first, then by name."""
    index: dict[int, str] = cache.get(_index_key(issue_id)) or {}
    others = {pk: name for pk, name in index.items() if pk != user.pk}
    if not others:
        return []
    live = cache.get_many([_viewer_key(issue_id, pk) for pk in others])
    viewers = []
    for pk, name in others.items():
        state = live.get(_viewer_key(issue_id, pk))
        if state is not None:
            viewers.append(Viewer(user_id=pk, name=name, writing=state.get("writing", "")))
    if len(viewers) < len(others):
        # Forget the ones who left, unless that index changed under us meanwhile (then the
        # next heartbeat tidies it).
        gone = set(others) - {v.user_id for v in viewers}
        current: dict[int, str] = cache.get(_index_key(issue_id)) or {}
        if gone & set(current):
            for pk in gone:
                current.pop(pk, None)
            cache.set(_index_key(issue_id), current, INDEX_TTL)
    return sorted(viewers, key=lambda v: (not v.writing, v.name.lower()))
