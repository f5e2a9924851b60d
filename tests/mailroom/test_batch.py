"""A batch processed together ends exactly as if each email had been processed alone."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from issues.models import EmailParticipant, Issue, Note, OutboundEmail, SentNotification, Upload
from mailroom.ledger import inbound_claim, inbound_process_batch, inbound_store
from mailroom.models import InboundMessage

from .helpers import ALIAS, INCOMING, deliver, make_email

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}


def with_attachment(to: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Jake <jake@customer.example>"
    msg["To"] = to
    msg["Subject"] = "With picture"
    msg["Message-ID"] = "<pic@customer.example>"
    msg.set_content("See picture")
    msg.add_alternative('<p>See <img src="cid:shot@x"> and the log</p>', subtype="html")
    msg.get_payload()[1].add_related(b"\x89PNG fake", "image", "png", cid="<shot@x>")
    msg.add_attachment(b"log\n", maintype="text", subtype="plain", filename="game.log")
    return msg.as_bytes()


def process_as_batch(raws: list[bytes]) -> list[InboundMessage]:
    ids = [inbound_store(raw=raw, transport="test", enqueue=False).pk for raw in raws]
    claimed, token = inbound_claim(ids)
    assert claimed == ids
    inbound_process_batch(claimed, token)
    return list(InboundMessage.objects.filter(pk__in=ids).order_by("pk"))


def test_mixed_batch_matches_one_by_one(project) -> None:
    to = INCOMING.address_for(project.service_desk.default_key)
    earlier = deliver(make_email(to=to, subject="Earlier", message_id="<earlier@c.example>"))
    participant = EmailParticipant.objects.get(issue_id=earlier.issue_id)
    key = SentNotification.objects.create(
        issue_id=earlier.issue_id, participant=participant, recipient=participant.email
    ).reply_key
    raws = [
        make_email(to=to, subject="Plain one", message_id="<one@c.example>"),
        make_email(to=to, subject="Plain one again", message_id="<one@c.example>"),
        with_attachment(to),
        make_email(
            to=to,
            subject="Re: Plain one",
            body="Reply in the same batch",
            message_id="<two@c.example>",
            headers={"In-Reply-To": "<one@c.example>"},
        ),
        make_email(to=to, subject="Out of office", headers={"Auto-Submitted": "auto-replied"}),
        make_email(to=INCOMING.address_for(key), subject="Re: Earlier", body="By reply key"),
        make_email(to="nobody@example.org", subject="No key"),
        b"\x00\x01 garbage",
    ]
    rows = process_as_batch(raws)
    outcomes = [(r.status, r.outcome, r.reason) for r in rows]
    assert outcomes == [
        ("done", "issue_created", ""),
        ("done", "ignored", "duplicate: an issue already exists for this Message-ID"),
        ("done", "issue_created", ""),
        ("done", "note_added", ""),
        ("done", "ignored", "auto-generated: Auto-Submitted: auto-replied"),
        ("done", "note_added", ""),
        ("done", "rejected", "no key found"),
        outcomes[7],
    ]
    assert rows[7].outcome in ("rejected", "ignored")

    plain = Issue.objects.get(title="Plain one")
    assert rows[0].issue_id == plain.pk
    assert plain.confidential
    assert plain.author.username == "support-bot"
    assert list(plain.email_participants.values_list("email", flat=True)) == [
        "jake@customer.example"
    ]
    assert Note.objects.get(pk=rows[3].note_id).issue == plain
    assert Note.objects.get(pk=rows[5].note_id).issue_id == earlier.issue_id
    assert sorted(Issue.objects.values_list("iid", flat=True)) == [1, 2, 3]

    pictured = Issue.objects.get(title="With picture")
    uploads = {u.filename: u for u in Upload.objects.filter(issue=pictured)}
    assert len(uploads) == 2
    assert "game.log" in uploads
    image = next(u for u in uploads.values() if u.is_image)
    assert f"/-/uploads/{image.pk}/" in pictured.description
    assert "cid:" not in pictured.description
    assert f"/-/uploads/{uploads['game.log'].pk}/game.log" in pictured.description
    assert uploads["game.log"].file.read() == b"log\n"


def test_a_failing_email_in_a_batch_does_not_stop_the_others(project, monkeypatch) -> None:
    to = INCOMING.address_for(project.service_desk.default_key)
    from mailroom import handlers

    real = handlers.issues_create

    def explode_once(**kwargs):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(handlers, "issues_create", real)
        raise RuntimeError("bulk insert failed")

    monkeypatch.setattr(handlers, "issues_create", explode_once)
    rows = process_as_batch([make_email(to=to, subject=f"n{i}") for i in range(3)])
    assert [r.outcome for r in rows] == ["issue_created"] * 3
    assert Issue.objects.count() == 3


def test_rate_limit_applies_inside_a_batch(project, settings, rate_window_frozen) -> None:
    settings.SERVICEDESK_NEW_ISSUES_PER_SENDER_PER_MINUTE = 2
    to = INCOMING.address_for(project.service_desk.default_key)
    rows = process_as_batch([make_email(to=to, subject=f"r{i}") for i in range(4)])
    assert [(r.outcome, r.reason) for r in rows] == [
        ("issue_created", ""),
        ("issue_created", ""),
        ("rejected", "rate limited"),
        ("rejected", "rate limited"),
    ]


def test_replies_in_a_batch_thread_to_open_issues_and_reopen_closed_ones(project) -> None:
    from issues.services import issue_close

    project.service_desk.reopen_issue_on_external_participant_note = True
    project.service_desk.save()
    to = INCOMING.address_for(project.service_desk.default_key)
    open_issue = deliver(make_email(to=to, subject="Open", message_id="<open@c.example>"))
    closed = deliver(make_email(to=to, subject="Closed", message_id="<closed@c.example>"))
    issue_close(issue=Issue.objects.get(pk=closed.issue_id), user=Issue.objects.first().author)
    quoted = "Thanks!\n\nOn Monday Support wrote:\n> We fixed it\n"
    rows = process_as_batch(
        [
            make_email(to=to, subject="Re: Open", body=quoted,
                       headers={"In-Reply-To": "<open@c.example>"}),
            make_email(to=to, subject="Re: Closed", body="Broken again",
                       headers={"References": "<x@y> <closed@c.example>"}),
        ]
    )  # fmt: skip
    assert [r.outcome for r in rows] == ["note_added", "note_added"]
    first = Note.objects.get(pk=rows[0].note_id)
    assert first.issue_id == open_issue.issue_id
    assert first.external_author == "jake@customer.example"
    assert first.body == "Thanks!"
    assert "We fixed it" in first.quoted
    assert rows[0].issue_id == open_issue.issue_id
    reopened = Issue.objects.get(pk=closed.issue_id)
    assert reopened.state == "opened"
    assert Note.objects.get(pk=rows[1].note_id).issue == reopened


def test_reply_waits_while_its_original_is_still_in_the_ledger(project) -> None:
    """Two workers: one still holds the original, the other takes the reply. The reply goes
    back to the queue (not an attempt) instead of opening an issue of its own."""
    to = INCOMING.address_for(project.service_desk.default_key)
    original = inbound_store(
        raw=make_email(to=to, subject="Original", message_id="<orig@c.example>"),
        transport="test",
        enqueue=False,
    )
    held, held_token = inbound_claim([original.pk])  # the first worker, not finished yet
    replies = [
        make_email(to=to, subject="Re: Original", body="More details",
                   message_id="<re1@c.example>", headers={"In-Reply-To": "<orig@c.example>"}),
        make_email(to=to, subject="Re: Re: Original", body="Even more",
                   message_id="<re2@c.example>",
                   headers={"References": "<orig@c.example> <re1@c.example>"}),
        make_email(to=to, subject="Unrelated", message_id="<other@c.example>"),
    ]  # fmt: skip
    rows = process_as_batch(replies)
    assert [(r.status, r.outcome, r.attempts) for r in rows] == [
        ("queued", "", 0), ("queued", "", 0), ("done", "issue_created", 1),
    ]  # fmt: skip
    assert rows[0].decision == {"rule": "wait", "waiting_for": original.pk, "waits": 1}
    assert rows[1].next_attempt_at is not None
    assert not Issue.objects.filter(title__startswith="Re:").exists()

    inbound_process_batch(held, held_token)  # the original is finished
    InboundMessage.objects.filter(pk__in=[r.pk for r in rows]).update(next_attempt_at=None)
    claimed, token = inbound_claim([rows[0].pk, rows[1].pk])
    inbound_process_batch(claimed, token)
    issue = Issue.objects.get(title="Original")
    assert list(Note.objects.filter(issue=issue).values_list("body", flat=True)) == [
        "More details", "Even more",
    ]  # fmt: skip
    assert Issue.objects.count() == 2


def _queries_for(raws: list[bytes]) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ids = [inbound_store(raw=raw, transport="test", enqueue=False).pk for raw in raws]
    claimed, token = inbound_claim(ids)
    with CaptureQueriesContext(connection) as queries:
        inbound_process_batch(claimed, token)
    assert not InboundMessage.objects.filter(pk__in=ids).exclude(status="done").exists()
    return len(queries)


# The budget of one batch, one email or twenty: new issues from email with a Cc'd participant
# (their thank-yous and new-participant emails, events and webhooks, the project's response
# targets), and replies to them (also: whether they wake snoozed tickets).
NEW_ISSUES_QUERIES = 31
REPLIES_QUERIES = 35


def test_a_batch_costs_the_same_queries_whatever_its_size(project, settings) -> None:
    """New issues and replies (with their thank-yous and new-note emails) are written in bulk,
    within a fixed budget of queries."""
    settings.SERVICEDESK_NEW_ISSUES_PER_SENDER_PER_MINUTE = 0
    project.service_desk.add_external_participants_from_cc = True
    project.service_desk.save()
    to = INCOMING.address_for(project.service_desk.default_key)

    def new(n: int, tag: str) -> list[bytes]:
        return [make_email(to=to, subject=f"{tag} {i}", message_id=f"<{tag}-{i}@c.example>",
                           headers={"Cc": "boss@customer.example"}) for i in range(n)]  # fmt: skip

    def replies(n: int, tag: str) -> list[bytes]:
        keys = [
            SentNotification.objects.filter(user=None)
            .get(issue__title=f"{tag} {i}", recipient="jake@customer.example")
            .reply_key
            for i in range(n)
        ]
        return [
            make_email(to=INCOMING.address_for(key), subject="Re", body=f"Reply {i}",
                       message_id=f"<re-{tag}-{i}@c.example>")
            for i, key in enumerate(keys)
        ]  # fmt: skip

    _queries_for(new(1, "first"))  # the project's first issue creates its iid counter
    one, small, large = (
        _queries_for(new(1, "one")), _queries_for(new(3, "small")), _queries_for(new(20, "large"))
    )  # fmt: skip
    assert one == small == large == NEW_ISSUES_QUERIES
    assert (
        _queries_for(replies(1, "one"))
        == _queries_for(replies(3, "small"))
        == _queries_for(replies(20, "large"))
        == REPLIES_QUERIES
    )
    assert (
        OutboundEmail.objects.exclude(kind="team").filter(kind="new_note").count() == 24
    )  # to the boss


def test_a_batch_out_of_time_sends_each_email_back_alone(project, monkeypatch) -> None:
    """Celery's soft time limit leaves no time to redo the batch one by one: each email goes
    back to the queue as a task of its own, without an attempt charged."""
    from celery.exceptions import SoftTimeLimitExceeded

    from mailroom import ledger

    def out_of_time(rows):  # type: ignore[no-untyped-def]
        raise SoftTimeLimitExceeded()

    enqueued: list[list[int]] = []
    monkeypatch.setattr("mailroom.handlers.plan", out_of_time)
    monkeypatch.setattr(ledger, "_enqueue", lambda ids, countdown=0: enqueued.append(list(ids)))
    to = INCOMING.address_for(project.service_desk.default_key)
    rows = process_as_batch([make_email(to=to, subject=f"slow {i}") for i in range(3)])
    assert [(r.status, r.attempts, r.claim_token) for r in rows] == [("queued", 0, None)] * 3
    assert enqueued == [[r.pk] for r in rows]

    claimed, token = inbound_claim([rows[0].pk])
    inbound_process_batch(claimed, token)  # alone, it records the error
    row = InboundMessage.objects.get(pk=rows[0].pk)
    assert (row.status, row.attempts) == ("queued", 1)
    assert row.last_error.startswith("SoftTimeLimitExceeded")


def test_a_reply_delivered_twice_in_one_batch_makes_one_note(project) -> None:
    to = INCOMING.address_for(project.service_desk.default_key)
    first = deliver(make_email(to=to, subject="Original", message_id="<o@c.example>"))
    key = SentNotification.objects.filter(user=None).get(issue_id=first.issue_id).reply_key
    reply = make_email(to=INCOMING.address_for(key), body="Same reply", message_id="<r@c.example>")
    rows = process_as_batch([reply, reply])
    assert [(r.outcome, r.reason) for r in rows] == [
        ("note_added", ""),
        ("ignored", "duplicate: this Message-ID is already on the issue"),
    ]
    assert Note.objects.filter(issue_id=first.issue_id, body="Same reply").count() == 1


def test_the_batch_sends_its_thank_yous_as_it_commits(
    project, monkeypatch, mailoutbox, django_capture_on_commit_callbacks
) -> None:
    """Not queued behind the inbound work: the worker that committed the batch sends them."""
    import servicedesk.queues

    queued: list[str] = []
    real = servicedesk.queues.enqueue
    monkeypatch.setattr(
        servicedesk.queues,
        "enqueue",
        lambda task, *a, **kw: queued.append(task) or real(task, *a, **kw),
    )
    to = INCOMING.address_for(project.service_desk.default_key)
    ids = [
        inbound_store(
            raw=make_email(to=to, subject=f"Help {n}"), transport="test", enqueue=False
        ).pk
        for n in range(3)
    ]
    claimed, token = inbound_claim(ids)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        inbound_process_batch(claimed, token)
    assert not mailoutbox  # nothing leaves before the commit
    assert OutboundEmail.objects.filter(kind="thank_you", status="pending").count() == 3
    for callback in callbacks:
        callback()
    assert sorted(m.subject for m in mailoutbox) == [f"Re: Help {n} (#{n + 1})" for n in range(3)]
    assert OutboundEmail.objects.filter(kind="thank_you", status="sent").count() == 3
    assert "issues.tasks.send_outbound_emails" not in queued


def test_a_send_that_fails_after_the_commit_leaves_the_emails_to_the_sweeper(
    project, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    import issues.outbox

    def broken(ids, token):  # type: ignore[no-untyped-def]
        raise RuntimeError("the database went away")

    monkeypatch.setattr(issues.outbox, "outbound_send", broken)
    to = INCOMING.address_for(project.service_desk.default_key)
    with django_capture_on_commit_callbacks(execute=True):
        row = deliver(make_email(to=to))
    assert row.outcome == "issue_created"
    assert OutboundEmail.objects.get(kind="thank_you").status == "sending"  # swept when stuck
