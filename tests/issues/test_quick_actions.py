"""Quick actions: in description templates (run by the Support Bot as email issues are
created) and in team members' comments, each command through its service and its check."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from accounts.models import User
from accounts.selectors import support_bot
from issues.models import Issue, OutboundEmail
from issues.quick_actions import MAX_COMMANDS, apply_quick_actions, quick_actions_finish
from issues.services import issue_create, note_post, participant_add
from projects.models import Project, Role
from projects.services import membership_set
from tests.factories import IssueFactory, LabelFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_assign_in_a_template_follows_the_reporter_and_up_rule(
    project, reporter, developer, guest, outsider
) -> None:
    """The same rule as the sidebar: only who can read every issue of the project (Reporter+,
    directly or through its group) is assigned; Guests and outsiders are ignored."""
    group_reporter = UserFactory(username="gina")
    membership_set(user=group_reporter, group=project.group, role=Role.REPORTER)
    issue = IssueFactory(project=project, author=support_bot(), confidential=True)

    result = apply_quick_actions(
        issue=issue,
        text="Thanks for writing.\n/assign @carol @dave @bob\n/assign @dan @gina @nobody",
        user=support_bot(),
        template=True,
    )

    assert sorted(u.username for u in issue.assignees.all()) == ["bob", "dan", "gina"]
    assert result.applied == ["assigned @bob", "assigned @dan, @gina"]
    assert result.refused == [
        "/assign @carol @dave @bob: @carol cannot be assigned in this project",
        "/assign @carol @dave @bob: @dave cannot be assigned in this project",
        "/assign @dan @gina @nobody: @nobody cannot be assigned in this project",
    ]
    assert result.text == "Thanks for writing."


# --- Comments: each command, through the services ------------------------------------------

JAKE = "jake@customer.example"


def ticket(project: Project, *, confidential: bool = True) -> Issue:
    """An issue as the mailroom makes it: Support Bot, requester, participant."""
    issue = issue_create(
        project=project,
        author=support_bot(),
        title="Printer on fire",
        confidential=confidential,
        external_author=JAKE,
    )
    participant_add(issue=issue, email=JAKE)
    return issue


def system_notes(issue: Issue) -> list[str]:
    return list(issue.notes.filter(system=True).order_by("pk").values_list("body", flat=True))


def run(issue: Issue, text: str, user: User):  # type: ignore[no-untyped-def]
    return apply_quick_actions(issue=issue, text=text, user=user)


def test_label_unlabel_and_relabel_leave_system_notes(project, reporter) -> None:
    for title in ("billing", "two words", "urgent"):
        LabelFactory(project=project, title=title)
    issue = ticket(project)

    result = run(issue, 'Hello\n/label ~billing ~"two words" ~nope\nBye', reporter)
    assert result.text == "Hello\nBye"
    assert result.applied == ['labelled ~billing ~"two words"']
    assert result.refused == ['/label ~billing ~"two words" ~nope: ~nope: no such label']
    assert sorted(issue.labels.values_list("title", flat=True)) == ["billing", "two words"]

    run(issue, "/unlabel ~billing", reporter)
    assert list(issue.labels.values_list("title", flat=True)) == ["two words"]
    run(issue, "/relabel ~urgent ~billing", reporter)
    assert sorted(issue.labels.values_list("title", flat=True)) == ["billing", "urgent"]
    result = run(issue, "/unlabel", reporter)
    assert result.applied == ["removed all labels"]
    assert not issue.labels.exists()
    assert system_notes(issue) == [
        "added labels billing, two words",
        "removed label billing",
        "added labels billing, urgent and removed label two words",
        "removed labels billing, urgent",
    ]


def test_a_relabel_naming_no_label_of_the_project_keeps_the_labels(project, reporter) -> None:
    LabelFactory(project=project, title="billing")
    issue = ticket(project)
    run(issue, "/label ~billing", reporter)
    result = run(issue, "/relabel ~bilingg", reporter)
    assert result.applied == []
    assert result.refused == ["/relabel ~bilingg: ~bilingg: no such label"]
    assert list(issue.labels.values_list("title", flat=True)) == ["billing"]


def test_assign_several_and_me_then_unassign(project, reporter, developer, maintainer) -> None:
    issue = ticket(project)
    result = run(issue, "/assign @dan me", reporter)
    assert result.applied == ["assigned @dan, @bob"]
    assert sorted(u.username for u in issue.assignees.all()) == ["bob", "dan"]
    run(issue, "/assign @mia\n/unassign @dan", reporter)
    assert sorted(u.username for u in issue.assignees.all()) == ["bob", "mia"]
    result = run(issue, "/unassign", reporter)
    assert result.applied == ["unassigned everyone"]
    assert not issue.assignees.exists()
    assert system_notes(issue) == [
        "assigned to @bob, @dan",
        "assigned to @mia",
        "unassigned @dan",
        "unassigned @bob, @mia",
    ]


def test_close_reopen_and_confidential(project, reporter) -> None:
    issue = ticket(project, confidential=False)
    result = run(issue, "/confidential\n/close", reporter)
    assert result.applied == ["made confidential", "closed"]
    issue.refresh_from_db()
    assert (issue.confidential, issue.state) == (True, Issue.State.CLOSED)
    result = run(issue, "/close", reporter)
    assert result.refused == ["/close: the issue is already closed"]
    run(issue, "/reopen", reporter)
    issue.refresh_from_db()
    assert issue.state == Issue.State.OPENED
    assert system_notes(issue) == ["made the issue confidential", "closed", "reopened"]


def test_add_and_remove_email_participants(project, reporter, settings) -> None:
    settings.SERVICEDESK_MAX_PARTICIPANTS = 3
    issue = ticket(project)
    result = run(issue, "/add_email a@x.example b@x.example c@x.example", reporter)
    assert result.applied == ["added a@x.example, b@x.example as participants"]
    assert result.refused == [
        "/add_email a@x.example b@x.example c@x.example: "
        "An issue can have at most 3 email participants."
    ]
    assert issue.email_participants.count() == 3
    result = run(issue, "/remove_email B@x.example nobody@x.example", reporter)
    assert result.applied == ["removed b@x.example"]
    assert result.refused == [
        "/remove_email B@x.example nobody@x.example: nobody@x.example is not a participant"
    ]
    assert sorted(issue.email_participants.values_list("email", flat=True)) == [
        "a@x.example",
        JAKE,
    ]
    notes = issue.notes.filter(system=True).order_by("pk")
    assert [(n.body, n.internal) for n in notes] == [
        ("added a@x.example as participant", True),
        ("added b@x.example as participant", True),
        ("removed b@x.example as participant", True),
    ]


def test_add_email_takes_at_most_six_addresses(project, reporter) -> None:
    issue = ticket(project)
    addresses = [f"{n}@x.io" for n in range(8)]
    result = run(issue, "/add_email " + " ".join(addresses), reporter)
    assert issue.email_participants.count() == 1 + 6
    assert result.refused == [
        f"/add_email {' '.join(addresses)}: at most 6 addresses per command; "
        "6@x.io, 7@x.io not added"
    ]


def test_convert_to_ticket(project, reporter) -> None:
    issue = IssueFactory(project=project, confidential=False)
    result = run(issue, "/convert_to_ticket jake@customer.example", reporter)
    assert result.applied == ["converted into a Service Desk issue for jake@customer.example"]
    issue.refresh_from_db()
    assert issue.external_author == JAKE
    assert issue.author == support_bot()
    assert run(issue, "/convert_to_ticket a@x.example", reporter).refused == [
        "/convert_to_ticket a@x.example: the issue is already a Service Desk issue"
    ]


def test_move_runs_last_after_the_comment_and_the_copy_takes_it(project, reporter) -> None:
    other = ProjectFactory(group=project.group, path="web", name="Web", service_desk_enabled=True)
    membership_set(user=reporter, project=other, role=Role.REPORTER)
    LabelFactory(project=project, title="billing")
    issue = ticket(project)
    posted = note_post(
        issue=issue, author=reporter, body="/move acme/web\nOff you go\n/label ~billing",
        quick_actions=True,
    )  # fmt: skip
    assert posted.actions is not None
    assert posted.actions.applied == ["labelled ~billing", "moved to acme/web"]
    assert posted.note is not None
    assert posted.note.issue_id == issue.pk  # posted on the original, before the move
    copy = posted.issue
    assert copy.project == other
    assert copy.notes.filter(body="Off you go").exists()  # the thread went along
    issue.refresh_from_db()
    assert (issue.moved_to, issue.state) == (copy, Issue.State.CLOSED)


def test_move_to_a_project_the_user_cannot_move_to_is_refused(project, reporter) -> None:
    ProjectFactory(group=project.group, path="secret", name="Secret")
    issue = ticket(project)
    result = run(issue, "/move acme/secret", reporter)
    assert quick_actions_finish(result) == issue
    assert result.refused == [
        "/move acme/secret: you may not move issues to acme/secret, or it does not exist"
    ]
    issue.refresh_from_db()
    assert issue.moved_to is None


def test_the_sidebars_permissions_apply_to_each_command(project, guest) -> None:
    """A Guest who wrote a public issue may close it (``can_update_issue``) but not label it
    (``can_triage_issue``): the same as the issue page's buttons."""
    LabelFactory(project=project, title="billing")
    issue = IssueFactory(project=project, author=guest, confidential=False)
    result = run(issue, "/label ~billing\n/close\n/add_email a@x.example", guest)
    assert result.applied == ["closed"]
    assert result.refused == [
        "/label ~billing: you may not label this issue",
        "/add_email a@x.example: you may not add participants to this issue",
    ]
    assert not issue.labels.exists()
    assert not issue.email_participants.exists()


