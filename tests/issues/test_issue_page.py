"""The issue page: what each persona sees, the sidebar's actions (labels, assignees,
confidentiality, participants, converting, moving), the comment preview, and the services
behind them."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.selectors import support_bot
from issues.emails import note_added
from issues.models import (
    EmailParticipant,
    Issue,
    IssueEmail,
    Label,
    Note,
    OutboundEmail,
    SentNotification,
    Upload,
)
from issues.services import (
    issue_assignees_set,
    issue_close,
    issue_confidentiality_set,
    issue_convert_to_service_desk,
    issue_create,
    issue_labels_set,
    issue_move,
    issue_participant_add,
    issue_participant_remove,
    note_create,
    participant_add,
    participant_bouncing_clear,
    upload_create,
    upload_markdown,
)
from mailroom.models import InboundMessage
from projects.models import Project, Role, Visibility
from projects.services import membership_set
from tests.factories import (
    GroupFactory,
    IssueFactory,
    LabelFactory,
    ProjectFactory,
    UserFactory,
    member,
)
from tests.mailroom.helpers import INCOMING, deliver, make_email

pytestmark = pytest.mark.django_db

JAKE = "jake@customer.example"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:  # type: ignore[no-untyped-def]
    """The role matrices create hundreds of users; PBKDF2 would make that minutes."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def url(name: str, issue: Issue, *args: object) -> str:
    return reverse(name, args=[issue.project.full_path, issue.iid, *args])


def email_issue_in(project: Project, **kwargs: object) -> Issue:
    """An issue as the mailroom makes it: Support Bot, requester, participant."""
    issue = issue_create(
        project=project,
        author=support_bot(),
        title="Printer on fire",
        description="It **burns**.",
        confidential=kwargs.pop("confidential", True),  # type: ignore[arg-type]
        external_author=JAKE,
        **kwargs,  # type: ignore[arg-type]
    )
    participant_add(issue=issue, email=JAKE)
    return issue


@pytest.fixture
def email_issue(project: Project) -> Issue:
    return email_issue_in(project)


@pytest.fixture
def target(project: Project, reporter) -> Project:  # type: ignore[no-untyped-def]
    """A second project of the same group where bob is Reporter too."""
    other = ProjectFactory(group=project.group, path="web", name="Web", service_desk_enabled=True)
    membership_set(user=reporter, project=other, role=Role.REPORTER)
    return other


# --- services: labels, assignees --------------------------------------------------------------


def test_labels_set_adds_and_removes_with_one_system_note(project, reporter) -> None:
    bug, question, billing = (
        LabelFactory(project=project, title=t) for t in ("bug", "q", "billing")
    )
    issue = IssueFactory(project=project, labels=[billing])
    issue_labels_set(issue=issue, user=reporter, labels=[bug, question])
    assert set(issue.labels.all()) == {bug, question}
    note = Note.objects.get(issue=issue, system=True)
    assert note.body == "added labels bug, q and removed label billing"
    assert not note.internal
    issue_labels_set(issue=issue, user=reporter, labels=[question, bug])
    assert Note.objects.filter(issue=issue, system=True).count() == 1  # nothing changed


def test_labels_of_another_project_are_refused(project, reporter) -> None:
    issue = IssueFactory(project=project)
    foreign = LabelFactory(project=ProjectFactory(), title="bug")
    with pytest.raises(ValidationError):
        issue_labels_set(issue=issue, user=reporter, labels=[foreign])
    assert not issue.labels.exists()


def test_only_reporters_and_up_can_be_assigned(project, reporter, developer, guest) -> None:
    issue = IssueFactory(project=project)
    with pytest.raises(ValidationError):
        issue_assignees_set(issue=issue, user=reporter, assignees=[guest])
    issue_assignees_set(issue=issue, user=reporter, assignees=[reporter, developer])
    assert set(issue.assignees.all()) == {reporter, developer}
    issue_assignees_set(issue=issue, user=reporter, assignees=[developer])
    notes = list(Note.objects.filter(issue=issue, system=True).values_list("body", flat=True))
    assert notes == ["assigned to @bob, @dan", "unassigned @bob"]


def test_group_members_can_be_assigned(project, reporter) -> None:
    lead = UserFactory(username="lea")
    membership_set(user=lead, group=project.group, role=Role.MAINTAINER)
    issue = IssueFactory(project=project)
    issue_assignees_set(issue=issue, user=reporter, assignees=[lead])
    assert list(issue.assignees.all()) == [lead]


# --- services: confidentiality ----------------------------------------------------------------


