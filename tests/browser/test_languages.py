"""The product in German, in a real browser: a German browser gets the sign-in page in German;
alice, whose profile says German, goes through the issue list, an issue and its comment box, the
Service Desk settings (where she sets the customers' emails to German) and her profile. Every
page says <html lang="de"> and passes axe-core."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from accounts.models import User
from issues.models import Issue, Note
from projects.models import ServiceDeskSetting
from tests.browser.helpers import PASSWORD, assert_accessible, demo_data

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def german_alice(monkeypatch, transactional_db) -> User:  # type: ignore[no-untyped-def]
    demo_data(monkeypatch)
    alice = User.objects.get(username="alice")
    alice.language = "de"
    alice.save(update_fields=["language"])
    return alice


def assert_german(page: Page) -> None:
    expect(page.locator("html")).to_have_attribute("lang", "de")
    assert_accessible(page)


def test_alice_works_in_german(german_alice, live_server, browser: Browser, screenshot) -> None:
    context = browser.new_context(locale="de-DE")
    page = context.new_page()

    # Signed out, the browser's language decides.
    page.goto(f"{live_server.url}/login/")
    assert_german(page)
    page.get_by_label("Benutzername").fill("alice")
    page.get_by_label("Passwort").fill(PASSWORD)
    page.get_by_role("button", name="Anmelden").click()
    expect(page.get_by_role("heading", name="Ihre Projekte")).to_be_visible()
    assert_german(page)

    # The issue list.
    page.get_by_role("link", name="acme/game").click()
    expect(page.get_by_role("heading", name="Tickets", exact=True)).to_be_visible()
    expect(page.get_by_role("navigation", name="Projekt")).to_contain_text("Einstellungen")
    expect(page.get_by_role("link", name="Warten auf uns")).to_be_visible()
    assert_german(page)
    screenshot(page, "de-issue-list")

    # An issue and its comment box.
    issue = Issue.objects.get(project__full_path="acme/game", title__startswith="Game crashes")
    page.get_by_role("link", name=issue.title).first.click()
    expect(page.get_by_role("heading", name=issue.title)).to_be_visible()
    expect(page.get_by_label("Antwort an den Kunden")).to_be_checked()
    expect(page.get_by_role("button", name="Antwort senden", exact=True)).to_be_visible()
    assert_german(page)
    page.get_by_label("Interne Notiz", exact=True).check()
    expect(page.get_by_text("Nur das Team sieht das.")).to_be_visible()
    page.get_by_label("Kommentar", exact=True).fill("Das sehe ich mir an.")
    page.get_by_role("button", name="Interne Notiz hinzufügen", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Interne Notiz hinzugefügt.")
    assert Note.objects.get(body="Das sehe ich mir an.").internal
    assert_german(page)
    screenshot(page, "de-issue")

    # Settings > Service Desk: the customers' emails in German too.
    page.get_by_role("navigation", name="Projekt").get_by_role("link", name="Einstellungen").click()
    expect(page.get_by_role("heading", name="Service Desk", exact=True)).to_be_visible()
    assert_german(page)
    page.get_by_label("Sprache der E-Mails an Kunden").select_option("de")
    page.get_by_role("button", name="Änderungen speichern").click()
    expect(page.get_by_role("status")).to_contain_text("Service-Desk-Einstellungen gespeichert.")
    assert ServiceDeskSetting.objects.get(project__full_path="acme/game").language == "de"
    assert_german(page)
    screenshot(page, "de-settings")

    # The profile, where the language is chosen.
    page.get_by_test_id("profile-link").click()
    expect(page.get_by_role("heading", name="Profil", exact=True)).to_be_visible()
    expect(page.get_by_label("Sprache")).to_have_value("de")
    assert_german(page)
    page.get_by_label("Sprache").select_option("en")
    page.get_by_role("button", name="Profil speichern").click()
    expect(page.get_by_role("status")).to_contain_text("Your profile is saved.")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    context.close()