def test_unknown_words_code_blocks_and_quotes_stay_text(project, reporter) -> None:
    issue = ticket(project)
    text = "/usr/bin is fine\n/shrug\n```\n/close\n```\n> /close\nsee /close here"
    result = run(issue, text, reporter)
    assert result.text == text
    assert result.applied == result.refused == []
    issue.refresh_from_db()
    assert issue.is_open


def test_commands_are_bounded(project, reporter) -> None:
    issue = ticket(project)
    text = "\n".join(["/unassign"] * (MAX_COMMANDS + 2))
    result = run(issue, text, reporter)
    assert result.text == "/unassign\n/unassign"  # past the cap: left as written
    assert len(result.refused) == MAX_COMMANDS + 1  # nobody to unassign, and the cap
    assert result.refused[0] == f"only {MAX_COMMANDS} quick actions run per comment"
    long = run(issue, "/label " + "~x " * 400, reporter)
    assert long.refused == [f"/label {'~x ' * 26}~…: the argument is longer than 1000 characters"]


def test_templates_may_not_touch_participants_or_move(project) -> None:
    issue = ticket(project)
    result = apply_quick_actions(
        issue=issue, text="/add_email a@x.example\n/move acme/web", user=support_bot(),
        template=True,
    )  # fmt: skip
    assert result.refused == [
        "/add_email a@x.example: not available in description templates",
        "/move acme/web: not available in description templates",
    ]