def test_email_issue_in_public_project_can_never_become_public(reporter) -> None:
    public = ProjectFactory(visibility=Visibility.PUBLIC, service_desk_enabled=True)
    issue = email_issue_in(public)
    with pytest.raises(ValidationError, match="always confidential"):
        issue_confidentiality_set(issue=issue, user=reporter, confidential=False)
    issue.refresh_from_db()
    assert issue.confidential
    assert not Note.objects.filter(issue=issue, system=True).exists()


def test_email_issue_in_private_project_and_normal_issue_in_public_project_can(reporter) -> None:
    private_issue = email_issue_in(ProjectFactory(visibility=Visibility.PRIVATE))
    issue_confidentiality_set(issue=private_issue, user=reporter, confidential=False)
    public_issue = IssueFactory(
        project=ProjectFactory(visibility=Visibility.PUBLIC), confidential=True
    )
    issue_confidentiality_set(issue=public_issue, user=reporter, confidential=False)
    for issue in (private_issue, public_issue):
        issue.refresh_from_db()
        assert not issue.confidential
        assert Note.objects.get(issue=issue, system=True).body == (
            "made the issue visible to everyone"
        )


# --- services: participants -------------------------------------------------------------------


def test_participant_add_validates_and_leaves_an_internal_note(email_issue, reporter) -> None:
    participant = issue_participant_add(
        issue=email_issue, user=reporter, email=" boss@corp.example "
    )
    assert participant.email == "boss@corp.example"
    note = Note.objects.get(issue=email_issue, system=True)
    assert note.internal
    assert note.body == "added boss@corp.example as participant"
    for bad in ("not-an-address", "", "JAKE@customer.example", "a@b"):
        with pytest.raises(ValidationError):
            issue_participant_add(issue=email_issue, user=reporter, email=bad)
    # Adding is silent: no *new participant* email.
    assert not OutboundEmail.objects.exclude(kind="team").exists()


def test_participant_add_refuses_our_own_addresses(email_issue, reporter, settings) -> None:
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING}
    settings.DEFAULT_FROM_EMAIL = "support@servicedesk.test"
    for ours in ("support@servicedesk.test", INCOMING.address_for("acme-game-1-issue-")):
        with pytest.raises(ValidationError, match="own addresses"):
            issue_participant_add(issue=email_issue, user=reporter, email=ours)


def test_participant_limit_is_respected(email_issue, reporter, settings) -> None:
    settings.SERVICEDESK_MAX_PARTICIPANTS = 2
    issue_participant_add(issue=email_issue, user=reporter, email="one@corp.example")
    with pytest.raises(ValidationError, match="at most 2"):
        issue_participant_add(issue=email_issue, user=reporter, email="two@corp.example")
    assert email_issue.email_participants.count() == 2


def test_participant_remove_and_bouncing_clear(email_issue, reporter) -> None:
    jake = EmailParticipant.objects.get(issue=email_issue)
    EmailParticipant.objects.filter(pk=jake.pk).update(bouncing_at=timezone.now())
    jake.refresh_from_db()
    assert participant_bouncing_clear(participant=jake, user=reporter)
    assert not participant_bouncing_clear(participant=jake, user=reporter)
    jake.refresh_from_db()
    assert jake.bouncing_at is None
    issue_participant_remove(participant=jake, user=reporter)
    assert not email_issue.email_participants.exists()
    bodies = list(
        Note.objects.filter(issue=email_issue, system=True, internal=True).values_list(
            "body", flat=True
        )
    )
    assert bodies == [
        f"cleared the bouncing state of {JAKE}: emails go to it again",
        f"removed {JAKE} as participant",
    ]


# --- services: converting ---------------------------------------------------------------------


def test_convert_makes_a_service_desk_issue_like_the_mailroom(project, reporter, guest) -> None:
    issue = IssueFactory(project=project, author=guest, confidential=False)
    issue_convert_to_service_desk(issue=issue, user=reporter, email="jake@customer.example")
    issue.refresh_from_db()
    assert issue.is_service_desk
    assert issue.external_author == JAKE
    assert issue.service_desk_reply_to == ""
    assert issue.author == support_bot()
    assert issue.confidential  # tickets_confidential_by_default is on
    assert list(issue.email_participants.values_list("email", flat=True)) == [JAKE]
    notes = list(Note.objects.filter(issue=issue, system=True).order_by("id"))
    assert notes[0].internal
    assert (
        notes[0].body
        == f"converted this issue into a Service Desk issue for {JAKE} (opened by @carol)"
    )
    assert notes[1].body == "made the issue confidential"
    assert not OutboundEmail.objects.exclude(kind="team").exists()  # no thank-you, as in GitLab
    with pytest.raises(ValidationError, match="already"):
        issue_convert_to_service_desk(issue=issue, user=reporter, email="x@customer.example")


