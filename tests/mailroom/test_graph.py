"""Microsoft Graph mailboxes end to end: the fake Graph server (real HTTP on 127.0.0.1), the real
worker processes, PostgreSQL and Redis."""

from __future__ import annotations

import contextlib
import io
import os
import signal
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import redis
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from issues.models import Issue
from mailroom.graph import retry_after_seconds
from mailroom.locks import mailbox_lock
from mailroom.models import InboundMessage, MailboxState
from mailroom.transport import poll_mailbox
from servicedesk.config import load_mailboxes
from tests.factories import UserFactory
from tests.harness.fake_graph import FakeGraphServer

from .helpers import make_email
from .test_imap import broker_url, send, wait_for

Status = InboundMessage.Status
USER = "support@example.test"


@pytest.fixture
def graph_env(fake_graph, redis_server, settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Worker environment for a Graph mailbox on the fake server; the test process gets the
    same configuration."""
    options = "SERVICEDESK_INCOMING_EMAIL_INBOX_OPTIONS_"
    env = {
        "REDIS_URL": broker_url(redis_server),
        "SERVICEDESK_INCOMING_EMAIL_ENABLED": "true",
        "SERVICEDESK_INCOMING_EMAIL_ADDRESS": "support+%{key}@example.test",
        "SERVICEDESK_INCOMING_EMAIL_INBOX_METHOD": "microsoft_graph",
        "SERVICEDESK_INCOMING_EMAIL_USER": USER,
        f"{options}TENANT_ID": fake_graph.tenant_id,
        f"{options}CLIENT_ID": fake_graph.client_id,
        f"{options}CLIENT_SECRET": fake_graph.client_secret,
        f"{options}POLL_INTERVAL": "1",
        f"{options}AZURE_AD_ENDPOINT": fake_graph.url,
        f"{options}GRAPH_ENDPOINT": fake_graph.url,
        "SERVICEDESK_GRAPH_PAGE_SIZE": "5",
        "SERVICEDESK_IMAP_LOCK_TTL": "6",
        "SERVICEDESK_IMAP_LEASE": "120",
        "SERVICEDESK_INBOUND_STUCK_AFTER": "3",
        "CELERY_TASK_TIME_LIMIT": "120",
        "CELERY_TASK_SOFT_TIME_LIMIT": "90",
        "SERVICEDESK_NEW_ISSUES_PER_MINUTE": "0",
    }
    settings.SERVICEDESK_MAILBOXES = load_mailboxes(None, environ=env)
    settings.SERVICEDESK_GRAPH_PAGE_SIZE = 5
    settings.SERVICEDESK_INBOUND_STUCK_AFTER = 3
    redis.Redis.from_url(broker_url(redis_server)).flushdb()
    return env


@pytest.fixture
def address(project, settings, graph_env) -> str:  # type: ignore[no-untyped-def]
    return settings.SERVICEDESK_MAILBOXES["incoming_email"].address_for(
        project.service_desk.default_key
    )


@pytest.fixture
def start_poller(worker_factory):  # type: ignore[no-untyped-def]
    """Start a worker that polls the Graph mailbox. At the end every process of its group is
    gone, a pool process that outlived its main process included: a poller left behind would
    take the next test's mail."""
    started = []

    def start(env: dict[str, str], name: str = "graph"):  # type: ignore[no-untyped-def]
        worker = worker_factory(name=name, env=env, queues="celery,outbound,mailbox",
                                concurrency=3)  # fmt: skip
        started.append(worker)
        send(env, "mailroom.tasks.poll_mailbox", "incoming_email", queue="mailbox")
        return worker

    yield start
    for worker in started:
        worker.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.proc.pid, signal.SIGKILL)


@pytest.fixture
def staff(db):  # type: ignore[no-untyped-def]
    return UserFactory(username="sam", is_staff=True)


def health() -> MailboxState | None:
    return MailboxState.objects.filter(name="incoming_email").first()


