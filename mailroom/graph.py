"""Microsoft Graph mailboxes (``inbox_method = "microsoft_graph"``): the IMAP poller's contract
over HTTP.

- A client-credentials token from ``{azure_ad_endpoint}/{tenant}/oauth2/v2.0/token``, cached per
  worker process, renewed before ``expires_in`` runs out and once more on a 401 (a token can be
  revoked before it expires).
- Unread messages are listed a page at a time, oldest first; each page's raw MIME (``$value``)
  is committed to the ledger, and only then is each message deleted (with
  ``delete_after_delivery``; Exchange moves it to Deleted Items) and marked read (``PATCH``).
  A message fetched twice (we died between the commit and the PATCH or DELETE) is stored once:
  its Graph id is the ledger row's ``source_id``.
- 429, 503 and 504 are waited out as ``Retry-After`` says (seconds or an HTTP date; without it,
  exponential backoff), each wait capped and inside the poller's lease. Any other error ends
  the pass and goes to the mailbox's health; one message that cannot be fetched is recorded
  and skipped (it stays unread, so the next pass tries it again).

Error texts name the endpoint and Graph's error code, never the client secret or a token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from django.conf import settings

from servicedesk.config import GraphOptions, MailboxConfig

from .ledger import RawEmail, inbound_store_graph_batch
from .locks import Lease
from .models import InboundMessage
from .services import mailbox_health_record

log = logging.getLogger(__name__)

THROTTLED = frozenset({429, 503, 504})
# Oldest first, so that a reply is stored after its original (as IMAP's ascending UIDs give).
# Graph answers $orderby together with $filter only if the ordered property is filtered on
# first ("InefficientFilter" otherwise), hence the always-true date condition.
LIST_FILTER = "receivedDateTime ge 1900-01-01T00:00:00Z and isRead eq false"


class GraphError(Exception):
    """An answer from Graph or its token endpoint that ends this pass (recorded in health)."""

    def __init__(self, message: str, *, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LeaseLost(Exception):
    """Another poller holds the mailbox now: stop at once."""


# Any of these ends a pass; the poll loop records it and tries again with backoff.
GRAPH_ERRORS: tuple[type[BaseException], ...] = (GraphError, httpx.HTTPError)


def retry_after_seconds(value: str | None, attempt: int, *, now: datetime | None = None) -> float:
    """``Retry-After`` as seconds to wait (RFC 9110 §10.2.3: delay-seconds or an HTTP date);
    without one (or unreadable), exponential backoff from one second."""
    backoff = float(min(2 ** (attempt - 1), settings.SERVICEDESK_GRAPH_MAX_RETRY_WAIT))
    text = (value or "").strip()
    if not text:
        return backoff
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return backoff
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def describe(what: str, response: httpx.Response) -> str:
    """``what: HTTP 403 ErrorAccessDenied: Access is denied.`` from Graph's or the identity
    platform's error body (whichever it is), without the rest of the body."""
    code = message = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):  # Graph: {"error": {"code": …, "message": …}}
            code, message = str(error.get("code", "")), str(error.get("message", ""))
        elif isinstance(error, str):  # the token endpoint: {"error": …, "error_description": …}
            code, message = error, str(body.get("error_description", ""))
    text = f"{what}: HTTP {response.status_code}"
    if code:
        text += f" {code[:100]}"
    if message:
        text += f": {message.splitlines()[0][:300]}"
    return text


@dataclass
class _Token:
    value: str
    renew_at: float  # time.monotonic()


# Tokens by (token endpoint, client, scope): one per worker process, shared by its threads.
_tokens: dict[tuple[str, ...], _Token] = {}
_tokens_lock = threading.Lock()