# --- The issue page: the comment form and its preview ----------------------------------------


def page_url(name: str, issue: Issue) -> str:
    return reverse(name, args=[issue.project.full_path, issue.iid])


def flashes(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_a_comment_of_commands_only_posts_no_note_and_emails_no_customer(
    client, project, reporter
) -> None:
    LabelFactory(project=project, title="billing")
    issue = ticket(project)
    client.force_login(reporter)
    response = client.post(
        page_url("note_add", issue), {"body": "/label ~billing\n/assign @bob\n/close"}
    )
    assert response.status_code == 302
    assert response["Location"] == issue.get_absolute_url()
    assert flashes(response) == ["Labelled ~billing, assigned @bob, closed."]
    assert not issue.notes.filter(system=False).exists()
    assert system_notes(issue) == ["added label billing", "assigned to @bob", "closed"]
    assert not OutboundEmail.objects.exclude(kind="team").exists()
    issue.refresh_from_db()
    assert issue.state == Issue.State.CLOSED


def test_a_comment_with_commands_is_posted_without_them(client, project, reporter) -> None:
    issue = ticket(project)
    client.force_login(reporter)
    response = client.post(
        page_url("note_add", issue), {"body": "We are on it.\n/assign me\n/shrug"}
    )
    note = issue.notes.get(system=False)
    assert response["Location"] == f"{issue.get_absolute_url()}#note-{note.pk}"
    assert note.body == "We are on it.\n/shrug"  # an unknown /word stays as written
    assert flashes(response) == [f"Reply sent to {JAKE}.", "Assigned @bob."]
    to_jake = OutboundEmail.objects.exclude(kind="team").get()
    assert to_jake.recipient == JAKE
    assert "We are on it." in to_jake.body_text
    assert "/assign" not in to_jake.body_text


def test_an_internal_note_runs_commands_and_stays_internal(client, project, reporter) -> None:
    issue = ticket(project)
    client.force_login(reporter)
    client.post(page_url("note_add", issue), {"body": "Escalating\n/close", "internal": "on"})
    note = issue.notes.get(system=False)
    assert (note.body, note.internal) == ("Escalating", True)
    issue.refresh_from_db()
    assert issue.state == Issue.State.CLOSED


def test_a_guests_close_is_text_and_a_reporters_is_not(client, project, guest, reporter) -> None:
    issue = IssueFactory(project=project, confidential=False)
    client.force_login(guest)
    response = client.post(page_url("note_add", issue), {"body": "/close"})
    assert response.status_code == 302
    assert issue.notes.get(system=False).body == "/close"
    assert flashes(response) == ["Comment added."]
    issue.refresh_from_db()
    assert issue.is_open

    client.force_login(reporter)
    client.post(page_url("note_add", issue), {"body": "/close"})
    issue.refresh_from_db()
    assert issue.state == Issue.State.CLOSED
    assert issue.notes.filter(system=False).count() == 1


def test_refused_commands_are_reported(client, project, reporter) -> None:
    issue = ticket(project)
    client.force_login(reporter)
    response = client.post(
        page_url("note_add", issue), {"body": "Hi\n/label ~nope\n/move nowhere/at-all"}
    )
    assert flashes(response) == [
        f"Reply sent to {JAKE}.",
        "Not done: /label ~nope: ~nope: no such label.",
        "Not done: /move nowhere/at-all: you may not move issues to nowhere/at-all, or it "
        "does not exist.",
    ]
    assert issue.notes.get(system=False).body == "Hi"


def test_a_move_in_a_comment_shows_the_copy(client, project, reporter) -> None:
    other = ProjectFactory(group=project.group, path="web", name="Web", service_desk_enabled=True)
    membership_set(user=reporter, project=other, role=Role.REPORTER)
    issue = ticket(project)
    client.force_login(reporter)
    response = client.post(page_url("note_add", issue), {"body": "Wrong desk\n/move acme/web"})
    issue.refresh_from_db()
    assert issue.moved_to is not None
    assert response["Location"] == issue.moved_to.get_absolute_url()
    assert flashes(response) == [f"Reply sent to {JAKE}.", "Moved to acme/web."]


def test_the_preview_lists_the_commands_and_renders_the_text_without_them(
    client, project, reporter, guest
) -> None:
    LabelFactory(project=project, title="billing")
    issue = IssueFactory(project=project, confidential=False)
    client.force_login(reporter)
    body = "**Thanks**\n/label ~billing\n/assign me\n/close\n/label ~nope"
    response = client.post(page_url("note_preview", issue), {"body": body}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "<strong>Thanks</strong>" in html
    for action in (
        "Add ~billing",
        "Assign @bob",
        "Close this issue",
        "Will not run /label ~nope: ~nope: no such label",
    ):
        assert f"<li>{action}</li>" in html, html
    assert "/close" not in html.replace("/label ~nope", "")
    assert not issue.labels.exists()  # a preview does nothing
    # The page without JS says the same.
    page = client.post(page_url("note_preview", issue), {"body": body}).content.decode()
    assert "<li>Close this issue</li>" in page

    client.force_login(guest)
    html = client.post(
        page_url("note_preview", issue), {"body": "/close"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "/close" in html
    assert "quick-actions" not in html
