"""Settings > Service Desk and the members page in a real browser, as alice (Owner) of the demo
project; bob (Reporter) may not open the settings."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from projects.models import Membership, ServiceDeskSetting
from servicedesk.config import MailboxConfig
from tests.browser.helpers import demo_data, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

INCOMING = MailboxConfig(name="incoming_email", enabled=True, address="in+%{key}@sd.example")
ALIAS = MailboxConfig(name="service_desk_email", enabled=True, address="help+%{key}@sd.example")


@pytest.fixture
def demo(monkeypatch, transactional_db, settings) -> None:  # type: ignore[no-untyped-def]
    demo_data(monkeypatch)
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}


def save_settings(page: Page) -> None:
    page.get_by_role("button", name="Save changes").click()


def test_owner_configures_service_desk_email_templates_and_members(
    demo, live_server, browser: Browser, screenshot
) -> None:
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    log_in(page, live_server.url, "alice")
    page.get_by_role("link", name="acme/game").click()
    page.get_by_role("navigation", name="Project").get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="Service Desk", exact=True)).to_be_visible()
    setting = ServiceDeskSetting.objects.get(project__full_path="acme/game")
    address = page.get_by_test_id("service-desk-address").first
    expect(address).to_have_text(f"in+{setting.default_key}@sd.example")
    screenshot(page, "settings-service-desk")

    # Service Desk off, then on again.
    page.get_by_label("Activate Service Desk").uncheck()
    save_settings(page)
    expect(page.get_by_role("status")).to_contain_text("Service Desk settings saved.")
    expect(page.get_by_test_id("service-desk-address")).to_have_count(0)
    expect(page.get_by_text("Service Desk is off")).to_be_visible()
    assert not ServiceDeskSetting.objects.get(pk=setting.pk).service_desk_enabled
    page.get_by_label("Activate Service Desk").check()
    save_settings(page)
    expect(page.get_by_test_id("service-desk-address").first).to_be_visible()
    assert ServiceDeskSetting.objects.get(pk=setting.pk).service_desk_enabled

    # Copy the address: the clipboard holds it and the button says so.
    copy = page.get_by_test_id("copy-address").first
    copy.focus()
    page.keyboard.press("Enter")  # keyboard works as well as a click
    expect(copy).to_have_attribute("data-copied", "true")
    expect(copy).to_have_accessible_name("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == f"in+{setting.default_key}@sd.example"

    # A custom suffix: invalid (error next to the field, nothing saved), then valid.
    page.get_by_label("Custom email address suffix").fill("Help Desk!")
    save_settings(page)
    error = page.locator("#id_project_key_error")
    expect(error).to_have_text("Only lowercase letters, digits and underscores are allowed.")
    expect(page.get_by_label("Custom email address suffix")).to_have_attribute(
        "aria-invalid", "true"
    )
    assert ServiceDeskSetting.objects.get(pk=setting.pk).project_key == ""
    page.get_by_label("Custom email address suffix").fill("help_desk")
    page.get_by_label("Email display name").fill("ACME Support")
    save_settings(page)
    expect(page.get_by_role("status")).to_contain_text("Service Desk settings saved.")
    expect(page.get_by_test_id("service-desk-address").nth(1)).to_have_text(
        "help+acme-game-help_desk@sd.example"
    )
    saved = ServiceDeskSetting.objects.get(pk=setting.pk)
    assert (saved.project_key, saved.outgoing_name) == ("help_desk", "ACME Support")

    # The thank-you email: the default text is there; typing updates the preview (htmx).
    page.get_by_role("link", name="Thank you").click()
    editor = page.get_by_label("Template (Markdown)")
    expect(editor).to_have_value(re.compile(r"Thank you for your message"))
    preview = page.get_by_test_id("email-preview")
    expect(preview).to_contain_text("opened ticket #42")
    expect(preview).to_contain_text("ACME Support")
    editor_url = page.url
    editor.fill("")
    editor.press_sequentially("Hello from **ACME**: your ticket is %{ISSUE_ID}.", delay=5)
    expect(preview.locator("strong")).to_have_text("ACME")
    expect(preview).to_contain_text("Hello from ACME: your ticket is #42.")
    expect(preview).not_to_contain_text("Thank you for your message")
    assert page.url == editor_url  # swapped in place, no page load
    screenshot(page, "settings-template-preview")
    page.get_by_role("button", name="Save template").click()
    expect(page.get_by_role("status")).to_contain_text("email template is saved")
    assert ServiceDeskSetting.objects.get(pk=setting.pk).thank_you_template == (
        "Hello from **ACME**: your ticket is %{ISSUE_ID}."
    )
    expect(page.get_by_role("button", name="Reset to default")).to_be_visible()

    # Regenerate the address, after a confirmation.
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Service Desk").click()
    old_address = page.get_by_test_id("service-desk-address").first.inner_text()
    page.get_by_role("link", name="Regenerate address…").click()
    expect(page.get_by_text("keeps working for 24 hours")).to_be_visible()
    page.get_by_role("button", name="Regenerate address").click()
    expect(page.get_by_role("status")).to_contain_text("New address generated")
    new_address = page.get_by_test_id("service-desk-address").first.inner_text()
    token = ServiceDeskSetting.objects.get(pk=setting.pk).address_token
    assert new_address != old_address
    assert token in new_address
    expect(page.get_by_test_id("previous-address")).to_contain_text(old_address)

    # Members: add dave as Reporter, make him Developer, remove him.
    page.get_by_role("navigation", name="Project").get_by_role("link", name="Members").click()
    page.get_by_label("Username").fill("dave")
    page.get_by_label("Role", exact=True).select_option(label="Reporter")
    page.get_by_role("button", name="Add member").click()
    expect(page.get_by_role("status")).to_contain_text("Dave Outsider added as Reporter.")
    dave = page.get_by_test_id("member-dave")
    expect(dave.get_by_label("Role of Dave Outsider")).to_have_value("20")
    dave.get_by_label("Role of Dave Outsider").select_option(label="Developer")
    dave.get_by_role("button", name="Change role of Dave Outsider").click()
    expect(page.get_by_role("status")).to_contain_text("Dave Outsider is now Developer.")
    assert Membership.objects.get(user__username="dave").role == 30
    screenshot(page, "members")
    dave = page.get_by_test_id("member-dave")
    dave.locator("summary").click()
    dave.get_by_role("button", name="Remove Dave Outsider").click()
    expect(page.get_by_role("status")).to_contain_text("Dave Outsider removed from acme/game.")
    expect(page.get_by_test_id("member-dave")).to_have_count(0)
    assert not Membership.objects.filter(user__username="dave").exists()
    context.close()


def test_reporter_gets_403_on_settings_and_no_settings_tab(
    demo, live_server, page: Page, screenshot
) -> None:
    log_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}/acme/game/-/issues/")
    nav = page.get_by_role("navigation", name="Project")
    expect(nav.get_by_role("link", name="Members")).to_be_visible()
    expect(nav.get_by_role("link", name="Settings")).to_have_count(0)
    response = page.goto(f"{live_server.url}/acme/game/-/settings/service_desk/")
    assert response is not None
    assert response.status == 403
    # The members list is read-only for him.
    page.goto(f"{live_server.url}/acme/game/-/members/")
    expect(page.get_by_test_id("member-alice")).to_contain_text("Owner")
    expect(page.get_by_role("button", name="Add member")).to_have_count(0)


def test_a_mistyped_placeholder_is_named_highlighted_and_not_saved(
    demo, live_server, page: Page, screenshot
) -> None:
    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/acme/game/-/settings/service_desk/emails/new_note/")
    editor = page.get_by_label("Template (Markdown)")
    editor.fill("")
    editor.press_sequentially("Ticket %{ISSUE_IDD}: %{NOTE_TEXT}", delay=5)
    warning = page.get_by_test_id("unknown-placeholders")
    expect(warning).to_contain_text("%{ISSUE_IDD} (did you mean %{ISSUE_ID}?)")
    expect(page.get_by_test_id("email-preview-body").locator("mark")).to_have_text("%{ISSUE_IDD}")
    screenshot(page, "settings-template-unknown-placeholder")
    page.get_by_role("button", name="Save template").click()
    expect(page.locator("#id_text_error")).to_contain_text("Unknown placeholder: %{ISSUE_IDD}")
    expect(editor).to_have_value("Ticket %{ISSUE_IDD}: %{NOTE_TEXT}")
    assert ServiceDeskSetting.objects.get(project__full_path="acme/game").new_note_template == ""