def test_convert_in_public_project_is_always_confidential(reporter) -> None:
    public = ProjectFactory(visibility=Visibility.PUBLIC, service_desk_enabled=True)
    public.service_desk.tickets_confidential_by_default = False
    public.service_desk.save()
    issue = IssueFactory(project=public, confidential=False)
    issue_convert_to_service_desk(issue=issue, user=reporter, email=JAKE)
    issue.refresh_from_db()
    assert issue.confidential
    with pytest.raises(ValidationError):
        issue_confidentiality_set(issue=issue, user=reporter, confidential=False)


def test_convert_keeps_a_normal_issue_public_when_the_project_allows(reporter) -> None:
    private = ProjectFactory(service_desk_enabled=True)
    private.service_desk.tickets_confidential_by_default = False
    private.service_desk.save()
    issue = IssueFactory(project=private, confidential=False)
    issue_convert_to_service_desk(issue=issue, user=reporter, email=JAKE)
    issue.refresh_from_db()
    assert not issue.confidential


def test_convert_needs_service_desk_on(reporter) -> None:
    issue = IssueFactory(project=ProjectFactory(service_desk_enabled=False))
    with pytest.raises(ValidationError, match="Service Desk is off"):
        issue_convert_to_service_desk(issue=issue, user=reporter, email=JAKE)
    issue.refresh_from_db()
    assert not issue.is_service_desk


# --- services: moving -------------------------------------------------------------------------


def test_move_copies_the_issue_and_closes_the_original(
    project, target, reporter, developer
) -> None:
    bug = LabelFactory(project=project, title="bug")
    LabelFactory(project=project, title="only-here")
    target_bug = LabelFactory(project=target, title="bug")
    issue = email_issue_in(project, labels=[bug, *Label.objects.filter(title="only-here")])
    issue_assignees_set(issue=issue, user=reporter, assignees=[reporter, developer])
    old_note = note_create(issue=issue, author=reporter, body="Looking", internal=True)
    Note.objects.filter(pk=old_note.pk).update(created_at=timezone.now() - timedelta(days=3))
    note_create(issue=issue, author=support_bot(), body="More info", external_author=JAKE)
    project.service_desk.send_issue_closed_email = True
    project.service_desk.save()

    moved = issue_move(issue=issue, user=reporter, target=target)

    issue.refresh_from_db()
    assert issue.moved_to == moved
    assert issue.state == Issue.State.CLOSED
    assert list(issue.notes.filter(system=True).values_list("body", flat=True))[-2:] == [
        f"moved this issue to {target.full_path}#{moved.iid}",
        "closed",
    ]
    assert moved.project == target
    assert (moved.iid, moved.title, moved.description) == (1, issue.title, issue.description)
    assert moved.is_open
    assert moved.confidential
    assert (moved.author, moved.external_author) == (support_bot(), JAKE)
    assert list(moved.labels.all()) == [target_bug]  # matched by title
    assert list(moved.assignees.all()) == [reporter]  # dan is no member of the target
    copies = list(moved.notes.order_by("created_at", "id"))
    assert [n.body for n in copies] == [
        "Looking",  # its time is kept: three days ago
        "assigned to @bob, @dan",
        "More info",
        f"moved this issue from {project.full_path}#{issue.iid}",
    ]
    assert copies[0].internal
    assert copies[1].system
    assert copies[2].external_author == JAKE
    assert copies[0].created_at < timezone.now() - timedelta(days=2)
    assert list(moved.email_participants.values_list("email", flat=True)) == [JAKE]
    # Moving emails nobody: no "issue closed", although the project turned it on.
    assert not OutboundEmail.objects.exclude(kind="team").exists()
    with pytest.raises(ValidationError, match="already moved"):
        issue_move(issue=issue, user=reporter, target=target)


def test_move_into_a_public_project_makes_a_service_desk_issue_confidential(
    project, reporter
) -> None:
    issue = email_issue_in(project, confidential=False)
    public = ProjectFactory(visibility=Visibility.PUBLIC)
    assert issue_move(issue=issue, user=reporter, target=public).confidential


def test_move_copies_files_and_rewrites_their_links(
    project, target, reporter, settings, tmp_path
) -> None:
    settings.MEDIA_ROOT = tmp_path
    issue = email_issue_in(project)
    upload = upload_create(
        issue=issue, filename="shot.png", content=b"\x89PNG", content_type="image/png",
        uploaded_by=reporter,
    )  # fmt: skip
    Issue.objects.filter(pk=issue.pk).update(description=f"See {upload_markdown(upload)}")
    note = note_create(issue=issue, author=reporter, body=f"Again: {upload_markdown(upload)}")
    Upload.objects.filter(pk=upload.pk).update(note=note)
    issue.refresh_from_db()
    moved = issue_move(issue=issue, user=reporter, target=target)
    copy = Upload.objects.get(issue=moved)
    assert copy.pk != upload.pk
    assert copy.file.name == upload.file.name
    assert copy.project == target
    new_path = reverse("upload", args=[copy.pk, "shot.png"])
    assert new_path in moved.description
    copied_note = moved.notes.get(body__startswith="Again")
    assert new_path in copied_note.body
    assert copy.note == copied_note


