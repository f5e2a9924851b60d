"""GitLab's own Service Desk fixtures, each with the outcome the corpus README gives."""

from __future__ import annotations

import pytest

from accounts.models import SUPPORT_BOT_USERNAME
from issues.models import Issue, Note
from mailroom.models import InboundMessage
from projects.models import Project
from tests.factories import GroupFactory, ProjectFactory

from .helpers import ALIAS, FIXTURES, INCOMING, deliver

pytestmark = pytest.mark.django_db
Outcome = InboundMessage.Outcome


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}


@pytest.fixture
def email_test() -> Project:
    project = ProjectFactory(group=GroupFactory(path="email"), path="test")
    setting = project.service_desk
    setting.service_desk_enabled = True
    setting.project_key = "project_key"
    setting.save()
    return project


def corpus(name: str, project: Project) -> bytes:
    # Byte-exact copies of the GitLab corpus, kept as gitlab_<name> in tests/fixtures/mail/.
    text = (FIXTURES / f"gitlab_{name}").read_bytes()
    default_key = project.service_desk.default_key.encode()
    return (
        text.replace(b"email-test-project_id-issue-", default_key)
        .replace(b"project_slug-project_id-issue-", default_key)
        .replace(b"project_slug", project.full_path_slug.encode())
        .replace(b"project_key", project.service_desk.project_key.encode())
    )


def test_new_issue_from_service_desk_eml(email_test) -> None:
    row = deliver(corpus("service_desk.eml", email_test))
    assert row.outcome == Outcome.ISSUE_CREATED, row.reason
    issue = Issue.objects.get()
    assert issue.project == email_test
    assert issue.author.username == SUPPORT_BOT_USERNAME
    assert issue.confidential
    assert issue.title == "The message subject! @all"
    assert issue.external_author == "jake@adventuretime.ooo"
    for command in ("/label ~label1", "/assign @user1", "/close"):
        assert f"`{command}`" in issue.description
    assert issue.state == "opened"
    assert issue.labels.count() == 0
    assert list(issue.email_participants.values_list("email", flat=True)) == [
        "jake@adventuretime.ooo"
    ]
    assert row.decision["header"] == "To"
    assert row.decision["key_kind"] == "default"


def test_cc_recipients_become_participants_when_enabled(email_test) -> None:
    email_test.service_desk.add_external_participants_from_cc = True
    email_test.service_desk.save()
    deliver(corpus("service_desk.eml", email_test))
    emails = set(Issue.objects.get().email_participants.values_list("email", flat=True))
    assert emails == {"jake@adventuretime.ooo", "cc@example.com", "kk@example.org"}


def test_reply_by_in_reply_to_becomes_a_note(email_test) -> None:
    deliver(corpus("service_desk.eml", email_test))
    row = deliver(corpus("service_desk_reply.eml", email_test))
    assert row.outcome == Outcome.NOTE_ADDED, row.reason
    assert Issue.objects.count() == 1
    note = Note.objects.get(issue=Issue.objects.get(), system=False)
    assert note.external_author == "alan@adventuretime.ooo"
    assert row.decision["rule"] == "thread (In-Reply-To/References)"


def test_forwarded_mail_routes_by_delivered_to(email_test) -> None:
    row = deliver(corpus("service_desk_forwarded.eml", email_test))
    assert row.outcome == Outcome.ISSUE_CREATED, row.reason
    assert row.decision["header"] == "Delivered-To"
    assert Issue.objects.get().external_author == "jake.g@adventuretime.ooo"


def test_all_quoted_body_still_creates_the_issue_with_the_quote(email_test) -> None:
    row = deliver(corpus("service_desk_all_quoted.eml", email_test))
    assert row.outcome == Outcome.ISSUE_CREATED, row.reason
    assert "> " in Issue.objects.get().description


def test_legacy_full_path_key(email_test) -> None:
    row = deliver(corpus("service_desk_legacy.eml", email_test))
    assert row.outcome == Outcome.ISSUE_CREATED, row.reason
    assert row.decision["key_kind"] == "legacy"


def test_custom_address_then_its_reply(email_test) -> None:
    other = ProjectFactory(group=GroupFactory(path="other"), path="test")
    other.service_desk.service_desk_enabled = True
    other.service_desk.project_key = "project_key"  # same suffix, other slug
    other.service_desk.save()
    row = deliver(corpus("service_desk_custom_address.eml", email_test))
    assert row.outcome == Outcome.ISSUE_CREATED, row.reason
    assert row.decision["key_kind"] == "custom"
    assert Issue.objects.get().project == email_test
    reply = deliver(corpus("service_desk_custom_address_reply.eml", email_test))
    assert reply.outcome == Outcome.NOTE_ADDED, reply.reason
    assert Issue.objects.count() == 1


def test_unrelated_references_mean_no_key(email_test) -> None:
    row = deliver(corpus("service_desk_reference_headers.eml", email_test))
    assert row.outcome == Outcome.REJECTED
    assert row.reason == "no key found"
    assert row.rejection_notice_due
    assert not Issue.objects.exists()


def test_shift_jis_reply_is_decoded(email_test) -> None:
    deliver(corpus("service_desk.eml", email_test))
    row = deliver(corpus("service_desk_reply_illegal_utf8.eml", email_test))
    assert row.outcome == Outcome.NOTE_ADDED, row.reason
    note = Note.objects.get(system=False)
    assert "\ufffd" not in note.body
    assert any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in note.body)


@pytest.mark.parametrize(
    ("name", "notify"),
    [
        ("service_desk_reply_to_and_from.eml", "marceline@adventuretime.ooo"),
        ("service_desk_reply_to_sender_and_from.eml", "hooman@adventuretime.ooo"),
    ],
)
def test_requester_is_from_and_notifications_go_to_reply_to(email_test, name, notify) -> None:
    row = deliver(corpus(name, email_test))
    assert row.outcome == Outcome.ISSUE_CREATED, row.reason
    issue = Issue.objects.get()
    assert issue.external_author == "finn@adventuretime.ooo"
    assert issue.service_desk_reply_to == notify
    assert list(issue.email_participants.values_list("email", flat=True)) == [notify]


def test_custom_email_verification_never_creates_an_issue(email_test) -> None:
    row = deliver(corpus("service_desk_custom_email_address_verification.eml", email_test))
    assert row.outcome in (Outcome.IGNORED, Outcome.REJECTED)
    assert not Issue.objects.exists()
