"""Settings > Service Desk > Custom email address in a real browser, as alice (Owner): the
form, *verifying* (the section refreshes itself), *verified* with its switch, *failed* with
what to fix, and reset. The verification email really leaves through a local SMTP server
requiring STARTTLS and AUTH; the "provider" forwards it into the real pipeline."""

from __future__ import annotations

import threading

import pytest
from playwright.sync_api import Page, expect

from projects.models import CustomEmail
from servicedesk.config import MailboxConfig
from tests.browser.helpers import assert_accessible, demo_data, log_in
from tests.harness.services import CapturedMail
from tests.mailroom.helpers import deliver

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

INCOMING = MailboxConfig(name="incoming_email", enabled=True, address="in+%{key}@sd.example")
CUSTOM = "support@customer.test"


@pytest.fixture
def demo(monkeypatch, transactional_db, settings) -> None:  # type: ignore[no-untyped-def]
    demo_data(monkeypatch)
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING}


def fill_form(page: Page, port: int, password: str) -> None:
    page.get_by_label("Custom email address", exact=True).fill(CUSTOM)
    page.get_by_label("SMTP host").fill("127.0.0.1")
    page.get_by_label("SMTP port").fill(str(port))
    page.get_by_label("SMTP username").fill(CUSTOM)
    page.get_by_label("SMTP password").fill(password)
    page.get_by_label("SMTP authentication").select_option("login")
    page.get_by_role("button", name="Save and verify").click()


def test_owner_sets_up_verifies_turns_on_and_resets_a_custom_address(
    demo, live_server, page: Page, celery_worker, submission_server, screenshot
) -> None:
    release = threading.Event()
    from projects.models import ServiceDeskSetting

    setting = ServiceDeskSetting.objects.get(project__full_path="acme/game")
    target = INCOMING.address_for(setting.default_key)

    def forward(mail: CapturedMail) -> None:
        release.wait(30)  # the page shows "verifying" first
        deliver(f"Delivered-To: {target}\r\n".encode() + mail.data)

    submission_server.forward = lambda mail: threading.Thread(
        target=forward, args=(mail,), daemon=True
    ).start()
    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/acme/game/-/settings/service_desk/")
    page.get_by_role("link", name="Set up custom email address").click()
    expect(page.get_by_test_id("forward-to")).to_have_text(target)
    assert_accessible(page)

    # Too short a password: refused, and the field comes back empty.
    fill_form(page, submission_server.port, "short")
    expect(page.get_by_text("Ensure this value has at least 8 characters")).to_be_visible()
    expect(page.get_by_label("SMTP password")).to_have_value("")
    assert_accessible(page)

    fill_form(page, submission_server.port, submission_server.password)
    section = page.get_by_test_id("custom-email")
    expect(section).to_have_attribute("data-state", "started")
    expect(page.get_by_test_id("custom-email-status")).to_contain_text("Verifying")
    assert submission_server.password not in page.content()
    assert_accessible(page)
    screenshot(page, "verifying")

    release.set()  # the provider forwards it; the section updates by itself
    expect(section).to_have_attribute("data-state", "verified", timeout=30_000)
    expect(page.get_by_test_id("custom-email-status")).to_contain_text("Turn it on")
    assert_accessible(page)
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_test_id("custom-email-status")).to_contain_text(f"<{CUSTOM}>")
    assert CustomEmail.objects.get(address=CUSTOM).enabled
    assert_accessible(page)
    screenshot(page, "verified")

    # A failed verification says what to fix and offers another try.
    CustomEmail.objects.filter(address=CUSTOM).update(
        state="failed", enabled=False, error="incorrect_forwarding_target"
    )
    page.reload()
    expect(page.get_by_test_id("custom-email-error")).to_have_text("Incorrect forwarding target")
    expect(page.get_by_role("button", name="Verify again")).to_be_visible()
    assert_accessible(page)

    page.get_by_text("Reset…").click()  # a second step: it deletes the credentials
    page.get_by_role("button", name="Reset (delete the address and credentials)").click()
    expect(page.get_by_role("button", name="Save and verify")).to_be_visible()
    assert not CustomEmail.objects.exists()
