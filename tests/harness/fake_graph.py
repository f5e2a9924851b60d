"""A local fake of Microsoft Graph and its token endpoint: real HTTP on 127.0.0.1.

Serves what the mailroom's Graph poller uses, as Microsoft documents it:

- ``POST /{tenant}/oauth2/v2.0/token`` (client-credentials grant): a bearer token with an
  ``expires_in``; the token really expires after ``token_lifetime`` seconds (which may be
  shorter than the ``expires_in`` it reports, as a revoked token is).
- ``GET /v1.0/users/{user}/mailFolders/{folder}/messages?$filter=…isRead eq false…&$top=N``:
  unread messages, oldest first, N per page, ``@odata.nextLink`` with ``$skip`` (an offset, as
  Graph's own: marking messages read while paging shifts it).
- ``GET …/messages/{id}/$value`` (raw MIME), ``PATCH …/messages/{id}`` (``isRead``),
  ``DELETE …/messages/{id}`` (moves it to Deleted Items, where it keeps its immutable id).

Faults, set by tests: ``throttle(kind, retry_after)`` answers the next request of that kind
with 429 and ``Retry-After``; ``fail_message(id, status)`` makes that message's ``$value``
fail until cleared; ``outage_status`` answers every request with that status; ``stop()`` and
``start()`` again on the same port; ``next_link_origin`` makes nextLinks point elsewhere.
Every request is recorded (``requests``) with its time, status and the token it carried.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

LOCALHOST = "127.0.0.1"


@dataclass
class FakeMessage:
    id: str
    user: str
    folder: str
    raw: bytes
    is_read: bool = False

    @property
    def deleted(self) -> bool:
        return self.folder == "deleteditems"


@dataclass(frozen=True)
class Request:
    method: str
    kind: str  # token, list, value, patch, delete, other
    path: str
    status: int
    at: float  # time.monotonic() when answered
    token: str = ""  # the bearer token it carried (Graph requests)
    message_id: str = ""
    query: dict[str, str] = field(default_factory=dict)


class FakeGraphServer:
    tenant_id = "contoso-tenant"
    client_id = "11111111-2222-3333-4444-555555555555"
    client_secret = "fake-graph-client-secret-9f8e7d6c"

    def __init__(self) -> None:
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._connections: set[socket.socket] = set()
        self.reset()

    # --- control -------------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.messages: list[FakeMessage] = []
            self.tokens: dict[str, float] = {}  # token -> expires at (monotonic)
            self.token_lifetime = 3600.0
            self.reported_expires_in: int | None = None  # None: the real lifetime
            self.requests: list[Request] = []
            self._throttles: dict[str, list[str | Callable[[], str]]] = {}
            self.failing: dict[tuple[str, str], int] = {}  # (kind, id) -> status
            # Called (in the server's thread) before a PATCH or DELETE is answered; what it
            # returns is kept in ``witnessed`` (e.g. whether the ledger had the message then).
            self.before_settle: Callable[[str], object] | None = None
            self.witnessed: dict[tuple[str, str], object] = {}
            self.outage_status: int | None = None
            self.next_link_origin: str | None = None
            # A broken identity platform that echoes what it was sent in its error text.
            self.echo_secret_in_errors = False
            self.accepted_secret = self.client_secret

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def add(self, raw: bytes, *, user: str = "support@example.test", folder: str = "inbox") -> str:
        # Graph ids are long, URL-unsafe base64: '=' padding, '-' and '_' (quoting matters).
        message_id = f"AAMkADc3MWUy-{next(self._ids):06d}_{secrets.token_hex(24)}AAA="
        with self._lock:
            self.messages.append(FakeMessage(message_id, user.lower(), folder.lower(), raw))
        return message_id

    def throttle(
        self, kind: str, retry_after: str | Callable[[], str] = "1", times: int = 1
    ) -> None:
        """Answer the next ``times`` requests of ``kind`` (token, list, value, patch, delete)
        with 429 and this ``Retry-After`` (or what the callable returns when answering)."""
        with self._lock:
            self._throttles.setdefault(kind, []).extend([retry_after] * times)

    def fail_message(self, message_id: str, status: int = 500, *, kind: str = "value") -> None:
        """Answer ``kind`` (value, patch, delete) requests for this message with ``status``
        until healed."""
        with self._lock:
            self.failing[(kind, message_id)] = status

    def heal_message(self, message_id: str) -> None:
        with self._lock:
            for key in [k for k in self.failing if k[1] == message_id]:
                del self.failing[key]

    def expire_tokens(self) -> None:
        """Every token issued so far expires now (as after its lifetime, or a revocation)."""
        with self._lock:
            self.tokens = dict.fromkeys(self.tokens, 0.0)

    def unread(self, user: str = "support@example.test") -> list[str]:
        with self._lock:
            return [m.id for m in self.messages
                    if m.user == user.lower() and not m.is_read and not m.deleted]  # fmt: skip

    def in_folder(self, user: str = "support@example.test", folder: str = "inbox") -> list[str]:
        with self._lock:
            return [m.id for m in self.messages if m.user == user.lower() and m.folder == folder]

    def log(self, kind: str | None = None, status: int | None = None) -> list[Request]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (kind is None or r.kind == kind) and (status is None or r.status == status)
            ]

    # --- life ----------------------------------------------------------------------------------

    def start(self) -> FakeGraphServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake._connections.add(self.connection)

            def finish(self) -> None:
                with fake._lock:
                    fake._connections.discard(self.connection)
                super().finish()

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_PATCH(self) -> None:
                fake._handle(self, "PATCH")

            def do_DELETE(self) -> None:
                fake._handle(self, "DELETE")

        server = ThreadingHTTPServer((LOCALHOST, self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True, name="fake-graph").start()
        return self

    def stop(self) -> None:
        """Stop listening (connections are refused) until ``start()``, on the same port, and
        drop the open (keep-alive) connections, as a server that goes down does."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @property
    def running(self) -> bool:
        return self._server is not None

    # --- serving -------------------------------------------------------------------------------

    def _handle(self, http: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(http.path)
        path = parts.path
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        length = int(http.headers.get("Content-Length") or 0)
        body = http.rfile.read(length) if length else b""
        kind, message_id, user, folder = _route(method, path)
        token = (http.headers.get("Authorization") or "").removeprefix("Bearer ")
        status, headers, payload = self._answer(kind, method, query, body, token, message_id,
                                                user, folder)  # fmt: skip
        with self._lock:
            carried = token if kind != "token" else ""
            self.requests.append(
                Request(method, kind, path, status, time.monotonic(), carried, message_id, query)
            )
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        with contextlib.suppress(OSError):  # the connection was dropped (stop()): answer lost
            self._reply(http, kind, status, headers, data)

    def _reply(
        self, http: BaseHTTPRequestHandler, kind: str, status: int, headers: dict[str, str],
        data: bytes,
    ) -> None:  # fmt: skip
        http.send_response(status)
        content_type = "message/rfc822" if kind == "value" and status == 200 else "application/json"
        http.send_header("Content-Type", content_type)
        http.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            http.send_header(name, value)
        http.end_headers()
        http.wfile.write(data)

    def _answer(
        self, kind: str, method: str, query: dict[str, str], body: bytes, token: str,
        message_id: str, user: str, folder: str,
    ) -> tuple[int, dict[str, str], Any]:  # fmt: skip
        with self._lock:
            if self.outage_status is not None:
                return self.outage_status, {}, _error("ServiceUnavailable", "Outage (fake).")
            throttles = self._throttles.get(kind)
            if throttles:
                retry_after = throttles.pop(0)
                return (
                    429,
                    {"Retry-After": retry_after},
                    _error("TooManyRequests", "Application is over its MailboxConcurrency limit."),
                )
        if kind == "token":
            return self._token(body)
        if kind == "other":
            return 400, {}, _error("BadRequest", f"Unsupported: {method}")
        with self._lock:
            expires = self.tokens.get(token)
        if expires is None or expires <= time.monotonic():
            return (
                401,
                {},
                _error(
                    "InvalidAuthenticationToken",
                    "Lifetime validation failed, the token is expired.",
                ),
            )
        if kind == "list":
            return self._list(user, folder, query)
        with self._lock:
            # Ids are immutable (Prefer: IdType="ImmutableId"): a deleted message, moved to
            # Deleted Items, keeps its id; deleting it there removes it for good.
            message = next((m for m in self.messages if m.id == message_id and m.user == user),
                           None)  # fmt: skip
            failing = self.failing.get((kind, message_id))
            hook = self.before_settle
        if message is None:
            return 404, {}, _error("ErrorItemNotFound", "The specified object was not found.")
        if failing:
            return failing, {}, _error("InternalServerError", "Could not read the item.")
        if kind == "value":
            return 200, {}, message.raw
        if hook is not None and (kind, message_id) not in self.witnessed:
            self.witnessed[(kind, message_id)] = hook(message_id)
        if kind == "patch":
            changes = json.loads(body or b"{}")
            with self._lock:
                if "isRead" in changes:
                    message.is_read = bool(changes["isRead"])
            return 200, {}, {"id": message.id, "isRead": message.is_read}
        with self._lock:  # delete: Exchange moves it to Deleted Items, or purges it from there
            if message.deleted:
                self.messages.remove(message)
            message.folder = "deleteditems"
        return 204, {}, b""

    def _token(self, body: bytes) -> tuple[int, dict[str, str], Any]:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        wrong = (
            form.get("grant_type") != "client_credentials"
            or form.get("client_id") != self.client_id
            or form.get("client_secret") != self.accepted_secret
            or form.get("scope") != f"{self.url}/.default"
        )
        if wrong:
            description = "AADSTS7000215: Invalid client secret provided."
            if self.echo_secret_in_errors:
                description += f" Received: {form.get('client_secret')}"
            return 401, {}, {"error": "invalid_client", "error_description": description}
        value = "eyJ0eXAiOiJKV1Qi." + secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[value] = time.monotonic() + self.token_lifetime
            reported = self.reported_expires_in
        expires_in = reported if reported is not None else int(self.token_lifetime)
        return 200, {}, {"token_type": "Bearer", "expires_in": expires_in,
                         "ext_expires_in": expires_in, "access_token": value}  # fmt: skip

    def _list(
        self, user: str, folder: str, query: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        if "isRead eq false" not in query.get("$filter", ""):
            return 400, {}, _error("BadRequest", "The poller must list unread messages only.")
        if query.get("$select") != "id":
            return 400, {}, _error("BadRequest", "The poller must select ids only.")
        top, skip = int(query.get("$top", "10")), int(query.get("$skip", "0"))
        with self._lock:
            unread = [m.id for m in self.messages
                      if m.user == user and m.folder == folder and not m.is_read
                      and not m.deleted]  # fmt: skip
            origin = self.next_link_origin or self.url
        page = unread[skip : skip + top]
        answer: dict[str, Any] = {"value": [{"id": i} for i in page]}
        if skip + top < len(unread):
            rest = "&".join(f"{quote(k, safe='$')}={quote(v, safe='')}"
                            for k, v in {**query, "$skip": str(skip + top)}.items())  # fmt: skip
            answer["@odata.nextLink"] = (
                f"{origin}/v1.0/users/{quote(user, safe='@')}/mailFolders/{folder}/messages?{rest}"
            )
        return 200, {}, answer


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _route(method: str, path: str) -> tuple[str, str, str, str]:
    """(kind, message id, user, folder) of a request path."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if method == "POST" and len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
        return "token", "", "", ""
    if len(parts) < 4 or parts[:2] != ["v1.0", "users"]:
        return "other", "", "", ""
    user = parts[2].lower()
    if method == "GET" and len(parts) == 6 and parts[3] == "mailFolders" and parts[5] == "messages":
        return "list", "", user, parts[4].lower()
    if parts[3] == "messages" and len(parts) == 6 and parts[5] == "$value" and method == "GET":
        return "value", parts[4], user, ""
    if parts[3] == "messages" and len(parts) == 5 and method in ("PATCH", "DELETE"):
        return method.lower(), parts[4], user, ""
    return "other", "", "", ""
