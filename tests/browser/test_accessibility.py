"""Every product page, as each demo person sees it, on a laptop (1440x900) and a phone (390x844):
no axe-core violation of WCAG 2.1 A/AA (of any impact, so none serious or critical either), and
on the phone nothing wider than the screen — a wide table scrolls inside its own focusable
region instead."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core import signing
from django.template.loader import render_to_string
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.views.defaults import server_error
from playwright.sync_api import Browser, Page

from accounts.models import User
from accounts.services import EMAIL_CHANGE_SALT, invitation_tokens, invited_user_for_email
from api.services import token_create
from issues.models import OutboundEmail, SentNotification
from projects.models import Project
from projects.services import description_template_create, instance_template_save
from projects.views import EMAIL_KINDS
from saved_replies.services import saved_reply_save
from tests.browser.helpers import accessibility_violations, demo_data, log_in
from tests.mailroom.helpers import deliver, make_email
from webhooks.services import webhook_save, webhook_test

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

GAME = "acme/game"
CRASH = 1  # the demo's confidential ticket from jake@customer.example
COLOUR_BLIND = 4  # the demo's issue that is not confidential
MISSING = 999
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1440, "height": 900}


@pytest.fixture
def extras(monkeypatch, transactional_db, settings, redis_cache_flushed) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The demo, plus an email in the ledger, one in the spam quarantine, a description
    template, and dave on the staff (the instance-wide ledger): their ids and tokens."""
    demo_data(monkeypatch)
    User.objects.filter(username="dave").update(is_staff=True)
    project = Project.objects.get(full_path=GAME)
    template = description_template_create(project=project, name="Bug", content="## Steps")
    reply = saved_reply_save(project=project, name="Refund", content="Hi %{CUSTOMER_NAME}")
    token_create(user=User.objects.get(username="alice"), name="CI", scopes=["read_api"],
                 expires_at=timezone.now().date() + timedelta(days=30))  # fmt: skip
    incoming = settings.SERVICEDESK_MAILBOXES["incoming_email"]
    to = incoming.address_for(project.service_desk.default_key)
    ham = deliver(make_email(to=to, subject="Where is my order?", body="It has been a week."))
    settings.AKISMET_API_KEY = "akismet-test-key"
    settings.AKISMET_CLIENT_CLASS = "tests.mailroom.akismet_clients.SpamClient"
    assert deliver(make_email(to=to, subject="CHEAP WATCHES", body="Buy now!")).outcome == "spam"
    thank_you = SentNotification.objects.get(issue_id=ham.issue_id, participant__isnull=False)
    # The account pages: sign-up on, an invitation and an address change waiting.
    settings.SERVICEDESK_SIGNUP_ENABLED = True
    invited, _ = invited_user_for_email(inviter=None, email="ivan@acme.example", where=GAME)
    alice = User.objects.get(username="alice")
    email_token = signing.dumps(
        [alice.pk, alice.email, "alice@new.example"], salt=EMAIL_CHANGE_SALT
    )
    uid = urlsafe_base64_encode(force_bytes(invited.pk))
    # The thank-you failed: the outbound pages and the issue page show the server's words.
    OutboundEmail.objects.filter(sent_notification=thank_you).update(
        status=OutboundEmail.Status.FAILED, last_error="SMTPRecipientsRefused: 550 no such user"
    )
    hook = webhook_save(project=project, url="http://127.0.0.1:9/hook", secret="s", enabled=True,
                        verify_ssl=True, issue_events=True, note_events=True)  # fmt: skip
    delivery = webhook_test(hook=hook, user=alice)
    return {"hook": hook.pk, "delivery": delivery.pk, "email": ham.pk,
            "outbound": thank_you.email.pk, "template": template.pk,
            "unsubscribe": thank_you.unsubscribe_token,
            "reply": reply.pk, "project": project.pk, "group": project.group_id,
            "instance_template": instance_template_save(name="Triage", content="/label ~new").pk,
            "invitation": reverse("invitation_accept",
                                  args=[uid, invitation_tokens.make_token(invited)]),
            "email_confirm": reverse("email_confirm", args=[email_token])}  # fmt: skip


def tracker(**query: str) -> str:
    url = reverse("issue_list", args=[GAME])
    return f"{url}?{urlencode(query)}" if query else url


def issue(iid: int) -> str:
    return reverse("issue_detail", args=[GAME, iid])