def first_record() -> MailboxState:
    """The poller's first record of a pass (waits for it)."""
    return wait_for(health, 20, "the poller's first record")  # type: ignore[no-any-return]


def in_ledger(message_id: str) -> bool:
    """Asked by the fake server, in its own thread, when a message is marked read or deleted."""
    try:
        return InboundMessage.objects.filter(source_id=message_id).exists()
    finally:
        connection.close()


# --- Through the worker --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_unread_messages_become_issues_page_by_page(
    fake_graph, start_poller, graph_env, address, client, owner, project
) -> None:
    ids = [fake_graph.add(make_email(to=address, subject=f"Graph {i}")) for i in range(12)]
    fake_graph.before_settle = in_ledger
    start_poller(graph_env)
    wait_for(lambda: Issue.objects.count() == 12, 60, "12 issues")
    assert set(Issue.objects.values_list("title", flat=True)) == {f"Graph {i}" for i in range(12)}
    rows = InboundMessage.objects.all()
    assert {(r.transport, r.mailbox, r.status) for r in rows} == {
        ("graph", "incoming_email", Status.DONE)
    }
    assert sorted(r.source_id for r in rows) == sorted(ids)
    # Deleted (delete_after_delivery defaults to true: moved to Deleted Items) and then marked
    # read — each only once the ledger had committed it. The PATCH follows the DELETE, so wait
    # for both: the last message leaves the inbox a moment before it is marked read.
    wait_for(lambda: fake_graph.in_folder() == [], 10, "every message deleted")
    wait_for(lambda: len(fake_graph.log("patch", 200)) == len(ids), 10, "every message read")
    assert sorted(fake_graph.in_folder(folder="deleteditems")) == sorted(ids)
    assert {r.message_id for r in fake_graph.log("patch", 200)} == set(ids)
    assert fake_graph.witnessed == {(kind, i): True for i in ids for kind in ("patch", "delete")}
    # Page by page: the first page was marked read before the second was listed.
    requests = fake_graph.log()
    first_patch = next(n for n, r in enumerate(requests) if r.kind == "patch")
    lists = [n for n, r in enumerate(requests) if r.kind == "list"]
    assert lists[0] < first_patch < lists[1]
    assert all(r.query["$top"] == "5" for r in fake_graph.log("list"))
    # Oldest first, as the mailbox received them (a reply after its original).
    assert [r.message_id for r in fake_graph.log("value")] == ids
    state = wait_for(
        lambda: MailboxState.objects.filter(name="incoming_email", messages_fetched=12).first(),
        20,
        "the pass recorded",
    )
    assert state.consecutive_errors == 0
    assert state.last_success_at is not None
    # The ledger page names the message's Graph id (its end; the whole id in the title).
    row = InboundMessage.objects.get(source_id=ids[0])
    client.force_login(owner)
    html = client.get(reverse("project_inbound_detail", args=[project.full_path, row.pk]))
    assert f'Graph id <code title="{ids[0]}">…{ids[0][-16:]}</code>' in html.content.decode()


@pytest.mark.django_db(transaction=True)
def test_messages_are_only_marked_read_when_delete_after_delivery_is_off(
    fake_graph, start_poller, graph_env, address
) -> None:
    env = {**graph_env, "SERVICEDESK_INCOMING_EMAIL_DELETE_AFTER_DELIVERY": "false"}
    ids = [fake_graph.add(make_email(to=address, subject=f"Keep {i}")) for i in range(3)]
    fake_graph.before_settle = in_ledger
    start_poller(env)
    wait_for(lambda: Issue.objects.count() == 3, 60, "3 issues")
    wait_for(lambda: fake_graph.unread() == [], 10, "every message marked read")
    assert sorted(fake_graph.in_folder()) == sorted(ids)
    assert fake_graph.log("delete") == []
    assert fake_graph.witnessed == {("patch", i): True for i in ids}


