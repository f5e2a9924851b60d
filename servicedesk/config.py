"""The admin's mailbox configuration: a TOML file plus environment overrides (SPEC §9).

    [incoming_email]
    enabled = true
    address = "incoming+%{key}@example.com"
    user = "incoming@example.com"
    password_file = "/run/secrets/imap_password"
    host = "imap.example.com"
    ssl = true

Keys are the ones GitLab uses. Any key can be overridden by an environment variable named
``SERVICEDESK_<SECTION>_<KEY>`` (``SERVICEDESK_INCOMING_EMAIL_PASSWORD``); ``inbox_options``
keys by ``SERVICEDESK_<SECTION>_INBOX_OPTIONS_<KEY>``. Validation names the offending key, so a
wrong config fails at start with a message that says what to fix.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

SECTIONS = ("incoming_email", "service_desk_email")
KEY_PLACEHOLDER = "%{key}"
# "none": the address is ours but nothing polls it; mail arrives by an MTA pipe
# (manage.py receive_email), the SMTP/LMTP intake (manage.py smtpd) or an ESP webhook.
INBOX_METHODS = ("imap", "microsoft_graph", "none")

# key -> (type, default). None default means "no default".
_MAILBOX_KEYS: dict[str, tuple[type, Any]] = {
    "enabled": (bool, False),
    "address": (str, None),
    "user": (str, None),
    "password": (str, None),
    "password_file": (str, None),
    "host": (str, None),
    "port": (int, None),
    "ssl": (bool, False),
    "start_tls": (bool, False),
    "mailbox": (str, "inbox"),
    "idle_timeout": (int, 60),
    "delete_after_delivery": (bool, True),
    "expunge_deleted": (bool, False),
    "inbox_method": (str, "imap"),
    "inbox_options": (dict, None),
}
_GRAPH_KEYS: dict[str, tuple[type, Any]] = {
    "tenant_id": (str, None),
    "client_id": (str, None),
    "client_secret": (str, None),
    "client_secret_file": (str, None),
    "poll_interval": (int, 60),
    "azure_ad_endpoint": (str, "https://login.microsoftonline.com"),
    "graph_endpoint": (str, "https://graph.microsoft.com"),
}
_ADDRESS_RE = re.compile(r"^[^@\s<>]*%\{key\}[^@\s<>]*@[^@\s<>]+\.[^@\s<>]+$")


@dataclass(frozen=True)
class GraphOptions:
    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    poll_interval: int = 60
    azure_ad_endpoint: str = "https://login.microsoftonline.com"
    graph_endpoint: str = "https://graph.microsoft.com"


@dataclass(frozen=True)
class MailboxConfig:
    """One configured mailbox. ``password`` never appears in a repr or a log line."""

    name: str
    enabled: bool
    address: str
    user: str = ""
    password: str = field(default="", repr=False)
    host: str = ""
    port: int = 143
    ssl: bool = False
    start_tls: bool = False
    mailbox: str = "inbox"
    idle_timeout: int = 60
    delete_after_delivery: bool = True
    expunge_deleted: bool = False
    inbox_method: str = "imap"
    graph: GraphOptions | None = None

    @property
    def polled(self) -> bool:
        return self.enabled and self.inbox_method != "none"

    def address_for(self, key: str) -> str:
        return self.address.replace(KEY_PLACEHOLDER, key)

    @property
    def base_address(self) -> str:
        """The mailbox itself, without a key: ``incoming+%{key}@x`` → ``incoming@x``."""
        return self.address.replace(f"+{KEY_PLACEHOLDER}", "").replace(KEY_PLACEHOLDER, "")

    @property
    def address_regex(self) -> re.Pattern[str]:
        """Match a recipient against the template, ``%{key}`` as the wildcard (SPEC §2)."""
        local, _, domain = self.address.partition("@")
        before, _, after = local.partition(KEY_PLACEHOLDER)
        pattern = rf"^<?{re.escape(before)}(?P<key>.+){re.escape(after)}@{re.escape(domain)}>?$"
        return re.compile(pattern, re.IGNORECASE)


def _fail(source: str, where: str, message: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{source}: {where}: {message}")


def _coerce(source: str, where: str, kind: type, value: Any) -> Any:
    """Check a TOML value's type; environment values arrive as strings and are converted."""
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        if kind is bool:
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise _fail(source, where, f"must be true or false, not {value!r}")
        if kind is int:
            try:
                return int(text)
            except ValueError:
                raise _fail(source, where, f"must be an integer, not {value!r}") from None
    if kind is int and isinstance(value, bool):
        raise _fail(source, where, f"must be an integer, not {value!r}")
    if not isinstance(value, kind):
        raise _fail(source, where, f"must be a {kind.__name__}, not {type(value).__name__}")
    return value


