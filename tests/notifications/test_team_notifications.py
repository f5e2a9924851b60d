"""The team hears about tickets: levels, the new-ticket rule, To-Dos, replies by email."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from issues.models import Issue, Label, Note, OutboundEmail, SentNotification
from issues.services import issue_assignees_set, issue_close, note_create
from notifications.models import Event, Level, Todo
from notifications.services import events_deliver, new_ticket_rule_set, notification_level_set
from projects.models import Role
from projects.services import membership_set
from tests.factories import ProjectFactory, member
from tests.mailroom.helpers import INCOMING, deliver, deliver_together, make_email

pytestmark = pytest.mark.django_db
HOST = "servicedesk.test"


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING}
    settings.DEFAULT_FROM_EMAIL = f"support@{HOST}"
    settings.SITE_URL = f"https://{HOST}"


@pytest.fixture
def team(owner, reporter, guest):  # type: ignore[no-untyped-def]
    """alice (Owner), bob (Reporter), carol (Guest)."""
    return owner, reporter, guest


@pytest.fixture
def to(project) -> str:  # type: ignore[no-untyped-def]
    return INCOMING.address_for(project.service_desk.default_key)


def team_mail(user: User | None = None) -> list[OutboundEmail]:
    """The team's emails, once the events recorded so far are delivered (a task's job)."""
    events_deliver()
    found = OutboundEmail.objects.filter(kind="team").order_by("pk")
    return list(found.filter(user=user) if user is not None else found)


def clear_outbox() -> None:
    events_deliver()
    OutboundEmail.objects.all().delete()


def to_whom() -> list[str]:
    return sorted(e.user.username for e in team_mail())


def new_ticket(to: str, subject: str = "Game crashes", **kwargs) -> Issue:  # type: ignore[no-untyped-def]
    row = deliver(make_email(to=to, subject=subject, **kwargs))
    assert row.outcome == "issue_created", row.reason
    return Issue.objects.get(pk=row.issue_id)


def customer_reply(to: str, issue: Issue, body: str = "Still broken.") -> Note:
    root = issue.emails.order_by("pk").values_list("message_id", flat=True)[0]
    row = deliver(make_email(to=to, subject=f"Re: {issue.title}", body=body,
                             headers={"In-Reply-To": root, "References": root}))  # fmt: skip
    assert row.outcome == "note_added", row.reason
    return Note.objects.get(pk=row.note_id)


# --- New tickets ----------------------------------------------------------------------------


def test_a_new_ticket_reaches_every_reporter_and_up_but_not_guests(team, to) -> None:
    alice, bob, _carol = team
    issue = new_ticket(to)
    assert to_whom() == ["alice", "bob"]
    email = team_mail(bob)[0]
    assert email.subject == f"[acme/game] New ticket: Game crashes (#{issue.iid})"
    assert email.headers["X-ServiceDesk-NotificationReason"] == "new_ticket"
    assert email.headers["List-Id"].startswith("acme/game <")
    assert email.recipient == "bob@team.example"
    assert "My game does not start." in email.body_text
    assert "jake@customer.example" not in email.subject
    # Threaded per issue and per person; the reply key is bound to bob and this issue.
    sent = SentNotification.objects.get(email=email)
    assert (sent.user, sent.issue) == (bob, issue)
    assert email.headers["Reply-To"] == INCOMING.address_for(sent.reply_key)
    assert email.headers["In-Reply-To"] != team_mail(alice)[0].headers["In-Reply-To"]


def test_the_new_ticket_rule_chooses_who_hears(team, project, to) -> None:
    alice, _bob, _ = team
    new_ticket_rule_set(project=project, chosen_only=True, people=[alice])
    new_ticket(to)
    assert to_whom() == ["alice"]


def test_mention_and_disabled_levels_keep_new_tickets_away(team, project, to) -> None:
    alice, bob, _ = team
    notification_level_set(user=alice, level=Level.MENTION)
    notification_level_set(user=bob, level=Level.DISABLED, project=project)
    new_ticket(to)
    assert to_whom() == []


def test_a_project_level_overrides_the_default(team, project, to) -> None:
    _alice, bob, _ = team
    notification_level_set(user=bob, level=Level.DISABLED)
    notification_level_set(user=bob, level=Level.WATCH, project=project)
    issue = new_ticket(to)
    assert to_whom() == ["alice", "bob"]
    # Watchers get a To-Do for a new ticket; the default level does not.
    assert list(Todo.objects.values_list("user__username", "issue", "action")) == [
        ("bob", issue.pk, "new_ticket")
    ]


def test_a_guest_watching_hears_nothing_of_confidential_tickets(team, project, to) -> None:
    _, _, carol = team
    notification_level_set(user=carol, level=Level.WATCH)
    issue = new_ticket(to)
    assert issue.confidential
    assert "carol" not in to_whom()  # (delivers the events)
    assert not Todo.objects.filter(user=carol).exists()


def test_a_burst_of_tickets_costs_the_same_queries_whatever_the_watchers(project, to) -> None:
    def burst(n: int) -> tuple[int, int]:
        raws = [
            make_email(to=to, subject=f"burst {n} {i}", sender=f"c{n}-{i}@customer.example")
            for i in range(5)
        ]
        with CaptureQueriesContext(connection) as inbound:
            rows = deliver_together(raws)
        assert {r.outcome for r in rows} == {"issue_created"}
        with CaptureQueriesContext(connection) as delivery:
            assert events_deliver() == 5
        return len(inbound), len(delivery)

    notification_level_set(user=member(project, Role.REPORTER, "w0"), level=Level.WATCH)
    burst(0)  # once-per-process lookups (the Support Bot, caches) out of the way
    few = burst(1)
    for i in range(1, 20):
        watcher = member(project, Role.REPORTER, f"w{i}")
        notification_level_set(user=watcher, level=Level.WATCH)
    many = burst(20)
    assert many == few
    assert OutboundEmail.objects.filter(kind="team", subject__contains="burst 20").count() == 100
    assert Todo.objects.filter(issue__title__startswith="burst 20").count() == 100


def test_events_are_delivered_once_and_the_sweeper_finds_the_lost_ones(team, to) -> None:
    new_ticket(to)
    event = Event.objects.get()
    assert event.delivered_at is None  # recorded with its cause; delivered by a task
    assert events_deliver(older_than=60) == 0  # too young for the sweeper: its task is queued
    Event.objects.update(created_at=timezone.now() - timedelta(minutes=2))
    assert events_deliver(older_than=60) == 1
    assert events_deliver([event.pk]) == 0  # a late task finds nothing left to do
    assert to_whom() == ["alice", "bob"]


# --- Replies, assignments, mentions ---------------------------------------------------------


def test_assignment_emails_the_assignee_and_gives_a_todo_not_the_actor(team, to) -> None:
    alice, bob, _ = team
    issue = new_ticket(to)
    clear_outbox()
    issue_assignees_set(issue=issue, assignees=[bob], user=alice)
    assert to_whom() == ["bob"]
    assert team_mail(bob)[0].headers["X-ServiceDesk-NotificationReason"] == "assigned"
    todo = Todo.objects.get(user=bob)
    assert (todo.action, todo.actor) == ("assigned", alice)
    bob.refresh_from_db()
    assert bob.todo_count == 1


def test_a_customer_reply_reaches_the_assignee_only_once_assigned(team, to) -> None:
    alice, bob, _ = team
    issue = new_ticket(to)
    issue_assignees_set(issue=issue, assignees=[bob], user=alice)
    clear_outbox()
    customer_reply(to, issue)
    assert to_whom() == ["bob"]
    assert team_mail(bob)[0].headers["X-ServiceDesk-NotificationReason"] == "assigned"
    assert Todo.objects.filter(user=bob, action="customer_replied").count() == 1


def test_a_customer_reply_on_an_unassigned_ticket_reaches_the_new_ticket_people(team, to) -> None:
    issue = new_ticket(to)
    clear_outbox()
    note = customer_reply(to, issue, "Any news?")
    assert to_whom() == ["alice", "bob"]
    assert "Any news?" in team_mail()[0].body_text
    assert note.external_author == "jake@customer.example"


def test_a_reply_to_a_closed_ticket_reopens_it_and_notifies(team, to) -> None:
    alice, _bob, _ = team
    issue = new_ticket(to)
    issue_close(issue=issue, user=alice)
    clear_outbox()
    customer_reply(to, issue, "It broke again")
    issue.refresh_from_db()
    assert issue.state == Issue.State.OPENED
    assert issue.last_public_by == "customer"
    assert "bob" in to_whom()


def test_mentions_in_comments_notify_members_but_internal_notes_skip_guests(team, to) -> None:
    alice, bob, _carol = team
    issue = new_ticket(to)
    clear_outbox()
    note_create(issue=issue, author=alice, body="@bob @carol have a look", internal=True)
    # carol (Guest) may not read the confidential ticket, nor an internal note.
    assert to_whom() == ["bob"]
    assert team_mail(bob)[0].headers["X-ServiceDesk-NotificationReason"] == "mentioned"
    mentioned = Todo.objects.filter(action="mentioned")
    assert list(mentioned.values_list("user__username", flat=True)) == ["bob"]


def test_text_from_email_mentions_nobody(team, to) -> None:
    _alice, bob, _ = team
    issue = new_ticket(to)
    notification_level_set(user=bob, level=Level.MENTION)
    clear_outbox()
    customer_reply(to, issue, "@bob please call me")
    assert "bob" not in to_whom()
    assert not Todo.objects.filter(user=bob).exists()


def test_a_comment_reaches_those_taking_part_never_its_author(team, to) -> None:
    alice, bob, _ = team
    issue = new_ticket(to)
    note_create(issue=issue, author=bob, body="Looking into it", notify=True)
    clear_outbox()
    note_create(issue=issue, author=alice, body="Fixed in 1.2", notify=True)
    assert to_whom() == ["bob"]  # bob took part; alice wrote it
    assert team_mail(bob)[0].headers["X-ServiceDesk-NotificationReason"] == "participating"
    assert "Fixed in 1.2" in team_mail(bob)[0].body_text


def test_disabled_hears_nothing_even_when_assigned(team, project, to) -> None:
    alice, bob, _ = team
    notification_level_set(user=bob, level=Level.DISABLED)
    issue = new_ticket(to)
    issue_assignees_set(issue=issue, assignees=[bob], user=alice)
    customer_reply(to, issue)
    assert team_mail(bob) == []
    # The To-Do list still tells bob (it is not an email).
    assert Todo.objects.filter(user=bob).count() == 2


# --- To-Dos ---------------------------------------------------------------------------------


def test_todos_are_done_by_commenting_or_closing(team, to) -> None:
    alice, bob, _ = team
    first, second = new_ticket(to, "one"), new_ticket(to, "two")
    issue_assignees_set(issue=first, assignees=[bob], user=alice)
    issue_assignees_set(issue=second, assignees=[bob], user=alice)
    events_deliver()
    bob.refresh_from_db()
    assert bob.todo_count == 2
    note_create(issue=first, author=bob, body="On it")
    issue_close(issue=second, user=bob)
    bob.refresh_from_db()
    assert bob.todo_count == 0
    assert not Todo.objects.filter(user=bob, done_at=None).exists()


def test_todo_pages_and_the_header_count(client, team, to) -> None:
    alice, bob, _ = team
    issue = new_ticket(to)
    issue_assignees_set(issue=issue, assignees=[bob], user=alice)
    events_deliver()
    client.force_login(bob)
    page = client.get(reverse("todos"))
    assert page.status_code == 200
    assert f"#{issue.iid}" in page.content.decode()
    assert 'data-testid="todo-count">1<' in page.content.decode()
    todo = Todo.objects.get(user=bob)
    # Someone else's To-Do cannot be marked done.
    client.force_login(alice)
    assert client.post(reverse("todo_done", args=[todo.pk])).status_code == 404
    client.force_login(bob)
    assert client.post(reverse("todo_done", args=[todo.pk])).status_code == 302
    todo.refresh_from_db()
    assert todo.done_at is not None
    issue_assignees_set(issue=issue, assignees=[], user=alice)
    issue_assignees_set(issue=issue, assignees=[bob], user=alice)
    events_deliver()
    assert client.post(reverse("todos_done")).status_code == 302
    bob.refresh_from_db()
    assert bob.todo_count == 0


def test_settings_pages_save_levels_and_the_rule(client, team, project) -> None:
    alice, bob, _ = team
    client.force_login(bob)
    url = reverse("notification_settings")
    assert client.get(url).status_code == 200
    response = client.post(url, {"default": "watch", f"project-{project.pk}": "disabled"})
    assert response.status_code == 302
    assert set(bob.notification_settings.values_list("project", "level")) == {
        (None, "watch"),
        (project.pk, "disabled"),
    }
    rule_url = reverse("project_notifications", args=[project.full_path])
    assert client.get(rule_url).status_code == 403  # bob is a Reporter
    client.force_login(alice)
    assert client.post(rule_url, {"chosen_only": "true"}).status_code == 400  # nobody chosen
    assert client.post(rule_url, {"chosen_only": "true", "people": [alice.pk]}).status_code == 302
    assert list(project.new_ticket_rule.people.all()) == [alice]


# --- Replies by email from team members -----------------------------------------------------


def member_reply(bob: User, email: OutboundEmail, body: str, sender: str = "") -> bytes:
    quoted = "\n".join(f"> {line}" for line in email.body_text.splitlines())
    return make_email(
        to=email.headers["Reply-To"],
        subject=f"Re: {email.subject}",
        body=f"{body}\n\nOn Monday, Service Desk wrote:\n{quoted}\n",
        sender=sender or f"Bob <{bob.email}>",
        headers={"In-Reply-To": email.message_id, "References": email.message_id},
    )


def test_a_member_answers_a_notification_by_email(team, to) -> None:
    _alice, bob, _ = team
    issue = new_ticket(to)
    notification = team_mail(bob)[0]
    clear_outbox()
    row = deliver(member_reply(bob, notification, "We have a fix, update to 1.2."))
    assert row.outcome == "note_added", row.reason
    note = Note.objects.get(pk=row.note_id)
    assert (note.author, note.internal, note.external_author) == (bob, False, "")
    assert note.body == "We have a fix, update to 1.2."  # the quoted notification is dropped
    # The customer gets it like a comment written in the browser.
    to_customer = OutboundEmail.objects.exclude(kind="team").get()
    assert to_customer.recipient == "jake@customer.example"
    assert "We have a fix" in to_customer.body_text
    issue.refresh_from_db()
    assert issue.last_public_by == "team"


def test_a_members_quick_actions_run_and_a_commands_only_reply_posts_nothing(
    team, project, to
) -> None:
    _alice, bob, _ = team
    Label.objects.create(project=project, title="billing", color="#336699")
    issue = new_ticket(to)
    notification = team_mail(bob)[0]
    row = deliver(member_reply(bob, notification, "/label ~billing\n/close"))
    assert row.outcome == "ignored"
    assert row.reason == "quick actions only"
    issue.refresh_from_db()
    assert issue.state == Issue.State.CLOSED
    assert list(issue.labels.values_list("title", flat=True)) == ["billing"]
    assert not Note.objects.filter(issue=issue, author=bob, system=False).exists()


def test_a_members_reply_labels_assigns_them_and_reports_what_was_refused(
    team, project, to
) -> None:
    _alice, bob, _ = team
    Label.objects.create(project=project, title="billing", color="#336699")
    issue = new_ticket(to)
    notification = team_mail(bob)[0]
    clear_outbox()
    body = "On it.\n/label ~billing\n/assign me\n/add_email nope"
    row = deliver(member_reply(bob, notification, body))
    assert row.outcome == "note_added", row.reason
    assert row.decision["quick_actions"] == ["labelled ~billing", "assigned @bob"]
    assert row.decision["quick_actions_refused"] == [
        "/add_email nope: nope is not a valid email address."
    ]
    assert Note.objects.get(pk=row.note_id).body == "On it."
    assert list(issue.labels.values_list("title", flat=True)) == ["billing"]
    assert list(issue.assignees.all()) == [bob]
    assert list(issue.notes.filter(system=True).values_list("body", flat=True)) == [
        "added label billing",
        "assigned to @bob",
    ]
    to_customer = OutboundEmail.objects.exclude(kind="team").get()
    assert "/label" not in to_customer.body_text


def test_a_members_reply_may_move_the_ticket_after_posting(team, project, to) -> None:
    _alice, bob, _ = team
    other = ProjectFactory(group=project.group, path="web", name="Web", service_desk_enabled=True)
    membership_set(user=bob, project=other, role=Role.REPORTER)
    issue = new_ticket(to)
    notification = team_mail(bob)[0]
    row = deliver(member_reply(bob, notification, "Not ours.\n/move acme/web"))
    assert row.outcome == "note_added", row.reason
    assert Note.objects.get(pk=row.note_id).issue == issue
    issue.refresh_from_db()
    assert issue.moved_to is not None
    assert issue.moved_to.notes.filter(body="Not ours.", author=bob).exists()


def test_a_guests_reply_commands_stay_inert(team, project, to) -> None:
    _alice, _bob, carol = team
    project.service_desk.tickets_confidential_by_default = False
    project.service_desk.save()
    notification_level_set(user=carol, level=Level.WATCH)
    issue = new_ticket(to)
    notification = team_mail(carol)[0]
    row = deliver(member_reply(carol, notification, "Me too\n/close"))
    assert row.outcome == "note_added", row.reason
    assert Note.objects.get(pk=row.note_id).body == "Me too\n`/close`"
    issue.refresh_from_db()
    assert issue.is_open


def test_a_notification_key_counts_only_from_its_member(team, to) -> None:
    _alice, bob, _ = team
    new_ticket(to)
    notification = team_mail(bob)[0]
    row = deliver(member_reply(bob, notification, "/close", sender="mallory@evil.example"))
    assert row.outcome == "rejected"
    assert row.reason == "reply key of another sender"
    assert not Note.objects.filter(author=bob).exists()


def test_a_member_who_lost_access_cannot_answer(team, project, to) -> None:
    _alice, bob, _ = team
    new_ticket(to)
    notification = team_mail(bob)[0]
    membership_set(user=bob, project=project, role=Role.GUEST)  # may no longer read it
    row = deliver(member_reply(bob, notification, "Fixed"))
    assert row.outcome == "rejected"
    assert row.reason == "may not comment on this issue"


def test_below_reporter_the_customer_is_a_name_never_an_address(team, project, to) -> None:
    _, bob, carol = team
    project.service_desk.tickets_confidential_by_default = False
    project.service_desk.save()
    notification_level_set(user=carol, level=Level.WATCH)
    issue = new_ticket(to, sender="jake@customer.example")
    assert not issue.confidential
    to_carol, to_bob = team_mail(carol)[0], team_mail(bob)[0]
    assert "jake@customer.example" in to_bob.body_text
    for part in (to_carol.body_text, to_carol.body_html, to_carol.subject, str(to_carol.headers)):
        assert "jake@customer.example" not in part
    assert "The customer" in to_carol.body_text


def test_an_event_that_cannot_be_delivered_records_why_and_blocks_nothing(
    team, to, monkeypatch
) -> None:
    import notifications.services as services

    real = services._WHO[Event.Kind.NEW_TICKET]

    def broken(event, people):  # type: ignore[no-untyped-def]
        if event.issue.title == "poison":
            raise RuntimeError("a bug of ours")
        return real(event, people)

    monkeypatch.setitem(services._WHO, Event.Kind.NEW_TICKET, broken)
    new_ticket(to, "poison", sender="a@customer.example")
    new_ticket(to, "fine", sender="b@customer.example")
    assert events_deliver() == 2
    assert sorted(Event.objects.values_list("issue__title", "error")) == [
        ("fine", ""),
        ("poison", "RuntimeError: a bug of ours"),
    ]
    assert not Event.objects.filter(delivered_at=None).exists()
    assert {e.subject.split(": ", 1)[1] for e in team_mail()} == {"fine (#2)"}


def test_the_text_part_is_plain_text(team, to) -> None:
    _, bob, _ = team
    new_ticket(to, "Crash **now**", body="It crashes <b>always</b>.")
    text = team_mail(bob)[0].body_text
    assert "<" not in text
    assert "**" not in text
    assert "Crash **now**" not in text


def test_delivery_waits_while_inbound_email_is_queued_and_not_longer(
    team, to, settings, monkeypatch
) -> None:
    from mailroom.ledger import inbound_store
    from notifications import tasks

    new_ticket(to)
    [event] = Event.objects.all()
    later: list[tuple[object, ...]] = []
    monkeypatch.setattr(
        tasks.deliver_events, "apply_async", lambda args, countdown: later.append(args)
    )
    inbound_store(raw=make_email(to=to, subject="queued"), transport="test", enqueue=False)
    settings.SERVICEDESK_TEAM_NOTIFICATIONS_YIELD = 30
    assert tasks.deliver_events([event.pk]) == 0
    assert later == [([event.pk], 2)]  # again in 2 s: customers' mail first
    assert tasks.deliver_events([event.pk], 30) == 1  # waited long enough: delivered anyway
    assert tasks.deliver_events([event.pk]) == 0  # nothing left, no waiting either
    assert later == [([event.pk], 2)]