@pytest.mark.django_db(transaction=True)
def test_token_is_renewed_before_it_expires_mid_run(
    fake_graph, start_poller, graph_env, address
) -> None:
    fake_graph.token_lifetime = 3
    start_poller(graph_env)
    fake_graph.add(make_email(to=address, subject="Early"))
    wait_for(lambda: Issue.objects.filter(title="Early").exists(), 30, "the first issue")
    first_token = fake_graph.log("value")[0].token
    # Polls go on while the first token runs out; mail that comes after it still arrives.
    wait_for(lambda: len(fake_graph.log("token", 200)) >= 3, 30, "two renewals")
    fake_graph.add(make_email(to=address, subject="Late"))
    wait_for(lambda: Issue.objects.filter(title="Late").exists(), 30, "the second issue")
    assert fake_graph.log("value")[-1].token != first_token
    # Renewed in time: Graph never had to refuse an expired token.
    assert fake_graph.log(status=401) == []
    state = health()
    assert state is not None
    assert state.consecutive_errors == 0


@pytest.mark.django_db(transaction=True)
def test_a_token_refused_before_its_expiry_is_renewed_once(
    fake_graph, start_poller, graph_env, address
) -> None:
    start_poller(graph_env)
    fake_graph.add(make_email(to=address, subject="Before"))
    wait_for(lambda: Issue.objects.filter(title="Before").exists(), 30, "the first issue")
    tokens_before = len(fake_graph.log("token", 200))
    fake_graph.expire_tokens()  # revoked: the poller still believes it has an hour left
    fake_graph.add(make_email(to=address, subject="After"))
    wait_for(lambda: Issue.objects.filter(title="After").exists(), 30, "the second issue")
    refused = fake_graph.log(status=401)
    assert refused, "the fake never refused the revoked token"
    assert len(fake_graph.log("token", 200)) == tokens_before + 1
    # The refused call was made again with the new token, and nothing was recorded as broken.
    after = fake_graph.log()[fake_graph.log().index(refused[0]) + 1 :]
    assert after[0].kind == "token"
    assert after[1].kind == refused[0].kind
    assert after[1].status == 200
    state = health()
    assert state is not None
    assert state.consecutive_errors == 0


@pytest.mark.django_db(transaction=True)
def test_throttled_list_and_fetch_wait_as_retry_after_says(
    fake_graph, start_poller, graph_env, address
) -> None:
    ids = [fake_graph.add(make_email(to=address, subject=f"Busy {i}")) for i in range(3)]
    fake_graph.throttle("list", "1")
    # An HTTP date two seconds after the answer (one-second precision: over a second's wait).
    fake_graph.throttle(
        "value", lambda: format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    )
    start_poller(graph_env)
    wait_for(lambda: Issue.objects.count() == 3, 60, "3 issues")
    requests = fake_graph.log()
    for kind in ("list", "value"):
        throttled = next(n for n, r in enumerate(requests) if r.kind == kind and r.status == 429)
        retry = next(r for r in requests[throttled + 1 :] if r.kind == kind)
        assert retry.at - requests[throttled].at >= 0.95, f"{kind} retried too soon"
    # Every message stored once: the throttled fetch was made again, not skipped or doubled.
    assert sorted(InboundMessage.objects.values_list("source_id", flat=True)) == sorted(ids)
    # Waiting as asked is not an error: the first pass, throttled twice, recorded success.
    assert first_record().consecutive_errors == 0


