"""Webhooks end to end: recorded with their cause, sent by the real Celery worker to a real
HTTP receiver on 127.0.0.1, signed, retried after a failure."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import ssl
from datetime import timedelta

import pytest
import trustme
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from issues.models import SentNotification
from issues.services import (
    issue_assignees_set,
    issue_close,
    issue_confidentiality_set,
    issue_create,
    issue_labels_set,
    note_create,
)
from mailroom.models import InboundMessage
from servicedesk.encryption import generate_key
from tests.factories import LabelFactory
from tests.harness.services import wait_until
from tests.mailroom.helpers import INCOMING, deliver, make_email
from webhooks import network
from webhooks.models import Webhook, WebhookDelivery
from webhooks.services import deliveries_claim, deliveries_send, deliveries_sweep, webhook_save
from webhooks.tasks import send_deliveries

from .receiver import Receiver

SECRET = "s3cret-token-for-the-receiver"
ALL_EVENTS = {
    "issue_events": True,
    "confidential_issue_events": True,
    "note_events": True,
    "confidential_note_events": True,
    "service_desk_email_events": True,
}
Status = WebhookDelivery.Status


def hook_for(project, url: str, secret: str = SECRET, **events: bool) -> Webhook:  # type: ignore[no-untyped-def]
    return webhook_save(project=project, url=url, secret=secret, enabled=True, verify_ssl=True,
                        **(events or {"issue_events": True, "note_events": True}))  # fmt: skip


def verified(request) -> bool:  # type: ignore[no-untyped-def]
    """What a receiver does: recompute the HMAC of the body with the shared secret."""
    wanted = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(wanted, request.headers["X-ServiceDesk-Signature"])


def _sent(ids: list[int]) -> bool:
    return WebhookDelivery.objects.filter(pk__in=ids, status=Status.SENT).count() == len(ids)


@pytest.mark.django_db(transaction=True)
def test_issue_and_note_events_reach_the_receiver_signed(
    project, reporter, receiver: Receiver, celery_worker
) -> None:
    hook_for(project, receiver.url)
    issue = issue_create(project=project, author=reporter, title="Printer on fire")
    note_create(issue=issue, author=reporter, body="Have you tried water?")

    issue_event, note_event = sorted(receiver.wait_for(2), key=lambda r: r.json["object_kind"])
    assert issue_event.headers["X-Gitlab-Event"] == "Issue Hook"
    assert note_event.headers["X-Gitlab-Event"] == "Note Hook"
    for request in (issue_event, note_event):
        assert request.path == "/hook"
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["X-ServiceDesk-Token"] == SECRET
        assert request.headers["X-Gitlab-Token"] == SECRET
        assert verified(request)
    assert issue_event.json["object_attributes"]["title"] == "Printer on fire"
    assert issue_event.json["object_attributes"]["action"] == "open"
    assert issue_event.json["user"]["username"] == reporter.username
    assert issue_event.json["project"]["path_with_namespace"] == "acme/game"
    assert note_event.json["object_kind"] == "note"
    assert note_event.json["object_attributes"]["note"] == "Have you tried water?"
    assert note_event.json["issue"]["iid"] == issue.iid
    wait_until(lambda: _sent(list(WebhookDelivery.objects.values_list("pk", flat=True))), 10,
               "the deliveries to be recorded as sent")  # fmt: skip
    delivery = WebhookDelivery.objects.get(event="issue")
    assert (delivery.response_status, delivery.attempts) == (200, 1)
    assert delivery.response_body == '{"ok": true}'


@pytest.mark.django_db(transaction=True)
def test_a_500_is_retried_with_backoff_and_then_delivered(
    project, reporter, receiver: Receiver, celery_worker
) -> None:
    receiver.answers = [500]
    hook_for(project, receiver.url)
    issue_create(project=project, author=reporter, title="Retry me")

    first, second = receiver.wait_for(2)
    assert first.body == second.body
    assert first.headers["X-ServiceDesk-Delivery"] == second.headers["X-ServiceDesk-Delivery"]
    delivery = WebhookDelivery.objects.get()
    wait_until(lambda: _sent([delivery.pk]), 10, "the retry to be recorded")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == (Status.SENT, 2, 200)
    assert len(receiver.requests) == 2


def test_a_failed_attempt_waits_and_records_the_answer(project, reporter, receiver) -> None:
    receiver.answers = [503]
    hook_for(project, receiver.url)
    issue_create(project=project, author=reporter, title="Down")
    delivery = WebhookDelivery.objects.get()
    send_deliveries([delivery.pk])
    delivery.refresh_from_db()
    assert delivery.status == Status.PENDING
    assert delivery.response_status == 503
    assert delivery.response_body.startswith("receiver says no")
    assert len(delivery.response_body) == 2000  # an excerpt: the answer was 8500 bytes
    assert delivery.next_attempt_at is not None
    send_deliveries([delivery.pk])  # not due yet: nothing is sent
    assert len(receiver.requests) == 1


def test_gives_up_after_the_last_attempt(project, reporter, receiver, settings) -> None:
    settings.SERVICEDESK_WEBHOOKS_MAX_ATTEMPTS = 2
    receiver.answers = [500, 500]
    hook_for(project, receiver.url)
    issue_create(project=project, author=reporter, title="Down")
    delivery = WebhookDelivery.objects.get()
    for _ in range(2):
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
        send_deliveries([delivery.pk])
    delivery.refresh_from_db()
    assert delivery.status == Status.FAILED
    assert delivery.error.startswith("gave up after 2 attempts")


def test_410_gone_turns_the_hook_off(project, reporter, receiver) -> None:
    receiver.answers = [410]
    hook = hook_for(project, receiver.url)
    issue_create(project=project, author=reporter, title="Gone")
    send_deliveries([WebhookDelivery.objects.get().pk])
    hook.refresh_from_db()
    assert not hook.enabled
    assert "410" in hook.disabled_reason
    assert WebhookDelivery.objects.get().status == Status.FAILED
    issue_create(project=project, author=reporter, title="Nobody hears this")
    assert WebhookDelivery.objects.count() == 1


def test_a_delivery_is_claimed_once(project, reporter, receiver) -> None:
    hook_for(project, receiver.url)
    issue_create(project=project, author=reporter, title="Once")
    pk = WebhookDelivery.objects.get().pk
    claimed, token = deliveries_claim([pk])
    assert claimed == [pk]
    assert deliveries_claim([pk])[0] == []  # a second worker finds nothing to send
    deliveries_send(claimed, token)
    assert len(receiver.requests) == 1


def test_confidential_events_go_only_to_hooks_that_asked(project, reporter, receiver) -> None:
    public = hook_for(project, receiver.url, issue_events=True, note_events=True)
    private = hook_for(project, receiver.url, confidential_issue_events=True,
                       confidential_note_events=True)  # fmt: skip
    secret = issue_create(project=project, author=reporter, title="Secret", confidential=True)
    note_create(issue=secret, author=reporter, body="on a confidential issue")
    open_issue = issue_create(project=project, author=reporter, title="Open")
    note_create(issue=open_issue, author=reporter, body="internal", internal=True)
    note_create(issue=open_issue, author=reporter, body="public")

    def seen(hook: Webhook) -> list[tuple[str, str]]:
        rows = WebhookDelivery.objects.filter(hook=hook).order_by("pk")
        return [(d.event, d.payload["object_attributes"].get("title")
                 or d.payload["object_attributes"].get("note")) for d in rows]  # fmt: skip

    assert seen(private) == [
        ("confidential_issue", "Secret"),
        ("confidential_note", "on a confidential issue"),
        ("confidential_note", "internal"),
    ]
    assert seen(public) == [("issue", "Open"), ("note", "public")]


def test_issue_updates_carry_their_changes(project, reporter, receiver) -> None:
    hook = hook_for(project, receiver.url, issue_events=True, confidential_issue_events=True)
    issue = issue_create(project=project, author=reporter, title="Changing")
    bug = LabelFactory(project=project, title="bug")
    issue_labels_set(issue=issue, user=reporter, labels=[bug])
    issue_assignees_set(issue=issue, user=reporter, assignees=[reporter])
    issue_close(issue=issue, user=reporter)
    issue_confidentiality_set(issue=issue, user=reporter, confidential=True)
    payloads = [d.payload for d in WebhookDelivery.objects.filter(hook=hook).order_by("pk")]
    actions = [p["object_attributes"]["action"] for p in payloads]
    assert actions == ["open", "update", "update", "close", "update"]
    labelled, assigned, closed, hidden = payloads[1:]
    # As GitLab's: labels and assignees as objects, before and after.
    assert labelled["changes"]["labels"]["previous"] == []
    assert [label["id"] for label in labelled["changes"]["labels"]["current"]] == [bug.pk]
    assert [label["title"] for label in labelled["labels"]] == ["bug"]
    assert assigned["changes"]["assignees"]["previous"] == []
    assert [u["username"] for u in assigned["changes"]["assignees"]["current"]] == ["bob"]
    assert assigned["object_attributes"]["assignee_ids"] == [reporter.pk]
    assert closed["changes"] == {"state": {"previous": "opened", "current": "closed"}}
    assert closed["object_attributes"]["state"] == "closed"
    assert hidden["event_type"] == "confidential_issue"
    assert hidden["changes"] == {"confidential": {"previous": False, "current": True}}


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_cause_sends_nothing(
    project, reporter, receiver: Receiver, celery_worker
) -> None:
    hook_for(project, receiver.url)

    class Undo(Exception):
        pass

    def cause_then_undo() -> None:
        with transaction.atomic():
            issue_create(project=project, author=reporter, title="Never happened")
            # The outbox row is written in the cause's transaction...
            assert WebhookDelivery.objects.filter(event="issue").count() == 1
            raise Undo

    with pytest.raises(Undo):
        cause_then_undo()
    # ...and goes with it.
    assert not WebhookDelivery.objects.exists()
    issue_create(project=project, author=reporter, title="Happened")
    [request] = receiver.wait_for(1)
    wait_until(lambda: _sent(list(WebhookDelivery.objects.values_list("pk", flat=True))), 10,
               "the delivery to be recorded")  # fmt: skip
    assert request.json["object_attributes"]["title"] == "Happened"
    assert len(receiver.requests) == 1


def test_service_desk_email_received_through_the_mail_pipeline(
    project, receiver, settings, redis_cache_flushed
) -> None:
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING}
    hook = hook_for(project, receiver.url, service_desk_email_events=True)
    to = INCOMING.address_for(project.service_desk.default_key)
    row = deliver(make_email(to=to, subject="Cannot log in", sender="Jake <jake@customer.example>"))
    assert row.outcome == InboundMessage.Outcome.ISSUE_CREATED
    key = SentNotification.objects.get(issue_id=row.issue_id).reply_key
    reply = deliver(make_email(to=INCOMING.address_for(key), subject="Re", body="Still broken"))
    assert reply.outcome == InboundMessage.Outcome.NOTE_ADDED

    deliveries = list(WebhookDelivery.objects.filter(hook=hook).order_by("pk"))
    assert [d.event for d in deliveries] == ["service_desk_email", "service_desk_email"]
    send_deliveries([d.pk for d in deliveries])
    first, second = receiver.wait_for(2)
    assert first.headers["X-Gitlab-Event"] == "Service Desk Email Hook"
    assert first.json["object_kind"] == "service_desk_email"
    assert first.json["object_attributes"]["from"] == "jake@customer.example"
    assert first.json["object_attributes"]["subject"] == "Cannot log in"
    assert first.json["object_attributes"]["outcome"] == "issue_created"
    assert first.json["issue"]["service_desk_reply_to"] == "jake@customer.example"
    assert second.json["object_attributes"]["outcome"] == "note_added"
    assert second.json["object_attributes"]["note_id"] == reply.note_id
    # Credentials never leave: reply keys, the thread token, the project's address.
    everything = first.body + second.body
    issue = row.issue
    assert issue is not None
    for secret in (key, issue.thread_token, project.service_desk.default_key, to):
        assert secret.encode() not in everything


def test_loopback_is_refused_without_the_setting(project, reporter, receiver, settings) -> None:
    hook = hook_for(project, receiver.url)  # allowed while the tests' setting allows 127.0.0.1
    settings.SERVICEDESK_WEBHOOKS_ALLOW_PRIVATE = []
    with pytest.raises(ValidationError, match="loopback"):
        hook_for(project, receiver.url)
    with pytest.raises(ValidationError, match="loopback"):
        hook_for(project, f"http://localhost:{receiver.server.server_address[1]}/")
    # At send time too: the address is checked again right before the request.
    issue_create(project=project, author=reporter, title="Stays here")
    send_deliveries([WebhookDelivery.objects.get(hook=hook).pk])
    delivery = WebhookDelivery.objects.get(hook=hook)
    assert delivery.status == Status.FAILED
    assert "loopback" in delivery.error
    assert receiver.requests == []


@pytest.mark.parametrize(
    "address",
    ["10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "127.8.8.8", "::1",
     "::ffff:127.0.0.1", "fe80::1", "fc00::1", "224.0.0.1", "0.0.0.0",  # noqa: S104
     "100.64.0.1", "240.0.0.1"],
)  # fmt: skip
def test_private_and_reserved_addresses_are_refused(address: str, settings) -> None:
    settings.SERVICEDESK_WEBHOOKS_ALLOW_PRIVATE = []
    assert network.address_refusal(network.ipaddress.ip_address(address)) != ""
    with pytest.raises(network.TargetRefused):
        network.resolve(f"http://[{address}]/" if ":" in address else f"http://{address}/")


def test_public_addresses_and_allowed_networks_pass(settings) -> None:
    settings.SERVICEDESK_WEBHOOKS_ALLOW_PRIVATE = ["10.0.0.0/8"]
    ip = network.ipaddress.ip_address
    assert network.address_refusal(ip("93.184.215.14")) == ""
    assert network.address_refusal(ip("2606:4700::1111")) == ""
    assert network.address_refusal(ip("10.9.9.9")) == ""
    assert network.address_refusal(ip("192.168.0.1")) != ""


def test_the_secret_is_stored_encrypted(project, receiver) -> None:
    hook = hook_for(project, receiver.url)
    stored = Webhook.objects.values_list("secret_encrypted", flat=True).get(pk=hook.pk)
    assert SECRET not in stored
    assert Webhook.objects.get(pk=hook.pk).secret == SECRET


def test_the_secret_follows_a_key_rotation_and_an_unreadable_one_sends_unsigned(
    project, receiver, settings
) -> None:
    old, new = generate_key(), generate_key()
    settings.SERVICEDESK_ENCRYPTION_KEYS = [old]
    hook = hook_for(project, receiver.url)
    settings.SERVICEDESK_ENCRYPTION_KEYS = [new, old]
    call_command("rotate_encryption_keys", stdout=io.StringIO())
    settings.SERVICEDESK_ENCRYPTION_KEYS = [new]
    stored = Webhook.objects.values_list("secret_encrypted", flat=True).get(pk=hook.pk)
    assert Fernet(new.encode()).decrypt(stored.encode()).decode() == SECRET
    assert Webhook.objects.get(pk=hook.pk).secret == SECRET

    settings.SERVICEDESK_ENCRYPTION_KEYS = [generate_key()]
    settings.SECRET_KEY = "another-secret-key-than-the-one-used-before-0123456789"
    assert Webhook.objects.get(pk=hook.pk).secret == ""


def test_no_secret_stores_nothing(project, receiver) -> None:
    hook = webhook_save(project=project, url=receiver.url, secret="", enabled=True,
                        verify_ssl=True, issue_events=True)  # fmt: skip
    assert not Webhook.objects.get(pk=hook.pk).has_secret


def test_payload_is_json_and_signature_matches_what_was_sent(project, reporter, receiver) -> None:
    hook_for(project, receiver.url)
    issue_create(project=project, author=reporter, title="Ünïcode ✓")
    send_deliveries([WebhookDelivery.objects.get().pk])
    [request] = receiver.requests
    assert verified(request)
    assert json.loads(request.body)["object_attributes"]["title"] == "Ünïcode ✓"


def test_https_receiver_and_the_ssl_verification_toggle(project, reporter) -> None:
    """The request goes to the checked address over TLS; a certificate no public CA signed is
    refused while verification is on (and retried), accepted once the Maintainer turns it off."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with Receiver(tls=context) as receiver:
        hook = hook_for(project, receiver.url)
        issue_create(project=project, author=reporter, title="Over TLS")
        delivery = WebhookDelivery.objects.get()
        send_deliveries([delivery.pk])
        delivery.refresh_from_db()
        assert delivery.status == Status.PENDING
        assert "CERTIFICATE_VERIFY_FAILED" in delivery.error
        assert receiver.requests == []

        webhook_save(project=project, hook=hook, url=receiver.url, secret=None, enabled=True,
                     verify_ssl=False, issue_events=True)  # fmt: skip
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
        send_deliveries([delivery.pk])
        delivery.refresh_from_db()
        assert delivery.status == Status.SENT
        [request] = receiver.requests
        assert request.headers["Host"] == receiver.url.split("/")[2]
        assert verified(request)


def test_the_sweeper_hands_out_deliveries_a_dead_worker_left(project, reporter, receiver) -> None:
    hook_for(project, receiver.url)
    issue_create(project=project, author=reporter, title="Stuck")
    delivery = WebhookDelivery.objects.get()
    deliveries_claim([delivery.pk])  # claimed by a worker that then died
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        claimed_at=timezone.now() - timedelta(minutes=11)
    )
    assert deliveries_sweep() == 1
    delivery.refresh_from_db()
    assert delivery.status == Status.PENDING
    send_deliveries([delivery.pk])
    assert len(receiver.requests) == 1
