"""The spam quarantine page: Reporter+ release or delete what Akismet held back."""

from __future__ import annotations

import pytest
from django.urls import reverse

from issues.models import Issue
from mailroom.ledger import inbound_claim, inbound_process
from mailroom.models import InboundMessage
from tests.mailroom.akismet_clients import _Recording
from tests.mailroom.helpers import ALIAS, INCOMING, deliver, make_email

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def spam_on(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    settings.AKISMET_API_KEY = "akismet-test-key"
    settings.AKISMET_CLIENT_CLASS = "tests.mailroom.akismet_clients.SpamClient"
    _Recording.reports.clear()


@pytest.fixture
def held(project) -> InboundMessage:  # type: ignore[no-untyped-def]
    to = INCOMING.address_for(project.service_desk.default_key)
    row = deliver(make_email(to=to, subject="Cheap watches", body="Buy <b>now</b>"))
    assert row.outcome == "spam"
    return row


def test_reporters_see_what_waits_with_its_text_escaped(client, project, reporter, held) -> None:
    client.force_login(reporter)
    page = client.get(reverse("spam_list", args=[project.full_path]))
    assert page.status_code == 200
    assert b"Cheap watches" in page.content
    assert b"jake@customer.example" in page.content
    assert b"Buy &lt;b&gt;now&lt;/b&gt;" in page.content  # shown as text, never as HTML
    assert b'href="/acme/game/-/spam/"' in page.content  # the project's tab


def test_not_spam_makes_the_issue(client, project, reporter, held) -> None:
    client.force_login(reporter)
    response = client.post(reverse("spam_not_spam", args=[project.full_path, held.pk]))
    assert response.status_code == 302
    _, token = inbound_claim([held.pk])
    inbound_process(held.pk, token)  # what the worker does with the re-queued email
    assert Issue.objects.get().title == "Cheap watches"
    assert _Recording.reports == [("ham", "jake@customer.example")]
    page = client.get(reverse("spam_list", args=[project.full_path]))
    assert b"Cheap watches" not in page.content
    assert b"No spam waiting" in page.content


def test_delete_confirms_spam(client, project, reporter, held) -> None:
    client.force_login(reporter)
    client.post(reverse("spam_delete", args=[project.full_path, held.pk]))
    held.refresh_from_db()
    assert held.spam_reviewed_by == reporter
    assert not Issue.objects.exists()
    again = client.post(reverse("spam_delete", args=[project.full_path, held.pk]))
    assert again.status_code == 404  # no longer in the quarantine


def test_below_reporter_the_page_does_not_exist(client, project, guest, developer, held) -> None:
    url = reverse("spam_list", args=[project.full_path])
    assert client.get(url).status_code == 302  # anonymous: to the login page
    client.force_login(guest)
    assert client.get(url).status_code == 404
    assert (
        client.post(reverse("spam_not_spam", args=[project.full_path, held.pk])).status_code == 404
    )
    client.force_login(developer)
    assert client.get(url).status_code == 200


def test_another_projects_spam_cannot_be_released_from_here(client, reporter, held) -> None:
    from tests.factories import ProjectFactory, member

    other = ProjectFactory(service_desk_enabled=True)
    member(other, 50, "other-owner")
    client.force_login(reporter)
    member_of_other = member(other, 20, "both")
    client.force_login(member_of_other)
    url = reverse("spam_not_spam", args=[other.full_path, held.pk])
    assert client.post(url).status_code == 404
    held.refresh_from_db()
    assert held.spam_reviewed_at is None