def pages_of(username: str, ids: dict[str, Any]) -> list[str]:
    if username == "dave":  # staff, in no project: an empty home page, the admin area
        return [
            reverse("home"),
            reverse("instance_inbound_list"),
            reverse("instance_inbound_detail", args=[ids["email"]]),
            reverse("instance_outbound_list"),
            reverse("instance_outbound_detail", args=[ids["outbound"]]),
            reverse("admin_users"),
            reverse("admin_users") + "?q=a",
            reverse("admin_groups"),
            reverse("admin_group_edit", args=[ids["group"]]),
            reverse("admin_projects"),
            reverse("admin_project_edit", args=[ids["project"]]),
            reverse("admin_templates"),
            reverse("admin_template_edit", args=[ids["instance_template"]]),
            reverse("project_new"),
            reverse("group_new"),
        ]
    if username == "carol":  # Guest: the tracker, a public issue, and a confidential one's 404
        return [reverse("home"), tracker(), issue(COLOUR_BLIND), issue(CRASH)]
    if username == "bob":  # Reporter: may look at the members; the settings answer 403
        return [
            tracker(),
            issue(CRASH),
            reverse("project_members", args=[GAME]),
            reverse("service_desk_settings", args=[GAME]),
            reverse("todos"),
        ]
    templates = [
        reverse(name, args=[GAME, ids["template"]])
        for name in ("description_template_edit", "description_template_delete")
    ]
    return [
        reverse("home"),
        *[tracker(state=state) for state in ("opened", "closed", "all")],
        *[tracker(view=view) for view in ("service_desk", "waiting", "mine", "unassigned")],
        issue(CRASH),
        issue(COLOUR_BLIND),
        reverse("project_dashboard", args=[GAME]),
        reverse("project_members", args=[GAME]),
        reverse("service_desk_settings", args=[GAME]),
        reverse("service_desk_custom_email", args=[GAME]),
        *[reverse("service_desk_email_template", args=[GAME, kind]) for kind in EMAIL_KINDS],
        reverse("description_template_list", args=[GAME]),
        reverse("description_template_new", args=[GAME]),
        *templates,
        reverse("project_notifications", args=[GAME]),
        reverse("project_saved_replies", args=[GAME]),
        reverse("project_saved_reply_edit", args=[GAME, ids["reply"]]),
        reverse("webhook_list", args=[GAME]),
        reverse("webhook_edit", args=[GAME, ids["hook"]]),
        reverse("webhook_delivery", args=[GAME, ids["hook"], ids["delivery"]]),
        reverse("project_inbound_list", args=[GAME]),
        reverse("project_inbound_detail", args=[GAME, ids["email"]]),
        reverse("project_outbound_list", args=[GAME]),
        reverse("project_outbound_detail", args=[GAME, ids["outbound"]]),
        reverse("spam_list", args=[GAME]),
        reverse("todos"),
        reverse("notification_settings"),
        reverse("saved_replies"),
        reverse("profile"),
        reverse("password_change"),
        reverse("project_new"),
        reverse("group_new"),
        reverse("personal_access_tokens"),
        reverse("api_docs"),
        reverse("customer_detail") + "?" + urlencode({"email": "jake@customer.example"}),
        issue(MISSING),
    ]


def expected_status(who: str, path: str) -> int:
    if path == issue(MISSING) or (who == "carol" and path == issue(CRASH)):
        return 404
    if who == "bob" and path == reverse("service_desk_settings", args=[GAME]):
        return 403
    return 200


def problems_on(page: Page, who: str, width: int) -> list[str]:
    # What a click reveals counts too: the sidebar's edit forms, confirmations, data tables.
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true })")
    found = [f"{who} {page.url}: {v}" for v in accessibility_violations(page)]
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    if scroll_width > width:
        found.append(f"{who} {page.url}: {scroll_width}px wide on a {width}px screen")
    return found


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["1440", "390"])
def test_every_page_is_accessible_and_fits_the_screen(
    extras, live_server, browser: Browser, viewport, screenshot
) -> None:
    base = live_server.url
    width = viewport["width"]
    problems = []

    anonymous = browser.new_context(viewport=viewport).new_page()
    for path in (
        reverse("login"),
        reverse("unsubscribe", args=[extras["unsubscribe"]]),
        reverse("password_reset"),
        reverse("password_reset_done"),
        reverse("password_reset_confirm", args=["MQ", "no-such-token"]),
        extras["invitation"],
        extras["email_confirm"],
        reverse("signup"),
    ):
        anonymous.goto(base + path)
        problems += problems_on(anonymous, "anonymous", width)
    # The 500 page as Django's server_error renders it: no request, no stylesheet to load.
    anonymous.set_content(server_error(RequestFactory().get("/")).content.decode())
    problems += problems_on(anonymous, "anonymous (500)", width)
    # The 503 of a statement over SERVICEDESK_DB_STATEMENT_TIMEOUT_MS, rendered the same way.
    anonymous.set_content(render_to_string("503_too_slow.html"))
    problems += problems_on(anonymous, "anonymous (503)", width)

    for who in ("alice", "bob", "carol", "dave"):
        page = browser.new_context(viewport=viewport).new_page()
        log_in(page, base, who)
        for path in pages_of(who, extras):
            response = page.goto(base + path)
            assert response is not None
            assert response.status == expected_status(who, path), f"{who} {path}"
            problems += problems_on(page, who, width)
        if who == "alice" and viewport is PHONE:
            page.goto(base + tracker())
            screenshot(page, "tracker")
            page.goto(base + issue(MISSING))
            screenshot(page, "404")
        page.context.close()

    assert not problems, "\n".join(problems)


def test_the_checker_reports_what_it_should(page: Page) -> None:
    """The vendored axe-core runs and finds violations: were it silently broken, every page
    above would pass for nothing."""
    page.set_content(
        '<html lang="en"><head><title>t</title></head><body><main>'
        '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="><input type="text">'
        '<p style="color:#777;background:#888">low contrast</p></main></body></html>'
    )
    found = " ".join(accessibility_violations(page))
    for rule in ("image-alt", "label", "color-contrast"):
        assert f"{rule} (" in found, found
