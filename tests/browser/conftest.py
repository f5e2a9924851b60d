from __future__ import annotations

import pytest

from tests.browser.helpers import demo_data


@pytest.fixture
def demo(monkeypatch, transactional_db) -> None:  # type: ignore[no-untyped-def]
    demo_data(monkeypatch)
