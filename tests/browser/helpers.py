"""What every browser test needs: the demo data and signing in as one of its people."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

PASSWORD = "demo-browser-pass"


def demo_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """``manage.py demo`` (alice Owner, bob Reporter, carol Guest, dave no membership)."""
    monkeypatch.setenv("DEMO_PASSWORD", PASSWORD)
    call_command("demo", stdout=io.StringIO())


def log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your projects")).to_be_visible()


# axe-core, vendored from npm (tests/browser/vendor/VENDORED.md). Evaluated through the
# DevTools protocol, which the pages' Content-Security-Policy does not apply to.
AXE_SOURCE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
AXE_OPTIONS = {
    "resultTypes": ["violations"],
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
}


def accessibility_violations(page: Page) -> list[str]:
    """axe-core's WCAG 2.1 A/AA violations on the page as it is now, one line each."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_SOURCE)
    results = page.evaluate("options => window.axe.run(document, options)", AXE_OPTIONS)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in results["violations"]
    ]


def assert_accessible(page: Page) -> None:
    """axe-core's WCAG 2.1 A/AA rules find no violation on the page as it is now."""
    found = accessibility_violations(page)
    assert not found, f"{page.url}:\n" + "\n".join(found)
