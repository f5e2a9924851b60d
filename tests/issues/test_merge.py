"""Merging a ticket into another: the thread, files and participants move; replies follow."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import translation

from issues.models import EmailParticipant, Issue, Note, OutboundEmail, SentNotification, Upload
from issues.services import issue_merge, note_create, note_post
from mailroom.models import InboundMessage
from tests.factories import IssueFactory, ProjectFactory
from tests.mailroom.helpers import ALIAS, INCOMING, deliver, make_email

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    with translation.override("en"):
        yield


def ticket(project, sender: str, subject: str, body: str) -> Issue:  # type: ignore[no-untyped-def]
    address = INCOMING.address_for(project.service_desk.default_key)
    row = deliver(make_email(to=address, sender=sender, subject=subject, body=body))
    assert row.outcome == InboundMessage.Outcome.ISSUE_CREATED, row.reason
    return Issue.objects.get(pk=row.issue_id)


def key_of(issue: Issue, email: str) -> str:
    participant = EmailParticipant.objects.get(issue=issue, email=email)
    return SentNotification.objects.filter(issue=issue, participant=participant).first().reply_key  # type: ignore[union-attr]


def test_a_merged_ticket_brings_its_thread_files_and_customer(project, reporter) -> None:  # type: ignore[no-untyped-def]
    target = ticket(project, "Jake <jake@customer.example>", "Game crashes", "It crashes on start.")
    source = ticket(project, "Ann <ann@customer.example>", "Crash again", "Crashes for me too.")
    note_create(issue=source, author=reporter, body="Asked Ann for logs", internal=True)
    OutboundEmail.objects.all().delete()

    issue_merge(issue=source, user=reporter, target=target)

    source.refresh_from_db()
    assert (source.state, source.merged_into) == (Issue.State.CLOSED, target)
    thread = list(Note.objects.filter(issue=target, system=False).order_by("created_at", "id"))
    assert [n.body for n in thread] == ["Crashes for me too.", "Asked Ann for logs"]
    assert all(n.merged_from == source for n in thread)
    assert Note.objects.filter(
        issue=target, system=True, body=f"merged #{source.iid} into this issue"
    ).exists()
    assert Note.objects.filter(
        issue=source, system=True, body=f"merged into #{target.iid}"
    ).exists()
    assert sorted(
        EmailParticipant.objects.filter(issue=target).values_list("email", flat=True)
    ) == [
        "ann@customer.example",
        "jake@customer.example",
    ]
    # Ann hears once where her conversation continues, with the target's number; Jake nothing.
    [email] = OutboundEmail.objects.filter(kind=OutboundEmail.Kind.MERGED)
    assert email.recipient == "ann@customer.example"
    assert email.issue == target
    assert f"#{target.iid}" in email.body_text


def test_the_customer_replying_to_the_old_tickets_email_lands_on_the_target(
    project, reporter
) -> None:  # type: ignore[no-untyped-def]
    target = ticket(project, "Jake <jake@customer.example>", "Game crashes", "It crashes.")
    source = ticket(project, "Ann <ann@customer.example>", "Crash", "Me too.")
    old_key = key_of(source, "ann@customer.example")  # the thank-you's key
    issue_merge(issue=source, user=reporter, target=target)
    row = deliver(
        make_email(
            to=INCOMING.address_for(old_key), sender="ann@customer.example", body="Any news?"
        )
    )
    assert row.outcome == InboundMessage.Outcome.NOTE_ADDED, row.reason
    assert Note.objects.get(pk=row.note_id).issue == target
    # The merge email's own key also leads to the target.
    new_key = OutboundEmail.objects.get(kind=OutboundEmail.Kind.MERGED).sent_notification.reply_key
    row = deliver(
        make_email(to=INCOMING.address_for(new_key), sender="ann@customer.example", body="Hello?")
    )
    assert Note.objects.get(pk=row.note_id).issue == target


def test_a_participant_on_both_tickets_stays_one(project, reporter) -> None:  # type: ignore[no-untyped-def]
    target = ticket(project, "Jake <jake@customer.example>", "One", "First.")
    source = ticket(project, "Jake <jake@customer.example>", "Two", "Second.")
    old_key = key_of(source, "jake@customer.example")
    issue_merge(issue=source, user=reporter, target=target)
    [jake] = EmailParticipant.objects.filter(issue=target)
    assert SentNotification.objects.get(reply_key=old_key).participant == jake


def test_files_move_with_their_notes(project, reporter) -> None:  # type: ignore[no-untyped-def]
    from django.core.files.uploadedfile import SimpleUploadedFile

    target = IssueFactory(project=project, author=reporter)
    source = IssueFactory(project=project, author=reporter)
    note = note_create(
        issue=source, author=reporter, body="Log attached",
        files=[SimpleUploadedFile("log.txt", b"boom", content_type="text/plain")],
    )  # fmt: skip
    issue_merge(issue=source, user=reporter, target=target)
    upload = Upload.objects.get(note=note)
    assert upload.issue == target
    assert Note.objects.get(pk=note.pk).issue == target


def test_merge_is_refused_across_projects_into_itself_and_twice(project, reporter) -> None:  # type: ignore[no-untyped-def]
    one, two = (
        IssueFactory(project=project, author=reporter),
        IssueFactory(project=project, author=reporter),
    )
    elsewhere = IssueFactory(project=ProjectFactory(path="other"), author=reporter)
    with pytest.raises(ValidationError):
        issue_merge(issue=one, user=reporter, target=one)
    with pytest.raises(ValidationError):
        issue_merge(issue=one, user=reporter, target=elsewhere)
    issue_merge(issue=one, user=reporter, target=two)
    with pytest.raises(ValidationError):
        issue_merge(issue=one, user=reporter, target=two)


def test_the_quick_action_merges_after_the_comment_is_posted(project, reporter) -> None:  # type: ignore[no-untyped-def]
    target = IssueFactory(project=project, author=reporter)
    source = IssueFactory(project=project, author=reporter)
    posted = note_post(
        issue=source,
        author=reporter,
        body=f"Same as this one.\n/merge #{target.iid}",
        quick_actions=True,
    )
    assert posted.issue == target
    assert posted.actions is not None
    assert posted.actions.applied == [f"merged into #{target.iid}"]
    assert Note.objects.get(body="Same as this one.").issue == target


def test_the_sidebar_merges_and_the_old_page_links_to_the_target(
    client, project, reporter, guest
) -> None:  # type: ignore[no-untyped-def]
    target = IssueFactory(project=project, author=reporter)
    source = IssueFactory(project=project, author=reporter)
    client.force_login(guest)
    url = reverse("issue_merge", args=[project.full_path, source.iid])
    assert client.post(url, {"target": f"#{target.iid}"}).status_code == 403
    client.force_login(reporter)
    assert client.post(url, {"target": "#999"}).status_code == 400
    response = client.post(url, {"target": f"#{target.iid}"})
    assert response["Location"] == reverse("issue_detail", args=[project.full_path, target.iid])
    page = client.get(
        reverse("issue_detail", args=[project.full_path, source.iid])
    ).content.decode()
    link = reverse("issue_detail", args=[project.full_path, target.iid])
    assert f'merged into <a href="{link}">#{target.iid}</a>' in page
