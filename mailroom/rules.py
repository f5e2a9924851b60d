"""Rejection rules checked before routing (SPEC §3): auto-generated mail and delivery reports.

Auto-generated mail is dropped silently and never answered, so that we never talk to another
robot in a loop. Delivery reports about our own notifications mark the participant bouncing.

Deliberately *not* rules:

- ``X-Auto-Response-Suppress``: we send it ourselves (SPEC §7); it asks the recipient's client not
  to auto-reply, and Outlook copies it into ordinary human replies.
- ``List-Id`` / ``List-Unsubscribe``: GitLab does not drop on them either. They mark mail that
  passed through a list manager or a newsletter tool, not mail written by a robot; a customer
  writing through a Google Group or their company's shared alias carries them, and that customer
  expects an issue. Lists that set ``Precedence: list`` (Mailman, most others) are dropped by that
  rule.
"""

from __future__ import annotations

import email
import email.header
import email.message
import email.parser
import email.policy
import email.utils
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from celery.exceptions import SoftTimeLimitExceeded

from servicedesk.config import MailboxConfig

from .parsing import mime_shape
from .routing import (
    Headers,
    header_addresses,
    match_mailbox,
    parse_key,
    reply_keys_in_message_ids,
)

logger = logging.getLogger(__name__)

_ROBOT_LOCAL_PARTS = frozenset({"mailer-daemon", "postmaster"})
_AUTO_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply", "auto-reply"})
_YES = frozenset({"yes", "true", "1"})

_STATUS_PARTS = frozenset({"message/delivery-status", "message/global-delivery-status"})
_ORIGINAL_PARTS = frozenset(
    {
        "message/rfc822",
        "message/global",  # RFC 6532 (SMTPUTF8)
        "text/rfc822-headers",  # RFC 6522: "return only the headers"
        "message/rfc822-headers",
        "message/global-headers",
    }
)
# A delivery report is small and comes first: the explanation, the delivery-status fields, then
# the returned message (often whole, attachments and all, of which we need only the headers).
# Only this much of an email is read as one...
MAX_REPORT_BYTES = 256 * 1024
# ...and only this deep: a report nests two or three levels (the returned message's own parts).
# The stdlib parser checks every line against every open boundary and recurses per level.
MAX_REPORT_DEPTH = 10
_DSN_STATUS = re.compile(r"\b(?P<class>[245])\.\d{1,3}\.\d{1,3}\b")
# Only for reports without machine-readable fields: Exim's "Warning: message … delayed", qmail…
_DELAY_SUBJECT = re.compile(r"delay|warning|temporar", re.IGNORECASE)


@dataclass(frozen=True)
class DeliveryReport:
    """What a bounce tells us about one of our notifications."""

    reply_keys: list[str] = field(default_factory=list)  # of our notifications it returns
    # The recipients the report is about: the permanently failed ones, or when nothing failed
    # permanently, the delayed ones.
    failed_recipients: list[str] = field(default_factory=list)
    permanent: bool = False


def auto_generated_reason(headers: Headers, *, content_type: str) -> str | None:
    """Why this mail was written by a robot (a short reason for the ledger), or None.

    ``content_type`` is the top-level Content-Type value; parameters are allowed.
    """
    by_name: dict[str, list[str]] = {}
    for name, value in headers:
        by_name.setdefault(name.strip().lower(), []).append(value.strip())

    def values(name: str) -> list[str]:
        return by_name.get(name.lower(), [])

    for value in values("Auto-Submitted"):
        # RFC 3834 §5: "no" or a keyword, optionally with parameters. An empty value is
        # malformed; we keep the mail rather than silently drop a human's message.
        keyword = value.split(";", 1)[0].strip().lower()
        if keyword and keyword != "no":
            return f"Auto-Submitted: {keyword[:64]}"
    if any(value.lower() in _YES for value in values("X-Autoreply")):
        return "X-Autoreply: yes"
    if values("X-Autorespond"):
        return "X-Autorespond"
    for value in values("Precedence"):
        if value.lower() in _AUTO_PRECEDENCE:
            return f"Precedence: {value.lower()}"
    # The topmost Return-Path is the envelope sender of the final delivery; RFC 5321 §4.5.5 sends
    # bounces and other notifications with a null one.
    return_paths = values("Return-Path")
    if return_paths and re.fullmatch(r"<\s*>", return_paths[0]):
        return "Return-Path: <>"
    for name in ("From", "Sender"):
        if robot := _robot_sender(values(name)):
            return f"{name}: {robot}"
    if content_type.split(";", 1)[0].strip().lower() == "multipart/report":
        return "Content-Type: multipart/report"
    # Not Exchange's X-MS-Exchange-Generated-Message-Source / -Inbox-Rules-Loop: Exchange puts
    # them on mail a team forwards to us with an inbox rule, a normal Service Desk set-up.
    return None


