"""The inbound ledger pages (a project's and the instance-wide one), raw download, "Reprocess",
mailbox health and the banner on project pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.selectors import support_bot
from mailroom.ledger import inbound_claim, inbound_process
from mailroom.models import InboundMessage, MailboxState, WorkerHeartbeat
from mailroom.selectors import mailbox_alerts
from projects.models import Project, Role, Visibility
from projects.services import membership_set
from servicedesk.config import MailboxConfig
from tests.factories import IssueFactory, NoteFactory, ProjectFactory, UserFactory

from .helpers import INCOMING, deliver, make_email

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("redis_cache_flushed")]

IMAP = MailboxConfig(
    name="incoming_email",
    enabled=True,
    address="incoming+%{key}@appmail.adventuretime.ooo",
    user="incoming@appmail.adventuretime.ooo",
    password="hunter2-imap-secret",
    host="imap.adventuretime.ooo",
    inbox_method="imap",
)


@pytest.fixture(autouse=True)
def mailboxes(settings):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING}


@pytest.fixture
def staff(db):  # type: ignore[no-untyped-def]
    return UserFactory(username="sam", is_staff=True)


@pytest.fixture
def superuser(db):  # type: ignore[no-untyped-def]
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def everyone(owner, maintainer, developer, reporter, guest, outsider, staff, superuser):  # type: ignore[no-untyped-def]
    return {
        "owner": owner,
        "maintainer": maintainer,
        "developer": developer,
        "reporter": reporter,
        "guest": guest,
        "outsider": outsider,
        "staff": staff,
        "superuser": superuser,
        "anonymous": None,
    }


def to_project(project: Project) -> str:
    return INCOMING.address_for(project.service_desk.default_key)


@pytest.fixture
def rejected(project: Project) -> InboundMessage:
    """An email for the project, rejected (empty): it belongs to the project's ledger."""
    row = deliver(make_email(to=to_project(project), subject="", body=""))
    assert (row.outcome, row.reason, row.project_id) == ("rejected", "empty email", project.pk)
    return row


@pytest.fixture
def unclaimed(db) -> InboundMessage:  # type: ignore[no-untyped-def]
    """An email no project claimed: only the instance-wide ledger shows it."""
    row = deliver(make_email(to="nobody@example.org", subject="Lost and alone"))
    assert (row.outcome, row.project_id) == ("rejected", None)
    return row