def test_reply_and_unsubscribe_with_an_old_reply_key_reach_the_moved_issue(
    project, target, reporter, settings, redis_cache_flushed
) -> None:
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING}
    row = deliver(make_email(to=INCOMING.address_for(project.service_desk.default_key)))
    assert row.outcome == InboundMessage.Outcome.ISSUE_CREATED, row.reason
    issue = Issue.objects.get(pk=row.issue_id)
    sent = SentNotification.objects.filter(user=None).get(issue=issue)  # the thank-you's
    key = sent.reply_key
    moved = issue_move(issue=issue, user=reporter, target=target)

    reply = deliver(make_email(to=INCOMING.address_for(key), body="Any news?"))
    assert reply.outcome == InboundMessage.Outcome.NOTE_ADDED, reply.reason
    note = Note.objects.get(pk=reply.note_id)
    assert note.issue == moved
    # Threading by Message-ID (a client that drops the plus-address) follows the move too.
    assert IssueEmail.objects.filter(issue=moved, message_id=row.message_id).exists()

    # The customer keeps getting emails from the new issue (the target has Service Desk on) …
    team_reply = note_create(issue=moved, author=reporter, body="Fixed in 2.4")
    assert [e.recipient for e in note_added(team_reply)] == [JAKE]
    # … and unsubscribing with the old key stops them.
    token = sent.unsubscribe_token
    done = deliver(make_email(to=INCOMING.address_for(f"{token}-unsubscribe"), body="stop"))
    assert done.outcome == InboundMessage.Outcome.UNSUBSCRIBED, done.reason
    assert moved.email_participants.get().unsubscribed_at is not None
    assert note_added(note_create(issue=moved, author=reporter, body="Hello?")) == []


def test_no_emails_after_moving_to_a_project_without_service_desk(project, reporter) -> None:
    issue = email_issue_in(project)
    quiet = ProjectFactory(group=project.group, path="quiet", service_desk_enabled=False)
    moved = issue_move(issue=issue, user=reporter, target=quiet)
    assert note_added(note_create(issue=moved, author=reporter, body="Hi")) == []


# --- the page: who sees what ------------------------------------------------------------------

PERSONAS = ["owner", "maintainer", "developer", "reporter", "guest", "outsider", "anonymous"]
REPORTER_PLUS = {"owner", "maintainer", "developer", "reporter"}


def persona_client(client, request, persona: str):  # type: ignore[no-untyped-def]
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    return client


def make_project(visibility: str) -> Project:
    if visibility == Visibility.PRIVATE:
        return Project.objects.get(full_path="acme/game")
    public = ProjectFactory(
        group=GroupFactory(path="open"), path="pub", visibility=Visibility.PUBLIC,
        service_desk_enabled=True,
    )  # fmt: skip
    for name in ("alice", "mia", "dan", "bob", "carol"):
        role = {"alice": 50, "mia": 40, "dan": 30, "bob": 20, "carol": 10}[name]
        membership_set(user=User.objects.get(username=name), project=public, role=role)
    return public


@pytest.fixture
def everyone(owner, maintainer, developer, reporter, guest, outsider) -> None:  # type: ignore[no-untyped-def]
    """All personas exist (the matrix logs in as one of them)."""


def page_expectation(persona: str, visibility: str, confidential: bool) -> int | str:
    if persona == "anonymous":
        return 200 if visibility == Visibility.PUBLIC and not confidential else "login"
    if persona == "outsider" and visibility == Visibility.PRIVATE:
        return 404
    if confidential and persona not in REPORTER_PLUS:
        return 404
    return 200


@pytest.mark.parametrize("confidential", [True, False])
@pytest.mark.parametrize("visibility", [Visibility.PRIVATE, Visibility.PUBLIC])
@pytest.mark.parametrize("persona", PERSONAS)
def test_issue_page_role_matrix(
    client, request, everyone, persona, visibility, confidential
) -> None:
    issue = email_issue_in(make_project(visibility), confidential=confidential)
    note_create(issue=issue, author=support_bot(), body="Triage", internal=True)
    response = persona_client(client, request, persona).get(url("issue_detail", issue))
    expected = page_expectation(persona, visibility, confidential)
    if expected == "login":
        assert response.status_code == 302
        assert response["Location"].startswith("/login/")
        return
    assert response.status_code == expected
    if expected == 200:
        html = response.content.decode()
        sees_team_things = persona in REPORTER_PLUS
        assert (JAKE in html) is sees_team_things
        assert ("Triage" in html) is sees_team_things
        assert ("Edit labels" in html) is sees_team_things
        assert ("customer.example" in html) is sees_team_things