def _read_secret_file(source: str, where: str, path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise _fail(source, where, f"cannot read {path!r}: {exc.strerror}") from None


def _env_overrides(section: str, environ: os._Environ[str] | dict[str, str]) -> dict[str, Any]:
    prefix = f"SERVICEDESK_{section.upper()}_"
    options_prefix = f"{prefix}INBOX_OPTIONS_"
    values: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for name, value in environ.items():
        if name.startswith(options_prefix):
            options[name[len(options_prefix) :].lower()] = value
        elif name.startswith(prefix):
            values[name[len(prefix) :].lower()] = value
    if options:
        values["inbox_options"] = options
    return values


def _parse_graph(source: str, section: str, raw: dict[str, Any]) -> GraphOptions:
    where = f"[{section}] inbox_options"
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _GRAPH_KEYS:
            raise _fail(source, f"{where}.{key}", "unknown key")
        values[key] = _coerce(source, f"{where}.{key}", _GRAPH_KEYS[key][0], value)
    secret_file = values.pop("client_secret_file", None)
    if secret_file and "client_secret" not in values:
        values["client_secret"] = _read_secret_file(
            source, f"{where}.client_secret_file", secret_file
        )
    for required in ("tenant_id", "client_id", "client_secret"):
        if not values.get(required):
            raise _fail(source, f"{where}.{required}", "required for inbox_method microsoft_graph")
    if values.get("poll_interval", 60) < 1:
        raise _fail(source, f"{where}.poll_interval", "must be at least 1 second")
    for key in ("azure_ad_endpoint", "graph_endpoint"):
        if key in values:
            values[key] = _endpoint(source, f"{where}.{key}", values[key])
    return GraphOptions(**values)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _endpoint(source: str, where: str, value: str) -> str:
    """An endpoint is a bare origin (scheme, host, port). It receives the client secret or the
    access token, so it must be https — plain http only to this machine (a local proxy, the
    test suite's fake Graph server), where the secret never crosses a network."""
    parts = urlsplit(value.strip())
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise _fail(source, where, f"must be an https:// URL, e.g. https://graph.microsoft.com; "
                                   f"got {value!r}")  # fmt: skip
    if parts.scheme == "http" and not _is_loopback(host):
        raise _fail(source, where, "must use https:// (http:// only for 127.0.0.1 or localhost)")
    if parts.username or parts.password or parts.query or parts.fragment or parts.path.strip("/"):
        raise _fail(source, where, f"must be a bare origin such as https://graph.microsoft.com, "
                                   f"without a path; got {value!r}")  # fmt: skip
    return f"{parts.scheme}://{parts.netloc}"


def _parse_mailbox(source: str, section: str, raw: dict[str, Any]) -> MailboxConfig:
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _MAILBOX_KEYS:
            raise _fail(source, f"[{section}] {key}", "unknown key")
        if key == "inbox_options":
            values[key] = value
            continue
        values[key] = _coerce(source, f"[{section}] {key}", _MAILBOX_KEYS[key][0], value)
    for key, (_, default) in _MAILBOX_KEYS.items():
        if default is not None:
            values.setdefault(key, default)

    def where(key: str) -> str:
        return f"[{section}] {key}"

    enabled = values["enabled"]
    address = values.get("address", "")
    if enabled and not address:
        raise _fail(source, where("address"), "required when the mailbox is enabled")
    if address and not _ADDRESS_RE.match(address):
        raise _fail(
            source,
            where("address"),
            f"must be an email address whose local part holds {KEY_PLACEHOLDER}, "
            f"e.g. incoming+{KEY_PLACEHOLDER}@example.com; got {address!r}",
        )
    if values["inbox_method"] not in INBOX_METHODS:
        raise _fail(source, where("inbox_method"), f"must be one of {', '.join(INBOX_METHODS)}")

    password_file = values.pop("password_file", None)
    if password_file and "password" not in values:
        values["password"] = _read_secret_file(source, where("password_file"), password_file)

    graph = None
    options = values.pop("inbox_options", None)
    if options is not None and not isinstance(options, dict):
        raise _fail(source, where("inbox_options"), "must be a table")
    if values["inbox_method"] == "microsoft_graph":
        if enabled or options:
            graph = _parse_graph(source, section, options or {})
        if enabled and not values.get("user"):
            raise _fail(
                source, where("user"),
                "required for inbox_method microsoft_graph: the mailbox's address or user id",
            )  # fmt: skip
    elif enabled and values["inbox_method"] == "imap":
        for required in ("host", "user", "password"):
            if not values.get(required):
                raise _fail(source, where(required), "required for inbox_method imap")
    if values["ssl"] and values["start_tls"]:
        raise _fail(source, where("start_tls"), "cannot be used together with ssl = true")
    port = values.get("port")
    if port is None:
        port = 993 if values["ssl"] else 143
    if not 1 <= port <= 65535:
        raise _fail(source, where("port"), f"must be between 1 and 65535, not {port}")
    if values["idle_timeout"] < 1:
        raise _fail(source, where("idle_timeout"), "must be at least 1 second")
    values["port"] = port
    values.setdefault("address", "")
    return MailboxConfig(name=section, graph=graph, **values)


def _mailbox_identity(mailbox: MailboxConfig) -> tuple[object, ...]:
    """Where a mailbox's mail is read from: two pollers on one folder would race each other."""
    server: tuple[object, ...] = (mailbox.host, mailbox.port)
    if mailbox.graph is not None:
        server = (mailbox.graph.graph_endpoint,)
    return (*server, mailbox.user.lower(), mailbox.mailbox.lower())


def load_mailboxes(
    path: str | None, environ: os._Environ[str] | dict[str, str] | None = None
) -> dict[str, MailboxConfig]:
    """Parse and validate the mailbox sections; return the enabled and disabled mailboxes."""
    environ = os.environ if environ is None else environ
    source = path or "environment"
    data: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ImproperlyConfigured(
                f"SERVICEDESK_CONFIG names {path!r}, which does not exist."
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ImproperlyConfigured(f"{path}: not valid TOML: {exc}") from None
    for section in data:
        if section not in SECTIONS:
            raise _fail(source, f"[{section}]", f"unknown section (known: {', '.join(SECTIONS)})")

    mailboxes: dict[str, MailboxConfig] = {}
    for section in SECTIONS:
        raw = data.get(section, {})
        if not isinstance(raw, dict):
            raise _fail(source, f"[{section}]", "must be a table")
        raw = dict(raw)
        overrides = _env_overrides(section, environ)
        if "inbox_options" in overrides:
            raw["inbox_options"] = {
                **raw.get("inbox_options", {}),
                **overrides.pop("inbox_options"),
            }
        raw.update(overrides)
        if raw:
            mailboxes[section] = _parse_mailbox(source, section, raw)

    enabled = [m for m in mailboxes.values() if m.enabled]
    if len(enabled) == 2:
        first, second = enabled
        if first.address.lower() == second.address.lower():
            raise _fail(source, "[service_desk_email] address", "must differ from incoming_email's")
        if first.inbox_method == second.inbox_method != "none" and (
            _mailbox_identity(first) == _mailbox_identity(second)
        ):
            raise _fail(
                source,
                "[service_desk_email] mailbox",
                "must be a different mailbox from incoming_email's (same host, user and mailbox)",
            )
    return mailboxes