def client_for(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def project_urls(project: Project, row: InboundMessage) -> dict[str, str]:
    path = project.full_path
    return {
        "list": reverse("project_inbound_list", args=[path]),
        "detail": reverse("project_inbound_detail", args=[path, row.pk]),
        "raw": reverse("project_inbound_raw", args=[path, row.pk]),
    }


def make_public(project: Project) -> None:
    Project.objects.filter(pk=project.pk).update(visibility=Visibility.PUBLIC)


# --- Who may open what -------------------------------------------------------------------------

PRIVATE = {
    "owner": 200,
    "maintainer": 200,
    "developer": 403,
    "reporter": 403,
    "guest": 404,
    "outsider": 404,
    "staff": 404,  # staff is not a member: the project's ledger is its Maintainers'
    "superuser": 200,
    "anonymous": 302,
}
PUBLIC = {**PRIVATE, "guest": 403}


@pytest.mark.parametrize("visibility", ["private", "public"])
@pytest.mark.parametrize("page", ["list", "detail", "raw"])
@pytest.mark.parametrize("persona", list(PRIVATE))
def test_project_ledger_pages_role_matrix(
    project, everyone, rejected, visibility, page, persona
) -> None:
    if visibility == "public":
        make_public(project)
    expected = (PUBLIC if visibility == "public" else PRIVATE)[persona]
    response = client_for(everyone[persona]).get(project_urls(project, rejected)[page])
    assert response.status_code == expected
    if expected == 302:
        assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("visibility", ["private", "public"])
@pytest.mark.parametrize("persona", list(PRIVATE))
def test_project_reprocess_role_matrix(
    project, everyone, rejected, visibility, persona, django_capture_on_commit_callbacks
) -> None:
    if visibility == "public":
        make_public(project)
    expected = (PUBLIC if visibility == "public" else PRIVATE)[persona]
    url = reverse("project_inbound_reprocess", args=[project.full_path, rejected.pk])
    with django_capture_on_commit_callbacks() as callbacks:
        response = client_for(everyone[persona]).post(url)
    rejected.refresh_from_db()
    if expected == 200:
        assert response.status_code == 302
        assert response["Location"] == project_urls(project, rejected)["detail"]
        assert (rejected.status, rejected.outcome) == ("queued", "")
        assert len(callbacks) == 1  # the processing task, sent after the commit
    else:
        assert response.status_code == expected
        assert (rejected.status, rejected.outcome) == ("done", "rejected")
        assert callbacks == []
        if expected == 302:
            assert response["Location"].startswith("/login/?next=")


INSTANCE = {
    "owner": 404,
    "maintainer": 404,
    "developer": 404,
    "reporter": 404,
    "guest": 404,
    "outsider": 404,
    "staff": 200,
    "superuser": 200,
    "anonymous": 302,
}


@pytest.mark.parametrize("page", ["list", "detail", "raw", "reprocess"])
@pytest.mark.parametrize("persona", list(INSTANCE))
def test_instance_ledger_role_matrix(everyone, unclaimed, page, persona) -> None:
    name = f"instance_inbound_{page}"
    url = reverse(name) if page == "list" else reverse(name, args=[unclaimed.pk])
    client = client_for(everyone[persona])
    response = client.post(url) if page == "reprocess" else client.get(url)
    expected = INSTANCE[persona]
    if page == "reprocess" and expected == 200:
        assert response.status_code == 302
        unclaimed.refresh_from_db()
        assert unclaimed.status == "queued"
    else:
        assert response.status_code == expected
    if expected == 302:
        assert response["Location"].startswith("/login/?next=")


def test_inbound_mail_tab_only_for_those_who_may_open_it(client, owner, reporter, project) -> None:
    issues = reverse("issue_list", args=[project.full_path])
    ledger = reverse("project_inbound_list", args=[project.full_path])
    client.force_login(owner)
    assert f'href="{ledger}"' in client.get(issues).content.decode()
    client.force_login(reporter)
    html = client.get(issues).content.decode()
    assert "Inbound mail" not in html
    assert ledger not in html


def test_instance_link_in_the_top_bar_for_staff_only(client, staff, owner, project) -> None:
    url = reverse("instance_inbound_list")
    client.force_login(owner)
    assert url not in client.get(reverse("home")).content.decode()
    client.force_login(staff)
    assert f'href="{url}"' in client.get(reverse("home")).content.decode()


# --- What the ledger shows ---------------------------------------------------------------------


def test_project_ledger_lists_its_emails_and_never_unclaimed_ones(
    client, owner, project, rejected, unclaimed
) -> None:
    other = ProjectFactory(path="other", service_desk_enabled=True)
    elsewhere = deliver(make_email(to=to_project(other), subject="For the other project"))
    assert elsewhere.project_id == other.pk
    created = deliver(make_email(to=to_project(project), subject="Printer on fire"))
    client.force_login(owner)

    html = client.get(reverse("project_inbound_list", args=[project.full_path])).content.decode()

    assert "Printer on fire" in html
    assert "jake@customer.example" in html  # Maintainer+ see the senders
    assert '<span class="badge outcome-issue_created">Issue created</span>' in html
    assert '<span class="badge outcome-rejected">Rejected</span>' in html
    assert "empty email" in html
    issue_url = reverse("issue_detail", args=[project.full_path, created.issue.iid])
    assert f'href="{issue_url}"' in html
    assert "Lost and alone" not in html
    assert "For the other project" not in html
    # Rows of other ledgers are 404 here, whatever their id.
    for row in (unclaimed, elsewhere):
        url = reverse("project_inbound_detail", args=[project.full_path, row.pk])
        assert client.get(url).status_code == 404
        url = reverse("project_inbound_raw", args=[project.full_path, row.pk])
        assert client.get(url).status_code == 404
        url = reverse("project_inbound_reprocess", args=[project.full_path, row.pk])
        assert client.post(url).status_code == 404


def test_instance_ledger_lists_every_email_with_its_project(
    client, staff, project, rejected, unclaimed
) -> None:
    client.force_login(staff)
    html = client.get(reverse("instance_inbound_list")).content.decode()
    assert "Lost and alone" in html
    assert "no key found" in html
    assert f'href="{reverse("project_inbound_list", args=[project.full_path])}"' in html
    assert html.count('data-testid="ledger-row"') == 2


def test_note_link_points_at_the_note_in_its_issue(client, owner, project) -> None:
    issue = IssueFactory(project=project, author=support_bot(), title="Crash")
    note = NoteFactory(issue=issue, author=support_bot(), body="reply")
    InboundMessage.objects.create(
        transport="smtp", raw=b"x", size=1, status="done", outcome="note_added",
        project=project, issue=issue, note=note, subject="Re: Crash",
    )  # fmt: skip
    client.force_login(owner)
    html = client.get(reverse("project_inbound_list", args=[project.full_path])).content.decode()
    url = reverse("issue_detail", args=[project.full_path, issue.iid])
    assert f'href="{url}#note-{note.pk}"' in html


def make_rows(project: Project | None, count: int, **fields) -> list[InboundMessage]:  # type: ignore[no-untyped-def]
    defaults = {
        "transport": "imap", "mailbox": "incoming_email", "raw": b"R" * 2000, "size": 2000,
        "status": "done", "outcome": "rejected", "reason": "empty email", "project": project,
        "from_address": "jake@customer.example", "decision": {"rule": "empty"},
    }  # fmt: skip
    return InboundMessage.objects.bulk_create(
        [InboundMessage(**{**defaults, "subject": f"Email {i}", **fields}) for i in range(count)]
    )


def test_filters_by_outcome_status_and_search(client, owner, project) -> None:
    make_rows(project, 2, outcome="rejected", from_address="finn@customer.example")
    make_rows(project, 3, outcome="failed", status="failed", subject="Broken thing")
    make_rows(project, 1, outcome="", status="queued", subject="")
    client.force_login(owner)
    url = reverse("project_inbound_list", args=[project.full_path])

    def rows(**params) -> int:  # type: ignore[no-untyped-def]
        response = client.get(url, params)
        assert response.status_code == 200
        return response.content.decode().count('data-testid="ledger-row"')

    assert rows() == 6
    assert rows(outcome="rejected") == 2
    assert rows(outcome="failed") == 3
    assert rows(status="queued") == 1
    assert rows(status="failed", outcome="rejected") == 0
    assert rows(q="FINN@customer") == 2  # the sender, case-insensitively
    assert rows(q="broken") == 3  # the subject
    assert rows(q="broken", outcome="rejected") == 0
    assert rows(outcome="no-such-outcome", status="bogus") == 6  # ignored, not an error
    html = client.get(url, {"q": "<script>"}).content.decode()
    assert "<script>" not in html.split("<main", 1)[1]


def test_htmx_filter_request_gets_only_the_results(client, owner, project) -> None:
    make_rows(project, 2)
    client.force_login(owner)
    url = reverse("project_inbound_list", args=[project.full_path])
    response = client.get(url, {"outcome": "rejected"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert "<form" not in html
    assert html.count('data-testid="ledger-row"') == 2
    assert "HX-Request" in response["Vary"]
    # Back button after a cache miss: htmx asks for the whole page.
    restore = client.get(
        url, headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    ).content.decode()
    assert "<html" in restore


def test_pagination_keeps_the_filters(client, owner, project) -> None:
    make_rows(project, 60)
    client.force_login(owner)
    url = reverse("project_inbound_list", args=[project.full_path])
    html = client.get(url, {"outcome": "rejected", "q": "Email"}).content.decode()
    assert html.count('data-testid="ledger-row"') == 50
    assert "Page 1 of 2" in html
    assert "?outcome=rejected&amp;q=Email&amp;page=2" in html
    page2 = client.get(url, {"outcome": "rejected", "q": "Email", "page": 2}).content.decode()
    assert page2.count('data-testid="ledger-row"') == 10


def _queries_for(client: Client, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return [q["sql"] for q in queries.captured_queries]


def test_project_ledger_costs_the_same_queries_for_10_or_200_emails_and_never_loads_raw(
    client, owner, project, django_assert_num_queries
) -> None:
    issues = [IssueFactory(project=project, author=support_bot()) for _ in range(3)]
    url = reverse("project_inbound_list", args=[project.full_path])
    client.force_login(owner)
    for issue in issues:
        make_rows(project, 3, outcome="issue_created", issue=issue)
    make_rows(project, 1)
    ten = _queries_for(client, url)
    for issue in issues:
        make_rows(project, 30, outcome="issue_created", issue=issue)
    make_rows(project, 100)
    assert InboundMessage.objects.count() == 200
    # session, user, project, role, COUNT, one page of rows (issues joined)
    with django_assert_num_queries(len(ten)) as captured:
        response = client.get(url)
    assert response.content.decode().count('data-testid="ledger-row"') == 50
    assert len(ten) == 6
    sql = " ".join(q["sql"] for q in captured.captured_queries)
    for column in ('"mailroom_inboundmessage"."raw"', '"mailroom_inboundmessage"."decision"',
                   '"issues_issue"."description"'):  # fmt: skip
        assert column not in sql
    assert '"mailroom_inboundmessage"."subject"' in sql  # the check above can fail


def test_instance_ledger_costs_the_same_queries_for_10_or_200_emails(
    client, staff, project, django_assert_num_queries, settings
) -> None:
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": IMAP}
    WorkerHeartbeat.objects.create(hostname="celery@a", seen_at=timezone.now(), beats=3)
    url = reverse("instance_inbound_list")
    client.force_login(staff)
    make_rows(project, 5)
    make_rows(None, 5)
    ten = _queries_for(client, url)
    make_rows(project, 95)
    make_rows(None, 95)
    # session, user, mailbox states, heartbeats, queue, COUNT, rows (the banner is for project
    # pages only)
    with django_assert_num_queries(len(ten)) as captured:
        client.get(url)
    assert len(ten) == 7
    sql = " ".join(q["sql"] for q in captured.captured_queries)
    assert '"mailroom_inboundmessage"."raw"' not in sql
    assert '"mailroom_inboundmessage"."subject"' in sql


# --- One email ---------------------------------------------------------------------------------


def test_detail_page_costs_a_fixed_number_of_queries(client, owner, project) -> None:
    row = deliver(make_email(to=to_project(project), subject="Hello there"))
    client.force_login(owner)
    # session, user, project, role, the email with its project and issue
    queries = _queries_for(client, project_urls(project, row)["detail"])
    assert len(queries) == 5
    assert '"mailroom_inboundmessage"."raw"' not in " ".join(queries)


def test_detail_shows_the_decision_attempts_and_last_error(client, owner, project) -> None:
    row = deliver(make_email(to=to_project(project), subject="Hello there"))
    InboundMessage.objects.filter(pk=row.pk).update(
        attempts=2, last_error="OperationalError: connection to db.internal lost"
    )
    client.force_login(owner)
    html = client.get(project_urls(project, row)["detail"]).content.decode()
    assert "<dt>Key found in header</dt><dd>To</dd>" in html
    assert (
        "<dt>Key kind</dt><dd>project address key (&lt;project&gt;-&lt;id&gt;-issue-)</dd>" in html
    )
    assert "<dt>Attempts</dt><dd>2</dd>" in html
    assert "connection to db.internal lost" in html
    assert "Hello there" in html
    assert f"{project.full_path}#{row.issue.iid}" in html
    # It made an issue that exists: processing it again would only record a duplicate.
    assert 'data-testid="reprocess-refusal"' in html
    assert "Reprocess email" not in html


def test_detail_of_a_rejected_email_offers_reprocess_and_shows_the_rule(
    client, owner, project, rejected
) -> None:
    client.force_login(owner)
    html = client.get(project_urls(project, rejected)["detail"]).content.decode()
    assert "<dt>Rule</dt><dd>empty</dd>" in html
    assert "empty email" in html
    assert (
        f'action="{reverse("project_inbound_reprocess", args=[project.full_path, rejected.pk])}"'
        in html
    )
    assert "csrfmiddlewaretoken" in html


def test_reply_keys_never_show_in_full(client, staff) -> None:
    key = "0123456789abcdef0123456789abcdef"
    row = InboundMessage.objects.create(
        transport="smtp", raw=b"x", size=1, status="done", outcome="ignored",
        decision={"rule": "delivery report", "key": key, "reply_keys": [key, f"{key}-unsubscribe"]},
    )  # fmt: skip
    client.force_login(staff)
    html = client.get(reverse("instance_inbound_detail", args=[row.pk])).content.decode()
    assert key not in html
    assert "012345…" in html
    assert "012345…-unsubscribe" in html


def test_raw_download_is_the_exact_email_as_an_attachment(client, owner, project, rejected) -> None:
    client.force_login(owner)
    response = client.get(project_urls(project, rejected)["raw"])
    assert response.status_code == 200
    assert response["Content-Type"] == "message/rfc822"
    assert response["Content-Disposition"] == f'attachment; filename="inbound-{rejected.pk}.eml"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert response.content == bytes(InboundMessage.objects.get(pk=rejected.pk).raw)


# --- Reprocess ---------------------------------------------------------------------------------


def test_reprocess_queues_the_email_and_processing_it_again_gives_the_same_outcome(
    client, owner, project, rejected, django_capture_on_commit_callbacks
) -> None:
    before = (rejected.outcome, rejected.reason, rejected.decision, rejected.project_id)
    client.force_login(owner)
    url = reverse("project_inbound_reprocess", args=[project.full_path, rejected.pk])
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url, follow=True)
    assert len(callbacks) == 1
    assert "is queued to be processed again" in response.content.decode()
    rejected.refresh_from_db()
    assert (rejected.status, rejected.outcome, rejected.attempts) == ("queued", "", 0)

    claimed, token = inbound_claim([rejected.pk])  # what the queued task does
    assert claimed == [rejected.pk]
    inbound_process(rejected.pk, token)
    rejected.refresh_from_db()
    assert rejected.status == "done"
    assert (rejected.outcome, rejected.reason, rejected.decision, rejected.project_id) == before


def test_reprocess_is_refused_while_the_email_is_processed(
    client, owner, project, rejected
) -> None:
    InboundMessage.objects.filter(pk=rejected.pk).update(status="processing")
    client.force_login(owner)
    detail = client.get(project_urls(project, rejected)["detail"]).content.decode()
    assert "is being processed right now" in detail
    url = reverse("project_inbound_reprocess", args=[project.full_path, rejected.pk])
    response = client.post(url, follow=True)
    assert "is being processed right now; try again when it is done" in response.content.decode()
    rejected.refresh_from_db()
    assert (rejected.status, rejected.outcome) == ("processing", "rejected")


def test_reprocess_is_refused_for_an_email_that_made_an_issue(client, owner, project) -> None:
    row = deliver(make_email(to=to_project(project), subject="Made an issue"))
    client.force_login(owner)
    url = reverse("project_inbound_reprocess", args=[project.full_path, row.pk])
    response = client.post(url, follow=True)
    assert "would only record a duplicate" in response.content.decode()
    row.refresh_from_db()
    assert (row.status, row.outcome, row.issue_id) == ("done", "issue_created", row.issue.pk)


def test_reprocess_is_post_only(client, owner, project, rejected) -> None:
    client.force_login(owner)
    url = reverse("project_inbound_reprocess", args=[project.full_path, rejected.pk])
    assert client.get(url).status_code == 405
    rejected.refresh_from_db()
    assert rejected.status == "done"


def test_reprocess_needs_the_csrf_token(owner, project, rejected) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    url = reverse("project_inbound_reprocess", args=[project.full_path, rejected.pk])
    assert client.post(url).status_code == 403
    rejected.refresh_from_db()
    assert rejected.status == "done"
    detail = client.get(project_urls(project, rejected)["detail"])
    token = detail.context["csrf_token"]
    assert client.post(url, {"csrfmiddlewaretoken": str(token)}).status_code == 302
    rejected.refresh_from_db()
    assert rejected.status == "queued"


# --- Mailbox health and the banner -------------------------------------------------------------


def failing(minutes_since_success: float | None, errors: int = 3) -> MailboxState:
    now = timezone.now()
    return MailboxState.objects.create(
        name="incoming_email",
        last_fetch_at=now,
        last_success_at=(
            now - timedelta(minutes=minutes_since_success)
            if minutes_since_success is not None
            else None
        ),
        consecutive_errors=errors,
        last_error="LoginError: [AUTHENTICATIONFAILED] imap.adventuretime.ooo said no to "
        "hunter2-imap-secret",
        messages_fetched=42,
    )


def test_mailbox_health_shows_each_mailbox_without_secrets(client, staff, settings) -> None:
    alias = MailboxConfig(
        name="service_desk_email", enabled=True, address="support+%{key}@example.com",
        inbox_method="none",
    )  # fmt: skip
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": IMAP, "service_desk_email": alias}
    failing(25)
    WorkerHeartbeat.objects.create(hostname="celery@worker-1", seen_at=timezone.now(), beats=7)
    WorkerHeartbeat.objects.create(
        hostname="celery@old", seen_at=timezone.now() - timedelta(hours=1), beats=2
    )
    InboundMessage.objects.create(transport="imap", raw=b"x", size=1)  # queued
    client.force_login(staff)

    html = client.get(reverse("instance_inbound_list")).content.decode()

    assert html.count('data-testid="mailbox"') == 2
    assert "service_desk_email" in html
    assert "not polled" in html
    assert "AUTHENTICATIONFAILED" in html
    assert "imap.adventuretime.ooo" in html
    assert "hunter2-imap-secret" not in html
    assert "[redacted]" in html
    assert "Not fetching" in html
    assert ">42<" in html  # messages fetched
    assert "celery@worker-1" in html
    assert "7 beats" in html
    assert "Silent" in html  # celery@old
    assert "1 queued, 0 processing" in html


def test_mailbox_health_says_when_no_worker_ever_beat(client, staff) -> None:
    client.force_login(staff)
    html = client.get(reverse("instance_inbound_list")).content.decode()
    assert "No worker heartbeat recorded" in html


@pytest.mark.parametrize(
    ("since", "errors", "shown"),
    [
        (11, 3, True),  # failing, last success more than 10 minutes ago
        (None, 1, True),  # never fetched successfully, and failing
        (9, 3, False),  # failing, but fetched 9 minutes ago
        (60, 0, False),  # no errors: a quiet mailbox is not a broken one
    ],
)
def test_banner_on_project_pages_by_time_and_errors(
    client, reporter, project, settings, since, errors, shown
) -> None:
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": IMAP}
    failing(since, errors)
    client.force_login(reporter)
    html = client.get(reverse("issue_list", args=[project.full_path])).content.decode()
    assert ('data-testid="mailbox-alert"' in html) is shown
    if shown:
        assert "Mailbox incoming_email is not fetching email" in html
        assert "hunter2" not in html
        assert "AUTHENTICATIONFAILED" not in html
        assert reverse("instance_inbound_list") not in html


def test_banner_threshold_is_a_setting(client, reporter, project, settings) -> None:
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": IMAP}
    settings.SERVICEDESK_MAILBOX_ALERT_MINUTES = 30
    failing(20)
    client.force_login(reporter)
    html = client.get(reverse("issue_list", args=[project.full_path])).content.decode()
    assert 'data-testid="mailbox-alert"' not in html


def test_banner_only_for_polled_imap_mailboxes(client, reporter, project, settings) -> None:
    failing(60)
    client.force_login(reporter)
    url = reverse("issue_list", args=[project.full_path])
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING}  # inbox_method "none"
    assert 'data-testid="mailbox-alert"' not in client.get(url).content.decode()
    disabled = MailboxConfig(**{**IMAP.__dict__, "enabled": False})
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": disabled}
    assert 'data-testid="mailbox-alert"' not in client.get(url).content.decode()


def test_banner_is_for_reporters_and_up_on_project_pages_only(
    client, project, guest, developer, staff, settings
) -> None:
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": IMAP}
    failing(60)
    issues = reverse("issue_list", args=[project.full_path])
    client.force_login(developer)
    assert 'data-testid="mailbox-alert"' in client.get(issues).content.decode()
    assert 'data-testid="mailbox-alert"' not in client.get(reverse("home")).content.decode()
    client.force_login(guest)
    assert 'data-testid="mailbox-alert"' not in client.get(issues).content.decode()
    # Staff see the health on the instance page, not a banner about it.
    client.force_login(staff)
    assert (
        'data-testid="mailbox-alert"'
        not in client.get(reverse("instance_inbound_list")).content.decode()
    )
    # A staff member who is also a Reporter gets the banner, with a link to the details.
    membership_set(user=staff, project=project, role=Role.REPORTER)
    html = client.get(issues).content.decode()
    assert f'href="{reverse("instance_inbound_list")}">Mailbox health' in html


def test_banner_never_shows_to_anonymous_visitors(client, project, settings) -> None:
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": IMAP}
    failing(60)
    make_public(project)
    response = client.get(reverse("issue_list", args=[project.full_path]))
    assert response.status_code == 200
    assert 'data-testid="mailbox-alert"' not in response.content.decode()


def test_banner_costs_at_most_one_query_and_is_cached(
    settings, django_assert_num_queries, project
) -> None:
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": IMAP}
    state = failing(60)
    with django_assert_num_queries(1):
        assert [a.name for a in mailbox_alerts()] == ["incoming_email"]
    MailboxState.objects.filter(pk=state.pk).update(consecutive_errors=0)
    with django_assert_num_queries(0):  # cached for 30 s
        assert len(mailbox_alerts()) == 1


def test_banner_costs_one_query_on_a_page(client, reporter, project, settings) -> None:
    url = reverse("issue_list", args=[project.full_path])
    client.force_login(reporter)
    client.get(url)
    without = len(_queries_for(client, url))
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": IMAP}
    failing(60)
    with_banner = _queries_for(client, url)
    assert len(with_banner) == without + 1
    assert 'data-testid="mailbox-alert"' in client.get(url).content.decode()
    assert len(_queries_for(client, url)) == without  # then cached


def test_pages_still_render_when_the_cache_is_down(client, reporter, project, settings) -> None:
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": IMAP}
    failing(60)
    client.force_login(reporter)
    broken = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",  # nothing listens on the discard port
        }
    }
    with override_settings(CACHES=broken):
        response = client.get(reverse("issue_list", args=[project.full_path]))
    assert response.status_code == 200
    assert 'data-testid="mailbox-alert"' in response.content.decode()