def action_request(action: str, issue: Issue, move_to: Project) -> tuple[str, dict[str, object]]:
    participant = issue.email_participants.first()
    assert participant is not None
    mia = User.objects.get(username="mia")  # Maintainer of both matrix projects: can be assigned
    label = Label.objects.get(project=issue.project, title="bug")
    return {
        "preview": (url("note_preview", issue), {"body": "**hi**"}),
        "labels": (url("issue_labels", issue), {"labels": [label.pk]}),
        "assignees": (url("issue_assignees", issue), {"assignees": [mia.pk]}),
        "confidentiality": (
            url("issue_confidentiality", issue),
            {"confidential": "false" if issue.confidential else "true"},
        ),
        "participant_add": (url("participant_add", issue), {"email": "x@corp.example"}),
        "participant_remove": (url("participant_remove", issue, participant.pk), {}),
        "convert": (url("issue_convert", issue), {"email": "new@customer.example"}),
        "move": (url("issue_move", issue), {"project": move_to.pk}),
        "close": (url("issue_close", issue), {}),
        "comment": (url("note_add", issue), {"body": "Hello"}),
        "clear_bouncing": (url("participant_bouncing_clear", issue, participant.pk), {}),
    }[action]


ACTIONS = [
    "preview", "comment", "close", "labels", "assignees", "confidentiality", "participant_add",
    "participant_remove", "clear_bouncing", "convert", "move",
]  # fmt: skip


def action_expectation(persona: str, visibility: str, confidential: bool, action: str) -> int | str:
    if persona == "anonymous":
        return "login"
    if persona == "outsider" and visibility == Visibility.PRIVATE:
        return 404
    if confidential and persona not in REPORTER_PLUS:
        return 404
    if action == "preview":
        return 200  # anyone who may comment
    if action == "comment":
        return "commented"
    return "done" if persona in REPORTER_PLUS else 403


@pytest.mark.parametrize("confidential", [True, False])
@pytest.mark.parametrize("visibility", [Visibility.PRIVATE, Visibility.PUBLIC])
@pytest.mark.parametrize("persona", PERSONAS)
def test_issue_action_role_matrix(
    client, request, everyone, persona, visibility, confidential
) -> None:
    """Every action of the page, each on a fresh issue: 302 back to the page (and a system
    note) for Reporter+, 403 for other readers, 404 for those who cannot read the issue, the
    login page for anonymous visitors, and nothing changes for any of them. Previewing and
    commenting need only read access. (Closing is also open to the issue's author, who is
    none of these personas.)"""
    project = make_project(visibility)
    LabelFactory(project=project, title="bug")
    erin = UserFactory(username="erin")
    move_to = ProjectFactory(group=GroupFactory(path="elsewhere"), path="target")
    if persona in REPORTER_PLUS:
        membership_set(user=request.getfixturevalue(persona), project=move_to, role=Role.REPORTER)
    client = persona_client(client, request, persona)
    for action in ACTIONS:
        # A normal issue (so it can be converted) with one email participant.
        issue = IssueFactory(project=project, author=erin, confidential=confidential)
        jake, _ = participant_add(issue=issue, email=JAKE)
        EmailParticipant.objects.filter(pk=jake.pk).update(bouncing_at=timezone.now())
        path, data = action_request(action, issue, move_to)

        response = client.post(path, data)

        expected = action_expectation(persona, visibility, confidential, action)
        notes = Note.objects.filter(issue=issue)
        if expected == "login":
            assert response.status_code == 302, action
            assert response["Location"].startswith("/login/"), action
        elif expected == "commented":
            assert response.status_code == 302, action
            assert notes.filter(system=False, body="Hello").exists(), action
            continue
        elif expected == "done":
            assert response.status_code == 302, (action, response.content.decode()[:2000])
            assert not response["Location"].startswith("/login/"), action
            assert notes.filter(system=True).exists(), action  # every change leaves a note
        else:
            assert response.status_code == expected, action
        if expected != "done":
            assert not notes.exists(), action
            issue.refresh_from_db()
            assert issue.moved_to is None, action
            assert not issue.is_service_desk, action
            assert not issue.labels.exists(), action
            assert issue.is_open, action