class GraphClient:
    """HTTP to one mailbox's token endpoint and Graph API, with the token and throttling."""

    def __init__(
        self,
        mailbox: MailboxConfig,
        *,
        lease: Lease | None = None,
        deadline: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        assert mailbox.graph is not None, "a microsoft_graph mailbox has inbox_options"
        self.mailbox = mailbox
        self.options: GraphOptions = mailbox.graph
        self.lease = lease
        self.deadline = deadline
        self.sleep = sleep
        self.origin = self.options.graph_endpoint.rstrip("/")
        self.user_url = f"{self.origin}/v1.0/users/{quote(mailbox.user, safe='@')}"
        self.http = httpx.Client(
            timeout=httpx.Timeout(settings.SERVICEDESK_GRAPH_TIMEOUT, connect=10),
            follow_redirects=False,  # a redirect must not carry the token elsewhere
            headers={"User-Agent": "servicedesk-mailroom"},
        )
        self._seen_tokens: set[str] = set()

    def close(self) -> None:
        self.http.close()

    def redact(self, text: str) -> str:
        """Whatever a server or library echoes, neither the secret nor a token is shown."""
        for secret in (self.options.client_secret, *self._seen_tokens):
            if secret and len(secret) >= 3:
                text = text.replace(secret, "[redacted]")
        return text

    # --- token ---------------------------------------------------------------------------------

    @property
    def _token_key(self) -> tuple[str, ...]:
        o = self.options
        return (o.azure_ad_endpoint, o.tenant_id, o.client_id, o.graph_endpoint)

    def token(self) -> str:
        """The cached token, or a new one when it is due for renewal (or was refused)."""
        with _tokens_lock:
            cached = _tokens.get(self._token_key)
        if cached is not None and time.monotonic() < cached.renew_at:
            self._seen_tokens.add(cached.value)
            return cached.value
        o = self.options
        url = f"{o.azure_ad_endpoint.rstrip('/')}/{quote(o.tenant_id, safe='')}/oauth2/v2.0/token"
        started = time.monotonic()
        response = self._send(
            "POST",
            url,
            data={
                "grant_type": "client_credentials",
                "client_id": o.client_id,
                "client_secret": o.client_secret,
                "scope": f"{o.graph_endpoint.rstrip('/')}/.default",
            },
        )
        if response.status_code != 200:
            raise GraphError(self.redact(describe("token endpoint", response)))
        try:
            body = response.json()
            value, expires_in = str(body["access_token"]), float(body.get("expires_in", 3599))
        except (ValueError, KeyError, TypeError):
            raise GraphError("token endpoint: HTTP 200 without an access token") from None
        # Renew a fifth of its life (at most five minutes) before it runs out.
        token = _Token(value, started + expires_in - min(300.0, expires_in / 5))
        self._seen_tokens.add(value)
        with _tokens_lock:
            _tokens[self._token_key] = token
        return value

    def _forget_token(self, value: str) -> None:
        with _tokens_lock:
            if (cached := _tokens.get(self._token_key)) is not None and cached.value == value:
                del _tokens[self._token_key]

    # --- requests ------------------------------------------------------------------------------

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One Graph call with the token; on a 401 the token is renewed and the call made once
        more (a revoked or clock-skewed token), a second 401 is the caller's to report."""
        if not self.is_graph_url(url):
            raise GraphError(f"refused to send the token to {_origin(url)}: not {self.origin}")
        token = self.token()
        response = self._send(method, url, headers=self._headers(token), **kwargs)
        if response.status_code == 401:
            response.close()
            self._forget_token(token)
            response = self._send(method, url, headers=self._headers(self.token()), **kwargs)
        return response

    def _headers(self, token: str) -> dict[str, str]:
        # Immutable ids: a message's id stays the same if it is moved, so the ledger's
        # idempotency key holds.
        return {"Authorization": f"Bearer {token}", "Prefer": 'IdType="ImmutableId"'}

    def is_graph_url(self, url: str) -> bool:
        parts, ours = urlsplit(url), urlsplit(self.origin)
        return (parts.scheme, parts.netloc.lower()) == (ours.scheme, ours.netloc.lower())

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send; wait out 429/503/504 as Retry-After says while the wait is short enough and
        within the lease, else raise with the wait the server asked for."""
        attempt = 0
        while True:
            self._keep_lease()
            attempt += 1
            response = self.http.request(method, url, **kwargs)
            if response.status_code not in THROTTLED:
                return response
            wait = retry_after_seconds(response.headers.get("Retry-After"), attempt)
            left = None if self.deadline is None else self.deadline - time.monotonic()
            if (
                wait > settings.SERVICEDESK_GRAPH_MAX_RETRY_WAIT
                or attempt >= settings.SERVICEDESK_GRAPH_MAX_ATTEMPTS
                or (left is not None and wait >= left)
            ):
                text = describe(f"{method} {_path(url)}", response)
                response.close()
                raise GraphError(
                    self.redact(f"{text} (throttled; asked to wait {wait:.0f} s)"),
                    retry_after=wait,
                )
            log.info("mailbox %s: %s %s throttled (HTTP %d), waiting %.1f s",
                     self.mailbox.name, method, _path(url), response.status_code, wait)  # fmt: skip
            response.close()
            self.sleep(wait)

    def _keep_lease(self) -> None:
        if self.lease is not None and not self.lease.renew():
            raise LeaseLost(self.mailbox.name)

    # --- the mailbox ---------------------------------------------------------------------------

    def first_page_url(self, page_size: int) -> str:
        folder = quote(self.mailbox.mailbox, safe="")
        query = "&".join(
            f"{key}={quote(value, safe=',')}"
            for key, value in (
                ("$filter", LIST_FILTER),
                ("$orderby", "receivedDateTime asc"),
                ("$select", "id"),
                ("$top", str(page_size)),
            )
        )
        return f"{self.user_url}/mailFolders/{folder}/messages?{query}"

    def list_page(self, url: str) -> tuple[list[str], str | None]:
        """The message ids of one page, and the next page's URL (not checked here)."""
        response = self.request("GET", url)
        if response.status_code != 200:
            raise GraphError(self.redact(describe("list messages", response)))
        try:
            body = response.json()
            ids = [str(item["id"]) for item in body.get("value", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise GraphError("list messages: HTTP 200 with an unreadable body") from None
        next_link = body.get("@odata.nextLink")
        return ids, str(next_link) if next_link else None

    def message_url(self, message_id: str) -> str:
        return f"{self.user_url}/messages/{quote(message_id, safe='')}"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _path(url: str) -> str:
    return urlsplit(url).path


def _short(message_id: str) -> str:
    return message_id if len(message_id) <= 24 else f"…{message_id[-16:]}"


class GraphPoller:
    """One pass (``fetch_new``) stores every unread message; ``wait`` sleeps ``poll_interval``.

    The same face as ``transport.ImapPoller`` for the poll loop: connect, fetch_new, wait,
    reset, close.
    """

    def __init__(
        self,
        mailbox: MailboxConfig,
        *,
        lease: Lease | None = None,
        deadline: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int | None = None,
    ) -> None:
        self.mailbox = mailbox
        self.lease, self.deadline, self.sleep = lease, deadline, sleep
        self.page_size = page_size or settings.SERVICEDESK_GRAPH_PAGE_SIZE
        self.client: GraphClient | None = None
        self.errors = GRAPH_ERRORS

    def connect(self) -> None:
        self.client = GraphClient(
            self.mailbox, lease=self.lease, deadline=self.deadline, sleep=self.sleep
        )
        self.client.token()

    def reset(self) -> None:
        self.close()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, GraphError) else str(exc)
        return self.client.redact(text) if self.client is not None else text

    def wait(self, remaining: float) -> None:
        assert self.mailbox.graph is not None
        self.sleep(min(self.mailbox.graph.poll_interval, remaining))

    def fetch_new(self) -> int:
        """Store every unread message; return how many new rows were stored. A message that
        cannot be fetched or marked stays unread (the next pass tries it again) and is
        recorded in the mailbox's health; the others are stored all the same."""
        assert self.client is not None
        first = self.client.first_page_url(self.page_size)
        url: str | None = first
        stored, problems = 0, []
        # Messages already taken in this pass (settled, or failed: tried again next pass).
        seen: set[str] = set()
        while url is not None:
            ids, next_link = self.client.list_page(url)
            page_stored, page_problems, settled = self._take([i for i in ids if i not in seen])
            stored += page_stored
            problems += page_problems
            seen.update(ids)
            if self.deadline is not None and time.monotonic() >= self.deadline:
                break
            # Marking a page read shrinks the list, so the nextLink (an offset into it,
            # $skip) would now skip as many unread messages: after a page where anything was
            # settled, list again from the first page; follow nextLink only past a page whose
            # messages all stayed unread.
            url = first if settled else next_link
            if url is not None and not self.client.is_graph_url(url):
                raise GraphError(
                    f"list messages: refused @odata.nextLink to {_origin(url)} "
                    f"(only {self.client.origin} is followed)"
                )
        _record_health(self.mailbox.name, problems, stored)
        return stored

    def _take(self, ids: list[str]) -> tuple[int, list[str], list[str]]:
        """Fetch, store (one transaction), then mark read/delete one page of messages;
        return how many rows were new, the problems, and the messages settled."""
        assert self.client is not None
        client, name = self.client, self.mailbox.name
        known = set(
            InboundMessage.objects.filter(mailbox=name, source_id__in=ids).values_list(
                "source_id", flat=True
            )
        )
        problems: list[str] = []
        emails: list[RawEmail] = []
        for message_id in ids:
            if message_id in known:
                continue
            response = client.request("GET", f"{client.message_url(message_id)}/$value")
            if response.status_code == 200:
                emails.append(RawEmail(raw=response.content, source_id=message_id))
            else:
                problems.append(client.redact(describe(f"message {_short(message_id)}", response)))
        stored = len(inbound_store_graph_batch(mailbox=name, emails=emails))
        # Only now, with the rows committed, may Graph forget the messages.
        in_ledger = known | {email.source_id for email in emails}
        settled = []
        for message_id in (m for m in ids if m in in_ledger):
            problem = self._settle(message_id)
            if problem:
                problems.append(problem)
            else:
                settled.append(message_id)
        return stored, problems, settled

    def _settle(self, message_id: str) -> str:
        """Take one stored message out of the unread list; the problem, if any.

        With ``delete_after_delivery`` the DELETE comes first (Exchange moves the message to
        Deleted Items) and marking it read there is a courtesy: had we marked it read first
        and then failed to delete it, it would never be listed again, and stay in the inbox.
        """
        assert self.client is not None
        client = self.client
        url = client.message_url(message_id)
        if self.mailbox.delete_after_delivery:
            response = client.request("DELETE", url)
            if response.status_code not in (204, 404):
                return client.redact(describe(f"delete {_short(message_id)}", response))
            response = client.request("PATCH", url, json={"isRead": True})
            if response.status_code not in (200, 204):
                problem = describe(f"mark deleted {_short(message_id)} read", response)
                log.info("mailbox %s: %s", self.mailbox.name, client.redact(problem))
            return ""
        response = client.request("PATCH", url, json={"isRead": True})
        if response.status_code not in (200, 204):
            return client.redact(describe(f"mark {_short(message_id)} read", response))
        return ""


def _record_health(name: str, problems: list[str], stored: int) -> None:
    if not problems:
        mailbox_health_record(name=name, ok=True, fetched=stored)
        return
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    error = f"{len(problems)} message(s) left unread: " + "; ".join(problems[:3]) + more
    log.warning("mailbox %s: %s", name, error)
    mailbox_health_record(name=name, ok=False, error=error, fetched=stored)


def check_graph_mailbox(mailbox: MailboxConfig) -> str:
    """For ``manage.py check_mailboxes``: get a token and list the folder's first page."""
    poller = GraphPoller(mailbox, page_size=10)
    try:
        poller.connect()
        assert poller.client is not None
        ids, next_link = poller.client.list_page(poller.client.first_page_url(10))
    finally:
        poller.close()
    more = "10 or more" if next_link else str(len(ids))
    return f"{more} unread message(s)"