def delivery_report(raw: bytes, *, mailboxes: Iterable[MailboxConfig]) -> DeliveryReport | None:
    """Read a bounce: which of our notifications came back, for whom, and for good or not.

    None if the message is not a delivery report: neither a DSN (RFC 3464: a
    ``multipart/report`` with a ``message/delivery-status`` part or
    ``report-type=delivery-status``) nor a non-standard bounce (from MAILER-DAEMON/postmaster or
    with ``X-Failed-Recipients``, the original attached as ``message/rfc822`` or
    ``text/rfc822-headers``). Only a ``multipart/report`` or mail from a bounce sender is read
    at all, and only its first MAX_REPORT_BYTES, nested at most MAX_REPORT_DEPTH deep. Never
    raises: bounces are the most malformed mail there is.
    """
    try:
        return _delivery_report(raw, list(mailboxes))
    except SoftTimeLimitExceeded:  # the task's time is up: the ledger records it
        raise
    except Exception as exc:  # garbage in must not fail the pipeline; the caller records it
        logger.warning("unreadable delivery report: %s", type(exc).__name__)
        return None


def _delivery_report(raw: bytes, mailboxes: list[MailboxConfig]) -> DeliveryReport | None:
    data = raw[:MAX_REPORT_BYTES]
    head = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data, headersonly=True)
    if head.get_content_type() != "multipart/report" and not _is_bounce_sender(head):
        return None
    depth, _work = mime_shape(data, depth_limit=MAX_REPORT_DEPTH)
    if depth > MAX_REPORT_DEPTH:
        logger.info("delivery report nested deeper than %d levels; not read", MAX_REPORT_DEPTH)
        return None
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    parts = list(_report_parts(message))
    status_parts = [part for part in parts if part.get_content_type() in _STATUS_PARTS]
    original_parts = [part for part in parts if part.get_content_type() in _ORIGINAL_PARTS]
    report_type = email.utils.collapse_rfc2231_value(message.get_param("report-type") or "")
    report_type = report_type.strip().lower()
    is_dsn = bool(status_parts) or (
        message.get_content_type() == "multipart/report" and report_type == "delivery-status"
    )
    if not is_dsn and not (original_parts and _is_bounce_sender(message)):
        return None

    failed: list[str] = []
    delayed: list[str] = []
    for block in _recipient_blocks(status_parts):
        recipients = [
            address
            for name in ("Final-Recipient", "Original-Recipient")
            for address in _dsn_addresses(_header_text(block, name))
        ]
        action = _header_text(block, "Action").strip().lower()
        status = _DSN_STATUS.search(_header_text(block, "Status"))
        status_class = status["class"] if status else ""
        # "failed" after only temporary errors (4.x.x: the queue lifetime ran out) does not prove
        # the address dead; marking it bouncing would stop mail to a customer whose server was
        # merely down for a few days.
        if (action == "failed" and status_class != "4") or (not action and status_class == "5"):
            failed.extend(recipients)
        elif action in ("failed", "delayed") or status_class == "4":
            delayed.extend(recipients)
    if failed or delayed:
        permanent = bool(failed)
        recipients = failed or delayed
    else:
        subject = _header_text(message, "Subject")
        permanent = not _DELAY_SUBJECT.search(subject)
        recipients = [
            address
            for value in _header_texts(message, "X-Failed-Recipients")
            for address in header_addresses(value)
        ]

    reply_keys = [key for part in original_parts for key in _reply_keys(part, mailboxes)]
    return DeliveryReport(
        reply_keys=_unique(reply_keys),
        failed_recipients=_unique(recipients),
        permanent=permanent,
    )


def _robot_sender(values: list[str]) -> str | None:
    for value in values:
        # A bare "MAILER-DAEMON" (no domain) is common in bounces, so do not insist on an '@'.
        for address in header_addresses(value) or value.split():
            local_part = address.rpartition("@")[0] or address
            if local_part.strip('"').lower() in _ROBOT_LOCAL_PARTS:
                return local_part
    return None


def _is_bounce_sender(message: email.message.Message) -> bool:
    if message.get_all("X-Failed-Recipients"):
        return True
    senders = [_header_text(message, name) for name in ("From", "Sender")]
    return _robot_sender([sender for sender in senders if sender]) is not None