def test_guest_sees_a_public_email_issue_without_any_address(client, guest, project) -> None:
    issue = email_issue_in(project, confidential=False)
    note_create(issue=issue, author=support_bot(), body="Thanks!", external_author=JAKE)
    note_create(
        issue=issue, author=support_bot(), body="Me too", external_author="eve@else.example"
    )
    client.force_login(guest)
    html = client.get(url("issue_detail", issue)).content.decode()
    assert "Thanks!" in html
    assert "Me too" in html
    assert "@customer.example" not in html
    assert "@else.example" not in html
    assert "via email" in html
    assert "not a participant" not in html
    assert "Email participants" not in html


def test_email_notes_say_when_the_sender_is_not_a_participant(
    client, reporter, email_issue
) -> None:
    from_jake = note_create(
        issue=email_issue, author=support_bot(), body="Hi", external_author="JAKE@customer.example"
    )
    from_eve = note_create(
        issue=email_issue, author=support_bot(), body="Hey", external_author="eve@else.example"
    )
    client.force_login(reporter)

    def note_html(note: Note) -> str:
        html = client.get(url("issue_detail", email_issue)).content.decode()
        start = html.index(f'id="note-{note.pk}"')
        return html[start : html.index("</li>", start)]

    assert "not a participant" not in note_html(from_jake)
    assert "eve@else.example" in note_html(from_eve)
    assert "not a participant" in note_html(from_eve)
    # Removed participants are no longer participants.
    issue_participant_remove(participant=email_issue.email_participants.get(), user=reporter)
    assert "not a participant" in note_html(from_jake)


def test_requester_whose_reply_to_is_the_participant_counts_as_participant(
    client, reporter, project
) -> None:
    issue = issue_create(
        project=project, author=support_bot(), title="x", confidential=True,
        external_author=JAKE, service_desk_reply_to="tickets@customer.example",
    )  # fmt: skip
    participant_add(issue=issue, email="tickets@customer.example")
    note_create(issue=issue, author=support_bot(), body="Reply", external_author=JAKE)
    client.force_login(reporter)
    html = client.get(url("issue_detail", issue)).content.decode()
    assert "replies go to tickets@customer.example" in html
    assert "not a participant" not in html


def test_participants_show_their_state(client, reporter, email_issue) -> None:
    issue_participant_add(issue=email_issue, user=reporter, email="boss@corp.example")
    EmailParticipant.objects.filter(email=JAKE).update(unsubscribed_at=timezone.now())
    EmailParticipant.objects.filter(email="boss@corp.example").update(bouncing_at=timezone.now())
    client.force_login(reporter)
    html = client.get(url("issue_detail", email_issue)).content.decode()
    assert "unsubscribed just now" in html
    assert "bouncing since just now" in html
    assert "Clear bouncing" in html


def test_internal_and_system_notes_are_marked(client, reporter, email_issue) -> None:
    note_create(issue=email_issue, author=reporter, body="Between us", internal=True)
    issue_close(issue=email_issue, user=reporter)
    client.force_login(reporter)
    html = client.get(url("issue_detail", email_issue)).content.decode()
    assert 'class="note internal"' in html
    assert 'data-testid="system-note"' in html
    assert "Internal note" in html


def test_moved_issue_links_to_its_copy_for_those_who_may_read_it(
    client, project, target, reporter, guest
) -> None:
    issue = IssueFactory(project=project, confidential=False)
    moved = issue_move(issue=issue, user=reporter, target=target)
    client.force_login(reporter)
    html = client.get(url("issue_detail", issue)).content.decode()
    assert f'href="{url("issue_detail", moved)}"' in html
    client.force_login(guest)  # no member of the target
    html = client.get(url("issue_detail", issue)).content.decode()
    assert "moved to" in html
    assert url("issue_detail", moved) not in html


def test_move_notes_name_the_other_project_only_to_who_may_read_it(
    client, project, target, reporter, guest
) -> None:
    """The "moved this issue to/from …" notes (and the copies a later move carries along) show
    the other issue's path and link only to those who may read that issue."""
    target_guest = member(target, Role.GUEST, "tim")
    third = ProjectFactory(group=project.group, path="ops", name="Ops")
    membership_set(user=reporter, project=third, role=Role.REPORTER)
    third_guest = member(third, Role.GUEST, "olga")
    issue = IssueFactory(project=project, confidential=False)
    moved = issue_move(issue=issue, user=reporter, target=target)
    again = issue_move(issue=moved, user=reporter, target=third)

    def notes(user: User, at: Issue) -> str:
        client.force_login(user)
        html = client.get(url("issue_detail", at)).content.decode()
        found = re.findall(r'data-testid="system-note">(.*?)</li>', html, re.S)
        return " ".join(re.sub(r"<[^>]+>|\s+", " ", "".join(found)).split())

    def link(to: Issue) -> str:
        return (
            f'<a href="{url("issue_detail", to)}" data-testid="moved-reference">{to.reference}</a>'
        )

    assert "moved this issue to another project" in notes(guest, issue)
    assert "moved this issue from another project" in notes(target_guest, moved)
    assert "moved this issue to another project" in notes(target_guest, moved)
    assert notes(third_guest, again).count("moved this issue from another project") == 2
    for user, at in [(guest, issue), (target_guest, moved), (third_guest, again)]:
        client.force_login(user)
        html = client.get(url("issue_detail", at)).content.decode()
        others = {issue.project, moved.project, again.project} - {at.project}
        for other in others:
            assert other.full_path not in html, (user, at)
    client.force_login(reporter)
    html = client.get(url("issue_detail", moved)).content.decode()
    assert f"moved this issue from {link(issue)}" in html
    assert f"moved this issue to {link(again)}" in html


