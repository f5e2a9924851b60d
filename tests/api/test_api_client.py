"""The API as an integration uses it: httpx against the live server, the real Celery worker and
the real SMTP server. A support agent's script opens a ticket on behalf of a customer, answers
it and closes it; the customer gets each email."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import httpx
import pytest
from django.utils import timezone

from api.services import token_create
from issues.models import OutboundEmail
from projects.models import ServiceDeskSetting
from tests.factories import GroupFactory, ProjectFactory, member
from tests.harness.services import wait_until

pytestmark = pytest.mark.django_db(transaction=True)
CUSTOMER = "jake@customer.example"


@pytest.fixture
def agent(transactional_db, settings, live_server):  # type: ignore[no-untyped-def]
    """bob, Reporter of acme/game (Service Desk on, "issue closed" emails on), and his token's
    API client on the live server."""
    settings.SITE_URL = live_server.url
    settings.DEFAULT_FROM_EMAIL = "support@servicedesk.test"
    project = ProjectFactory(group=GroupFactory(path="acme"), path="game", name="Game",
                             service_desk_enabled=True)  # fmt: skip
    ServiceDeskSetting.objects.filter(project=project).update(send_issue_closed_email=True)
    bob = member(project, 20, "bob")
    expiry = timezone.now().date() + timedelta(days=7)
    secret = token_create(user=bob, name="script", scopes=["api"], expires_at=expiry).secret
    client = httpx.Client(
        base_url=f"{live_server.url}/api/v4/projects/{quote('acme/game', safe='')}",
        headers={"PRIVATE-TOKEN": secret},
        timeout=30,
    )
    yield client
    client.close()


def to(smtp, address: str) -> list:  # type: ignore[no-untyped-def]
    return [m.message for m in smtp.messages if m.recipients == [address]]


def text_of(message) -> str:  # type: ignore[no-untyped-def]
    return message.get_body(("plain",)).get_content()


def test_ticket_on_behalf_of_a_customer_answered_and_closed_by_email(
    agent, smtp, celery_worker
) -> None:
    created = agent.post(
        "/issues",
        json={"title": "Order 1234 never arrived", "description": "Called us on the phone.",
              "service_desk_email": CUSTOMER, "send_thank_you": True},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    ticket = created.json()
    assert ticket["author"]["username"] == "support-bot"
    assert ticket["external_author"] == CUSTOMER
    assert ticket["confidential"] is True
    iid = ticket["iid"]
    wait_until(lambda: len(to(smtp, CUSTOMER)) == 1, 30, "the thank-you email")
    [thank_you] = to(smtp, CUSTOMER)
    assert f"#{iid}" in thank_you["Subject"]

    answered = agent.post(f"/issues/{iid}/notes", json={"body": "It is on its way again."})
    assert answered.status_code == 201, answered.text
    internal = agent.post(
        f"/issues/{iid}/notes", json={"body": "Courier lost it", "internal": True}
    )
    assert internal.status_code == 201
    wait_until(lambda: len(to(smtp, CUSTOMER)) == 2, 30, "the reply's email")
    reply = to(smtp, CUSTOMER)[1]
    assert "It is on its way again." in text_of(reply)

    closed = agent.put(f"/issues/{iid}", json={"state_event": "close"})
    assert closed.status_code == 200
    assert closed.json()["state"] == "closed"
    wait_until(lambda: len(to(smtp, CUSTOMER)) == 3, 30, "the issue-closed email")
    emails = to(smtp, CUSTOMER)
    assert all("Courier lost it" not in text_of(m) for m in emails)  # internal: never emailed
    kinds = list(
        OutboundEmail.objects.filter(recipient=CUSTOMER)
        .order_by("pk")
        .values_list("kind", "status")
    )
    assert kinds == [("thank_you", "sent"), ("new_note", "sent"), ("issue_closed", "sent")]

    notes = agent.get(f"/issues/{iid}/notes", params={"per_page": 100}).json()
    assert [n["body"] for n in notes if not n["system"]] == [
        "It is on its way again.",
        "Courier lost it",
    ]


def test_ticket_without_the_thank_you_and_then_a_participant(agent, smtp, celery_worker) -> None:
    created = agent.post("/issues", json={"title": "Refund", "service_desk_email": CUSTOMER}).json()
    iid = created["iid"]
    added = agent.post(f"/issues/{iid}/participants", json={"email": "boss@customer.example"})
    assert added.status_code == 201
    # The first email either of them gets is the reply: no thank-you, no new-participant email.
    agent.post(f"/issues/{iid}/notes", json={"body": "Refunded today."})
    wait_until(
        lambda: len(to(smtp, CUSTOMER)) == 1 and len(to(smtp, "boss@customer.example")) == 1,
        30,
        "the reply to both participants",
    )
    assert [m.kind for m in OutboundEmail.objects.exclude(kind="team")] == ["new_note"] * 2
    listed = agent.get("/issues", params={"search": f"requester:{CUSTOMER}"})
    assert [issue["iid"] for issue in listed.json()] == [iid]
    assert listed.headers["X-Total"] == "1"
