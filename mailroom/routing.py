"""Find the key in an inbound mail's headers and tell what kind of key it is (SPEC §2).

Pure functions over ``(name, value)`` header pairs (values already RFC 2047 decoded and
unfolded): no models, no database. The caller resolves a :class:`ParsedKey` to a project or a
sent notification.

Every regex here runs in linear time on hostile input: header values come from strangers, and a
quadratic ``Received`` regex was a real denial of service in GitLab (CVE-2022-2884,
``for <<<<…``). Repetitions are possessive (Python 3.11+) or bounded by a delimiter they cannot
consume, so a failed attempt never re-scans what it already read.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from servicedesk.config import KEY_PLACEHOLDER, MailboxConfig

Headers = Sequence[tuple[str, str]]

INCOMING_MAILBOX = "incoming_email"
SERVICE_DESK_MAILBOX = "service_desk_email"

# SPEC §2: first match wins, in this order. References holds our own Message-IDs, not addresses.
SEARCH_ORDER = (
    "To",
    "References",
    "Delivered-To",
    "X-Delivered-To",
    "Envelope-To",
    "X-Envelope-To",
    "Received",
    "Cc",
    "X-Original-To",
    "X-Forwarded-To",
)

# One token of an address list: a quoted string, a comment, an angle-addr, a separator or plain
# text. An unterminated quote, comment or bracket runs to the end of the value instead of failing,
# so no position is scanned twice.
_ADDRESS_LIST_TOKEN = re.compile(
    r"""
      "(?P<quoted>(?:[^"\\]|\\.)*+)"?
    | \((?:[^()\\]|\\.)*+\)?
    | <(?P<angle>[^<>]*+)>?
    | (?P<separator>[,;])
    | (?P<text>[^",;()<>]++)
    | .
    """,
    re.VERBOSE | re.DOTALL,
)
# "for <addr>" or "for addr" in a Received header (RFC 5321 §4.4). Possessive: "for <<" fails at
# once and the search moves on.
_RECEIVED_FOR = re.compile(r"(?<![\w.-])for\s++<?+(?P<address>[^\s<>;,()]++)", re.IGNORECASE)
# A Message-ID we put in References of every notification: <reply-<reply key>@any host>.
_MESSAGE_ID_TOKEN = re.compile(r"[^\s,<>]++")
_REPLY_MESSAGE_ID = re.compile(r"reply-(?P<key>[0-9a-f]{32})@[^@]+", re.IGNORECASE)

_REPLY_KEY = re.compile(r"[0-9a-f]{32}")
_UNSUBSCRIBE_KEY = re.compile(r"(?P<reply_key>[0-9a-f]{32})-unsubscribe")
_DEFAULT_KEY_END = "-issue-"
# full_path_slug: [a-z0-9-], leading and trailing '-' stripped (projects.models.slugify_path).
_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]*+(?<=[a-z0-9]))?")
_PROJECT_ID = re.compile(r"[1-9][0-9]{0,18}")  # a bigint; also keeps int() away from huge input
_ADDRESS_TOKEN = re.compile(r"[a-z0-9]{8,32}")
_CUSTOM_SUFFIX = re.compile(r"[a-z0-9_]+")  # projects.models.project_key_validator
_PATH_SEGMENT = re.compile(r"[a-z0-9_][a-z0-9_.-]*+")  # projects.models.path_validator, lowercased


@dataclass(frozen=True)
class RouteMatch:
    """Where a key was found: enough for routing and for the ledger's decision trace."""

    key: str  # the raw key as found, e.g. "acme-game-7-issue-", a 32-hex reply key, "acme/game"
    mailbox: str  # the mailbox whose template matched ("incoming_email" | "service_desk_email")
    header: str  # the header it came from, canonical spelling ("To", "References", …)
    address: str  # the address or Message-ID it was found in


@dataclass(frozen=True)
class ParsedKey:
    kind: Literal["reply", "unsubscribe", "default", "legacy", "custom"]
    reply_key: str = ""  # reply / unsubscribe
    project_slug: str = ""  # default / custom
    project_id: int | None = None  # default
    token: str = ""  # default with a regenerated address: "<slug>-<id>-<token>-issue-"
    full_path: str = ""  # legacy, lowercased: compare case-insensitively
    suffix: str = ""  # custom: the part after "<slug>-"


def find_key(headers: Headers, mailboxes: Iterable[MailboxConfig]) -> RouteMatch | None:
    """The first key in the headers, searched in SPEC §2 order, or None.

    Within one header name every occurrence is searched top to bottom (several Delivered-To and
    Received lines are normal), and within one value every address left to right. The first
    address that matches a mailbox template wins, whatever its key looks like: telling a good key
    from a bad one is :func:`parse_key`'s job, and "project not found" is a better answer to a
    garbled address than silently routing on a header further down.
    """
    templates = [
        (mailbox.name, _template_pattern(mailbox.address))
        for mailbox in mailboxes
        if KEY_PLACEHOLDER in mailbox.address
    ]
    if not templates:
        return None
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.strip().lower(), []).append(value)
    for header in SEARCH_ORDER:
        for value in values.get(header.lower(), ()):
            if header == "References":
                for message_id in _message_ids(value):
                    if key := reply_key_from_message_id(message_id):
                        # A reply key routes through either mailbox; no template was involved.
                        return RouteMatch(key, templates[0][0], header, message_id)
                continue
            if header == "Received":
                addresses = received_for_addresses(value)
            else:
                addresses = header_addresses(value)
            for address in addresses:
                if found := _match_templates(address, templates):
                    mailbox, key = found
                    return RouteMatch(key, mailbox, header, address)
    return None


def match_mailbox(address: str, mailboxes: Iterable[MailboxConfig]) -> tuple[str, str] | None:
    """(mailbox name, key) if ``address`` matches one of the mailbox templates, else None."""
    templates = [
        (mailbox.name, _template_pattern(mailbox.address))
        for mailbox in mailboxes
        if KEY_PLACEHOLDER in mailbox.address
    ]
    return _match_templates(address, templates)


def header_addresses(value: str) -> list[str]:
    """The addr-specs in an address-list header value, display names and comments dropped.

    Values arrive RFC 2047 decoded, so a display name may hold an unquoted comma ("Doe, John
    <j@x>"); that splits the name, never the address. Bare, space-separated addresses (some
    X-Forwarded-To) each count. A group ("team: a@x, b@y;") yields its members.
    """
    addresses: list[str] = []
    angle: str | None = None
    text: list[str] = []

    def close_item() -> None:
        if angle is not None:
            candidates = [angle.strip()]
        else:
            candidates = [word for word in "".join(text).split() if "@" in word]
        addresses.extend(address for address in candidates if address)

    for token in _ADDRESS_LIST_TOKEN.finditer(value):
        kind = token.lastgroup
        if kind == "separator":
            close_item()
            angle, text = None, []
        elif kind == "angle":
            angle = token["angle"]
        elif kind == "quoted":
            # A quoted local part ("incoming+key"@example.com) joins the text that follows it.
            text.append(token["quoted"].replace("\\", ""))
        elif kind == "text":
            _, colon, after = token["text"].rpartition(":")
            # "group-name:" starts a group; what came before the colon is a name, not an address.
            if colon:
                text = [after]
            else:
                text.append(token["text"])
    close_item()
    return addresses


def received_for_addresses(value: str) -> list[str]:
    """The recipient addresses of the ``for`` clauses in one Received header value."""
    return [match["address"] for match in _RECEIVED_FOR.finditer(value)]


def reply_key_from_message_id(message_id: str) -> str | None:
    """The lowercase reply key of one of our ``<reply-<key>@host>`` Message-IDs, else None."""
    match = _REPLY_MESSAGE_ID.fullmatch(message_id.strip().strip("<>"))
    return match["key"].lower() if match else None


def reply_keys_in_message_ids(value: str) -> list[str]:
    """Reply keys of our Message-IDs in a References / In-Reply-To / Message-ID value."""
    keys = (reply_key_from_message_id(message_id) for message_id in _message_ids(value))
    return [key for key in keys if key]


def parse_key(key: str, mailbox: str) -> ParsedKey | None:
    """What a key found in ``mailbox`` names (SPEC §2 table), or None if it names nothing.

    Keys compare case-insensitively and come back lowercased. Overlaps are settled in this
    order, each form's shape making the next impossible:

    1. 32 hex: a reply key. 32 hex + "-unsubscribe": an unsubscribe, even though it could also
       read as custom key "<32-hex slug>-unsubscribe"; a project whose path slugifies to exactly
       32 hex digits and whose suffix is "unsubscribe" cannot be reached through the alias.
    2. Ends with "-issue-": a default key, in either mailbox (see :func:`default_key_candidates`
       for the slug/id/token ambiguity). Never a custom key: a suffix cannot contain '-'.
    3. Contains "/": a legacy full path, in the incoming mailbox only.
    4. In the alias mailbox only: "<slug>-<suffix>" (see :func:`custom_key_candidates`).
    """
    key = key.strip().lower()
    if _REPLY_KEY.fullmatch(key):
        return ParsedKey(kind="reply", reply_key=key)
    if match := _UNSUBSCRIBE_KEY.fullmatch(key):
        return ParsedKey(kind="unsubscribe", reply_key=match["reply_key"])
    if key.endswith(_DEFAULT_KEY_END):
        candidates = default_key_candidates(key)
        return candidates[0] if candidates else None
    if "/" in key:
        return _legacy_key(key) if mailbox == INCOMING_MAILBOX else None
    if mailbox == SERVICE_DESK_MAILBOX:
        for slug, suffix in custom_key_candidates(key):
            return ParsedKey(kind="custom", project_slug=slug, suffix=suffix)
    return None


def default_key_candidates(key: str) -> list[ParsedKey]:
    """Every reading of a default key, the likelier first.

    "<slug>-<id>-issue-" and "<slug>-<id>-<token>-issue-" overlap because slugs contain digits
    and dashes and a token may be all digits: "acme-2024-12345678-issue-" is either project
    12345678 with slug "acme-2024", or project 2024 with slug "acme" and token "12345678". The
    token reading comes first: a token is all digits by chance now and then, a project id of
    eight or more digits (ten million projects) practically never. A caller that wants to be
    exact tries every candidate; at most one can match a real project's current key.
    """
    key = key.strip().lower()
    if not key.endswith(_DEFAULT_KEY_END):
        return []
    parts = key[: -len(_DEFAULT_KEY_END)].split("-")
    candidates = []
    if len(parts) >= 3 and _ADDRESS_TOKEN.fullmatch(parts[-1]) and _PROJECT_ID.fullmatch(parts[-2]):
        slug = "-".join(parts[:-2])
        if _SLUG.fullmatch(slug):
            candidates.append(
                ParsedKey(
                    kind="default", project_slug=slug, project_id=int(parts[-2]), token=parts[-1]
                )
            )
    if len(parts) >= 2 and _PROJECT_ID.fullmatch(parts[-1]):
        slug = "-".join(parts[:-1])
        if _SLUG.fullmatch(slug):
            candidates.append(
                ParsedKey(kind="default", project_slug=slug, project_id=int(parts[-1]))
            )
    return candidates


def custom_key_candidates(key: str) -> list[tuple[str, str]]:
    """Every split of an alias key into (slug, suffix) at a dash, leftmost dash first.

    Slugs contain dashes, so the split point is not marked. Since a suffix is ``[a-z0-9_]+`` and
    holds no dash, only the last dash can split a valid key today, and the list has at most one
    entry; it stays a list so that the caller need not know that.
    """
    key = key.strip().lower()
    candidates = []
    for position, char in enumerate(key):
        if char != "-":
            continue
        slug, suffix = key[:position], key[position + 1 :]
        if _CUSTOM_SUFFIX.fullmatch(suffix) and _SLUG.fullmatch(slug):
            candidates.append((slug, suffix))
    return candidates


def _legacy_key(key: str) -> ParsedKey | None:
    segments = key.split("/")
    if all(_PATH_SEGMENT.fullmatch(segment) for segment in segments):
        return ParsedKey(kind="legacy", full_path=key)
    return None


@functools.lru_cache(maxsize=16)
def _template_pattern(template: str) -> re.Pattern[str]:
    """The template as an anchored, case-insensitive pattern with the key as a named group.

    Unlike ``MailboxConfig.address_regex`` the key cannot span '@', whitespace, brackets or
    list punctuation, so one recipient can never swallow its neighbour.
    """
    local, _, domain = template.rpartition("@")
    before, _, after = local.partition(KEY_PLACEHOLDER)
    return re.compile(
        rf"{re.escape(before)}(?P<key>[^@\s<>\",;()]+){re.escape(after)}@{re.escape(domain)}",
        re.IGNORECASE,
    )


def _match_templates(
    address: str, templates: Sequence[tuple[str, re.Pattern[str]]]
) -> tuple[str, str] | None:
    address = address.strip().removeprefix("<").removesuffix(">").strip()
    for name, pattern in templates:
        if match := pattern.fullmatch(address):
            return name, match["key"]
    return None


def _message_ids(value: str) -> Iterator[str]:
    # Whitespace-separated as RFC 5322 says, or comma-joined as Outlook and iOS Mail send them.
    for token in _MESSAGE_ID_TOKEN.finditer(value):
        yield token.group()