# --- the page: actions through the views ------------------------------------------------------


def test_markdown_preview_htmx_fragment_is_sanitised(client, reporter, email_issue) -> None:
    client.force_login(reporter)
    response = client.post(
        url("note_preview", email_issue),
        {"body": "**bold** <script>alert(1)</script> [x](javascript:alert(1))"},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "<strong>bold</strong>" in html
    assert "<script" not in html
    assert "javascript:" not in html
    assert "<html" not in html  # a fragment, not a page
    assert not Note.objects.filter(issue=email_issue, body__contains="bold").exists()


def test_markdown_preview_without_js_returns_the_page_with_the_text_kept(
    client, reporter, email_issue
) -> None:
    client.force_login(reporter)
    response = client.post(
        url("note_preview", email_issue), {"body": "_draft_ text", "internal": "on"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "<em>draft</em>" in html
    assert ">\n_draft_ text</textarea>" in html
    assert re.search(r'<input type="radio" name="internal" value="true"[^>]*\bchecked', html)


def test_views_set_labels_assignees_and_confidentiality(
    client, reporter, developer, project
) -> None:
    bug = LabelFactory(project=project, title="bug")
    issue = IssueFactory(project=project, confidential=False)
    client.force_login(reporter)
    assert client.post(url("issue_labels", issue), {"labels": [bug.pk]}).status_code == 302
    assert (
        client.post(url("issue_assignees", issue), {"assignees": [developer.pk]}).status_code == 302
    )
    assert (
        client.post(url("issue_confidentiality", issue), {"confidential": "true"}).status_code
        == 302
    )
    issue.refresh_from_db()
    assert list(issue.labels.all()) == [bug]
    assert list(issue.assignees.all()) == [developer]
    assert issue.confidential
    page = client.get(url("issue_detail", issue)).content.decode()
    assert "added label bug" in page
    assert "assigned to @dan" in page
    assert "made the issue confidential" in page


def test_invalid_choices_come_back_with_an_error(client, reporter, guest, project) -> None:
    issue = IssueFactory(project=project)
    foreign = LabelFactory(project=ProjectFactory(), title="foreign")
    client.force_login(reporter)
    response = client.post(url("issue_labels", issue), {"labels": [foreign.pk]})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    response = client.post(url("issue_assignees", issue), {"assignees": [guest.pk]})
    assert response.status_code == 400
    response = client.post(url("participant_add", issue), {"email": "nope"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Enter a valid email address." in html
    assert 'value="nope"' in html
    assert not Note.objects.filter(issue=issue).exists()


def test_confidentiality_rule_holds_through_the_view(client, reporter) -> None:
    public = ProjectFactory(visibility=Visibility.PUBLIC, service_desk_enabled=True)
    membership_set(user=reporter, project=public, role=Role.REPORTER)
    issue = email_issue_in(public)
    client.force_login(reporter)
    page = client.get(url("issue_detail", issue)).content.decode()
    assert "Always confidential" in page
    assert "Turn off confidentiality" not in page
    response = client.post(url("issue_confidentiality", issue), {"confidential": "false"})
    assert response.status_code == 400
    assert "always confidential" in response.content.decode()
    issue.refresh_from_db()
    assert issue.confidential


def test_move_view_refuses_projects_where_the_user_is_not_reporter(
    client, reporter, project
) -> None:
    issue = IssueFactory(project=project)
    elsewhere = ProjectFactory()
    membership_set(user=reporter, project=elsewhere, role=Role.GUEST)
    client.force_login(reporter)
    response = client.post(url("issue_move", issue), {"project": elsewhere.pk})
    assert response.status_code == 400
    issue.refresh_from_db()
    assert issue.moved_to is None


def test_move_view_redirects_to_the_copy(client, reporter, project, target) -> None:
    issue = email_issue_in(project)
    client.force_login(reporter)
    page = client.get(url("issue_detail", issue)).content.decode()
    assert f'<option value="{target.pk}">{target.full_path}</option>' in page
    response = client.post(url("issue_move", issue), {"project": target.pk})
    moved = Issue.objects.get(project=target)
    assert response.status_code == 302
    assert response["Location"] == url("issue_detail", moved)


def test_participant_from_another_issue_is_404(client, reporter, project, email_issue) -> None:
    other = email_issue_in(project)
    foreign = other.email_participants.get()
    client.force_login(reporter)
    assert client.post(url("participant_remove", email_issue, foreign.pk)).status_code == 404
    assert EmailParticipant.objects.filter(pk=foreign.pk).exists()


def test_actions_are_post_only(client, reporter, email_issue) -> None:
    client.force_login(reporter)
    for name in ("note_preview", "issue_labels", "issue_move", "participant_add", "issue_convert"):
        assert client.get(url(name, email_issue)).status_code == 405


# --- the page costs a fixed number of queries -------------------------------------------------


def page_queries(client, issue: Issue) -> int:  # type: ignore[no-untyped-def]
    path = url("issue_detail", issue)
    client.get(path)  # warm caches that are not per request (content types, the banner…)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(path).status_code == 200
    return len(queries)


def grow(issue: Issue, *, notes: int, participants: int, labels: int, authors: list) -> None:  # type: ignore[type-arg]
    project = issue.project
    start = Label.objects.filter(project=project).count()
    new_labels = Label.objects.bulk_create(
        [Label(project=project, title=f"l{start + i}") for i in range(labels)]
    )
    issue.labels.add(*new_labels)
    issue.assignees.add(*[a for a in authors if a.username in ("bob", "dan")])
    existing = issue.email_participants.count()
    EmailParticipant.objects.bulk_create(
        [
            EmailParticipant(issue=issue, email=f"p{existing + i}@customer.example")
            for i in range(participants)
        ]
    )
    Note.objects.bulk_create(
        [
            Note(issue=issue, author=authors[i % len(authors)], body=f"note **{i}**",
                 internal=i % 3 == 0, system=i % 7 == 0,
                 external_author=f"p{i}@customer.example" if i % 5 == 0 else "")
            for i in range(notes)
        ]
    )  # fmt: skip


@pytest.mark.parametrize("persona", ["reporter", "guest"])
def test_issue_page_query_count_does_not_grow_with_the_thread(
    client, request, everyone, project, persona
) -> None:
    authors = [request.getfixturevalue(p) for p in ("owner", "reporter", "developer")] + [
        support_bot()
    ]
    issue = email_issue_in(project, confidential=persona != "guest")
    client.force_login(request.getfixturevalue(persona))
    grow(issue, notes=5, participants=1, labels=1, authors=authors)
    few = page_queries(client, issue)
    grow(issue, notes=195, participants=8, labels=30, authors=authors)
    many = page_queries(client, issue)
    assert few == many
    # Reporter+ have two queries more: the emails each public comment caused (sent / failed),
    # and the customer's satisfaction rating.
    assert many <= 18, many


def test_issue_page_query_count_does_not_depend_on_the_number_of_issues(
    client, everyone, reporter, project
) -> None:
    authors = [reporter, support_bot()]
    issue = email_issue_in(project)
    grow(issue, notes=20, participants=3, labels=3, authors=authors)
    client.force_login(reporter)

    def add_issues(count: int) -> None:
        from issues.services import issue_iids_allocate

        iids = issue_iids_allocate(project_id=project.pk, count=count)
        Issue.objects.bulk_create(
            [Issue(project=project, iid=iid, title=f"t{iid}", author=reporter) for iid in iids]
        )

    add_issues(9)
    ten = page_queries(client, issue)
    add_issues(990)
    thousand = page_queries(client, issue)
    assert Issue.objects.filter(project=project).count() == 1000
    assert ten == thousand


def test_the_requester_is_named_and_linked_above_the_thread_for_reporters(
    client, project, reporter, guest
) -> None:
    from django.urls import reverse

    from accounts.selectors import support_bot
    from tests.factories import IssueFactory

    issue = IssueFactory(project=project, author=support_bot(), confidential=False,
                         external_author="jake@customer.example")  # fmt: skip
    customer_page = reverse("customer_detail") + "?email=jake%40customer.example"
    client.force_login(reporter)
    header = client.get(issue.get_absolute_url()).content.decode().split('class="notes"')[0]
    assert f'href="{customer_page}"' in header
    client.force_login(guest)
    page = client.get(issue.get_absolute_url()).content.decode()
    assert "jake@customer.example" not in page
    assert "a customer" in page