def _report_parts(message: email.message.Message) -> Iterator[email.message.Message]:
    """Every part of the report's own MIME tree, not descending into attached messages.

    A customer who forwards a bounce as an attachment wrote a mail, not a bounce.
    """
    yield message
    if message.is_multipart() and message.get_content_maintype() == "multipart":
        for part in message.get_payload():
            if isinstance(part, email.message.Message):
                yield from _report_parts(part)


def _recipient_blocks(status_parts: list[email.message.Message]) -> Iterator[email.message.Message]:
    for part in status_parts:
        payload = part.get_payload()
        if part.get_content_type() == "message/delivery-status" and isinstance(payload, list):
            blocks = [block for block in payload if isinstance(block, email.message.Message)]
        elif first := _embedded_message(part):
            # message/global-delivery-status: the parser read it as one embedded message, the
            # first block its headers and the other blocks its body, UTF-8 (RFC 6533).
            blocks = [first, *_parse_blocks(_body_bytes(first).decode("utf-8", "replace"))]
        else:
            # An encoded (base64/quoted-printable) delivery-status: the parser left it as text.
            blocks = _parse_blocks(_body_bytes(part).decode("utf-8", "replace"))
        # The first block holds the per-message fields (Reporting-MTA…), the rest one recipient
        # each; some MTAs omit the first, so look at the fields, not the position.
        for block in blocks:
            if any(block.get(name) for name in ("Final-Recipient", "Original-Recipient")):
                yield block


def _embedded_message(part: email.message.Message) -> email.message.Message | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], email.message.Message):
        return payload[0]
    return None


def _body_bytes(part: email.message.Message) -> bytes:
    body = part.get_payload(decode=True)  # the bytes as received, transfer encoding undone
    return body if isinstance(body, bytes) else b""


def _parse_blocks(text: str) -> list[email.message.Message]:
    return [
        email.message_from_string(chunk.strip() + "\n", policy=email.policy.compat32)
        for chunk in re.split(r"\r?\n[ \t]*\r?\n", text)
        if chunk.strip()
    ]


def _dsn_addresses(value: str) -> list[str]:
    # "rfc822; jake@example.org" (RFC 3464 §2.3.2); also "utf-8;" (RFC 6533) and "<…>" variants.
    _, _, address = value.rpartition(";")
    address = address.strip().removeprefix("<").removesuffix(">").strip()
    return [address] if "@" in address else []


def _reply_keys(part: email.message.Message, mailboxes: list[MailboxConfig]) -> list[str]:
    """Reply keys of our notification in a returned original message or its headers."""
    if part.get_content_maintype() == "text":  # text/rfc822-headers
        original = email.message_from_bytes(_body_bytes(part), policy=email.policy.compat32)
    elif embedded := _embedded_message(part):
        original = embedded
    else:
        return []
    keys: list[str] = []
    for name in ("Reply-To", "From"):
        for value in _header_texts(original, name):
            for address in header_addresses(value):
                found = match_mailbox(address, mailboxes)
                parsed = parse_key(found[1], found[0]) if found else None
                if parsed and parsed.kind == "reply":
                    keys.append(parsed.reply_key)
    for name in ("References", "In-Reply-To", "Message-ID"):
        for value in _header_texts(original, name):
            keys.extend(reply_keys_in_message_ids(value))
    return keys


def _header_text(message: email.message.Message, name: str) -> str:
    texts = _header_texts(message, name)
    return texts[0] if texts else ""


def _header_texts(message: email.message.Message, name: str) -> list[str]:
    return [_decode_header(value) for value in message.get_all(name) or []]


def _decode_header(value: str | email.header.Header) -> str:
    """compat32 hands 8-bit values over as Header objects (or str with surrogate escapes);
    those are UTF-8 in practice (RFC 6532), so read them as such."""
    text = []
    for chunk, charset in email.header.decode_header(value):
        if isinstance(chunk, bytes):
            encoding = charset if charset and charset != "unknown-8bit" else "utf-8"
            try:
                text.append(chunk.decode(encoding, "replace"))
            except LookupError:  # an unknown charset name
                text.append(chunk.decode("utf-8", "replace"))
        else:
            text.append(_unescape(chunk))
    return "".join(text)


def _unescape(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _unique(items: list[str]) -> list[str]:
    seen: set[str] = set()
    unique = []
    for item in items:
        if item.lower() not in seen:
            seen.add(item.lower())
            unique.append(item)
    return unique
