from __future__ import annotations

import pytest

from tests.browser.helpers import demo_data


@pytest.fixture
def demo(monkeypatch, transactional_db) -> None:  # type: ignore[no-untyped-def]
    demo_data(monkeypatch)


@pytest.fixture(autouse=True)
def fresh_cache(redis_cache_flushed) -> None:  # type: ignore[no-untyped-def]
    """Each browser test signs its people in afresh: the sign-in rate limits (in the cache)
    start from zero, whatever the tests before it did."""