@pytest.mark.django_db(transaction=True)
def test_a_message_that_cannot_be_fetched_is_recorded_retried_and_the_others_go_on(
    fake_graph, start_poller, graph_env, address
) -> None:
    ids = [fake_graph.add(make_email(to=address, subject=f"Item {i}")) for i in range(4)]
    fake_graph.fail_message(ids[1], 500)
    start_poller(graph_env)
    wait_for(lambda: Issue.objects.count() == 3, 60, "3 issues")
    state = wait_for(
        lambda: MailboxState.objects.filter(consecutive_errors__gt=0).first(),
        20,
        "the failure in the mailbox's health",
    )
    assert "HTTP 500" in state.last_error
    assert fake_graph.unread() == [ids[1]]  # left unread for the next pass
    # Tried again on later passes, and stored once it can be read.
    wait_for(lambda: len(fake_graph.log("value", 500)) >= 2, 20, "a second attempt")
    fake_graph.heal_message(ids[1])
    wait_for(lambda: Issue.objects.filter(title="Item 1").exists(), 30, "the healed message")
    wait_for(lambda: health().consecutive_errors == 0, 20, "a clean pass")  # type: ignore[union-attr]
    assert Issue.objects.count() == 4
    assert sorted(InboundMessage.objects.values_list("source_id", flat=True)) == sorted(ids)


@pytest.mark.django_db(transaction=True)
def test_a_message_stored_but_not_marked_read_is_not_stored_twice(
    fake_graph, start_poller, graph_env, address
) -> None:
    """What a crash between our commit and the DELETE leaves: a stored message still unread."""
    ids = [fake_graph.add(make_email(to=address, subject=f"Once {i}")) for i in range(3)]
    fake_graph.fail_message(ids[0], 500, kind="delete")
    start_poller(graph_env)
    wait_for(lambda: Issue.objects.count() == 3, 60, "3 issues")
    wait_for(lambda: len(fake_graph.log("list")) >= 4, 30, "passes that list it again")
    assert ids[0] in fake_graph.unread()
    fake_graph.heal_message(ids[0])
    wait_for(lambda: fake_graph.in_folder() == [], 20, "every message settled")
    assert InboundMessage.objects.filter(source_id=ids[0]).count() == 1
    assert len(fake_graph.log("value")) == 3  # listed again, but never fetched again
    assert Issue.objects.count() == 3


@pytest.mark.timeout(240)
@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_ingest_loses_nothing_and_stores_nothing_twice(
    fake_graph, start_poller, graph_env, address
) -> None:
    total = 150
    ids = [fake_graph.add(make_email(to=address, subject=f"Crash {i}")) for i in range(total)]
    doomed = start_poller(graph_env, name="doomed")
    wait_for(lambda: InboundMessage.objects.count() >= 30, 60, "ingest under way", 0.01)
    doomed.kill()  # SIGKILL to the whole worker: main process and pool children
    stored_at_kill = InboundMessage.objects.count()
    assert stored_at_kill < total, "the kill came too late to test anything"

    start_poller(graph_env, name="survivor")

    def finished() -> bool:
        send(graph_env, "mailroom.tasks.sweep_inbound")  # what beat runs every 30 s
        send(graph_env, "mailroom.tasks.poll_mailbox", "incoming_email", queue="mailbox")
        return (
            InboundMessage.objects.count() == total
            and not InboundMessage.objects.exclude(status=Status.DONE).exists()
        )

    wait_for(finished, 180, f"all {total} messages processed", interval=1.0)
    print(f"\nkilled with {stored_at_kill}/{total} stored; all {total} done after restart")
    assert sorted(InboundMessage.objects.values_list("source_id", flat=True)) == sorted(ids)
    assert Issue.objects.count() == total
    wait_for(lambda: fake_graph.in_folder() == [], 20, "every message deleted")


@pytest.mark.django_db(transaction=True)
def test_next_link_to_another_host_is_refused(fake_graph, start_poller, graph_env, address) -> None:
    elsewhere = FakeGraphServer().start()
    try:
        ids = [fake_graph.add(make_email(to=address, subject=f"Paged {i}")) for i in range(7)]
        for message_id in ids[:5]:  # a first page that stays unread: the next is needed
            fake_graph.fail_message(message_id, 500)
        fake_graph.next_link_origin = elsewhere.url
        start_poller(graph_env)
        wait_for(
            lambda: "nextLink" in (getattr(health(), "last_error", "") or ""),
            30,
            "the refusal in the mailbox's health",
        )
        assert elsewhere.log() == []  # the token never went there
        assert f"refused @odata.nextLink to {elsewhere.url}" in health().last_error  # type: ignore[union-attr]
        assert InboundMessage.objects.count() == 0
        # Once the first page can be settled, the rest comes from our host's first page.
        for message_id in ids[:5]:
            fake_graph.heal_message(message_id)
        wait_for(lambda: Issue.objects.count() == 7, 60, "7 issues")
        assert elsewhere.log() == []
    finally:
        elsewhere.stop()


