"""Running the team without the Django admin: an admin creates a group and a project and
invites Erin by email; Erin chooses her password from the link in the email the worker sent,
signs in and names herself; Bob, who forgot his password, resets it by email."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from accounts.models import User
from projects.models import Membership, Project, Role
from tests.browser.helpers import PASSWORD, demo_data, log_in
from tests.harness.services import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def site(monkeypatch, transactional_db, settings, live_server) -> str:  # type: ignore[no-untyped-def]
    demo_data(monkeypatch)
    settings.SITE_URL = live_server.url  # links in emails point at the server the browser uses
    settings.DEFAULT_FROM_EMAIL = "support@servicedesk.test"
    root = User.objects.create_user("root", "root@acme.example", PASSWORD, name="Root")
    root.is_staff = root.is_superuser = True
    root.save()
    return str(live_server.url)


def link_in_mail(smtp, to: str) -> str:  # type: ignore[no-untyped-def]
    """The link in the plain-text part of the (last) email the SMTP server got for ``to``."""
    wait_until(lambda: any(m.recipients == [to] for m in smtp.messages), 30, f"an email to {to}")
    message = [m for m in smtp.messages if m.recipients == [to]][-1].message
    text = message.get_body(("plain",)).get_content()
    found = re.search(r"https?://\S+", text)
    assert found, text
    return found.group(0)


def choose_password(page: Page, link: str, password: str) -> None:
    page.goto(link)
    page.get_by_label("New password", exact=True).fill(password)
    page.get_by_label("New password confirmation").fill(password)
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def sign_in(page: Page, username: str, password: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your projects")).to_be_visible()


def test_admin_creates_a_group_and_project_and_invites_erin_who_joins_by_email(
    site, page: Page, browser: Browser, smtp, celery_worker, screenshot
) -> None:
    log_in(page, site, "root")
    page.get_by_role("link", name="Admin area").click()
    expect(page.get_by_role("heading", name="Users")).to_be_visible()

    page.get_by_role("navigation", name="Admin area").get_by_role("link", name="Groups").click()
    page.get_by_label("Path").fill("support")
    page.get_by_label("Name", exact=True).fill("Support")
    page.get_by_role("button", name="Create group").click()
    expect(page.get_by_test_id("groups")).to_contain_text("support")

    page.get_by_role("navigation", name="Admin area").get_by_role("link", name="Projects").click()
    page.get_by_label("Group").select_option(label="support")
    page.get_by_label("Path").fill("helpdesk")
    page.get_by_label("Name", exact=True).fill("Help desk")
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_test_id("projects")).to_contain_text("support/helpdesk")
    project = Project.objects.get(full_path="support/helpdesk")

    page.goto(f"{site}/support/helpdesk/-/members/")
    page.get_by_label("Email address").fill("erin@newcomer.example")
    page.get_by_label("Role of the invited person").select_option(label="Reporter")
    page.get_by_role("button", name="Invite").click()
    expect(page.get_by_test_id("members")).to_contain_text("@erin")
    screenshot(page, "root-invited-erin")
    erin = User.objects.get(username="erin")
    assert Membership.objects.get(user=erin, project=project).role == Role.REPORTER

    # Erin, on her own device, follows the link in the email the worker sent.
    link = link_in_mail(smtp, "erin@newcomer.example")
    assert link.startswith(f"{site}/-/invitation/")
    erin_page = browser.new_context().new_page()
    choose_password(erin_page, link, "erins own long password")
    sign_in(erin_page, "erin", "erins own long password")
    expect(erin_page.get_by_role("link", name="support/helpdesk")).to_be_visible()

    # Her name in the header opens her profile, where she names herself.
    erin_page.get_by_test_id("profile-link").click()
    expect(erin_page.get_by_role("heading", name="Profile")).to_be_visible()
    erin_page.get_by_label("Display name").fill("Erin Example")
    erin_page.get_by_role("button", name="Save profile").click()
    expect(erin_page.get_by_test_id("profile-link")).to_have_text("Erin Example")
    screenshot(erin_page, "erin-profile")
    erin.refresh_from_db()
    assert erin.name == "Erin Example"

    # The link is spent once used.
    erin_page.goto(link)
    expect(erin_page.get_by_role("alert")).to_contain_text("does not work")


def test_a_forgotten_password_is_reset_by_email(
    site, page: Page, smtp, celery_worker, screenshot
) -> None:
    page.goto(f"{site}/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill("bob@acme.example")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()

    link = link_in_mail(smtp, "bob@acme.example")
    assert link.startswith(f"{site}/-/password/reset/")
    choose_password(page, link, "bobs brand new password")
    screenshot(page, "bob-password-reset")
    sign_in(page, "bob", "bobs brand new password")
    # The old password is gone.
    assert not User.objects.get(username="bob").check_password(PASSWORD)