@pytest.mark.django_db(transaction=True)
def test_the_client_secret_is_never_shown(
    fake_graph, start_poller, graph_env, client, staff, reporter, project
) -> None:
    fake_graph.accepted_secret = "rotated-secret"  # ours is now wrong …
    fake_graph.echo_secret_in_errors = True  # … and the server repeats it in its error
    start_poller(graph_env)
    state = wait_for(
        lambda: MailboxState.objects.filter(consecutive_errors__gt=0).first(),
        30,
        "the failure in the mailbox's health",
    )
    secret = fake_graph.client_secret
    assert "invalid_client" in state.last_error
    assert secret not in state.last_error
    client.force_login(staff)
    html = client.get(reverse("instance_inbound_list")).content.decode()
    assert "invalid_client" in html
    assert secret not in html
    # A Graph mailbox that never fetched is announced on project pages like an IMAP one.
    client.force_login(reporter)
    html = client.get(reverse("issue_list", args=[project.full_path])).content.decode()
    assert "Mailbox incoming_email is not fetching email" in html
    assert secret not in html


# --- In this process ------------------------------------------------------------------------------


def test_check_mailboxes_gets_a_token_and_lists_the_folder(fake_graph, graph_env) -> None:
    fake_graph.add(make_email(to="support+x@example.test"))
    out = io.StringIO()
    call_command("check_mailboxes", stdout=out)
    assert "incoming_email (support+%{key}@example.test): OK" in out.getvalue()
    assert "1 unread message(s)" in out.getvalue()
    assert fake_graph.log("token", 200)
    assert fake_graph.log("list", 200)
    # A check changes nothing: no message fetched, marked or deleted.
    assert {r.kind for r in fake_graph.log()} <= {"token", "list"}
    assert fake_graph.unread() != []


def test_check_mailboxes_fails_on_a_wrong_secret_without_printing_it(fake_graph, graph_env) -> None:
    fake_graph.accepted_secret = "another"
    fake_graph.echo_secret_in_errors = True
    out = io.StringIO()
    with pytest.raises(CommandError, match="failed the check"):
        call_command("check_mailboxes", stdout=out)
    assert "invalid_client" in out.getvalue()
    assert fake_graph.client_secret not in out.getvalue()


@pytest.mark.django_db
def test_only_one_poller_per_graph_mailbox(fake_graph, graph_env) -> None:
    with mailbox_lock("incoming_email", ttl=30) as lease:
        assert lease is not None
        assert poll_mailbox("incoming_email", lease_seconds=1) == (
            "incoming_email: another worker is polling it"
        )
        assert fake_graph.log() == []
    assert poll_mailbox("incoming_email", lease_seconds=0.5).startswith("incoming_email: fetched")
    assert [r.kind for r in fake_graph.log()][:2] == ["token", "list"]


@pytest.mark.parametrize(
    ("value", "attempt", "expected"),
    [
        ("7", 1, 7.0),
        ("0", 3, 0.0),
        ("Thu, 03 Dec 2026 12:00:30 GMT", 1, 30.0),
        ("Thu, 03 Dec 2026 11:59:00 GMT", 1, 0.0),  # a date in the past: no wait
        (None, 1, 1.0),
        ("", 3, 4.0),  # no header: exponential backoff
        ("soon", 2, 2.0),  # unreadable: backoff
        (None, 20, 60.0),  # capped
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(value, attempt, expected) -> None:
    now = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds(value, attempt, now=now) == expected
