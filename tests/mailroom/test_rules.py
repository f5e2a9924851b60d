"""Rejection rules before routing (SPEC §3): auto-generated mail and delivery reports."""

from __future__ import annotations

import email
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from mailroom.rules import (
    MAX_REPORT_BYTES,
    MAX_REPORT_DEPTH,
    DeliveryReport,
    auto_generated_reason,
    delivery_report,
)
from servicedesk.config import MailboxConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mail"

INCOMING = MailboxConfig(name="incoming_email", enabled=True, address="incoming+%{key}@example.com")
ALIAS = MailboxConfig(name="service_desk_email", enabled=True, address="contact+%{key}@example.com")
MAILBOXES = (INCOMING, ALIAS)
REPLY_KEY = "3f2a9b1c4d5e6f708192a3b4c5d6e7f8"
OTHER_REPLY_KEY = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"

HUMAN = [
    ("From", "Jake <jake@customer.example>"),
    ("To", "incoming+acme-game-7-issue-@example.com"),
    ("Subject", "Printer on fire"),
]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# --- auto_generated_reason ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "content_type", "reason"),
    [
        ([("Auto-Submitted", "auto-replied")], "text/plain", "Auto-Submitted: auto-replied"),
        ([("Auto-Submitted", "auto-generated")], "text/plain", "Auto-Submitted: auto-generated"),
        (
            [("Auto-Submitted", "Auto-Replied; owner-email=jake@customer.example")],
            "text/plain",
            "Auto-Submitted: auto-replied",
        ),
        ([("auto-submitted", "auto-notified")], "text/plain", "Auto-Submitted: auto-notified"),
        ([("X-Autoreply", "yes")], "text/plain", "X-Autoreply: yes"),
        ([("X-Autoreply", "YES")], "text/plain", "X-Autoreply: yes"),
        ([("X-Autorespond", "Vacation")], "text/plain", "X-Autorespond"),
        ([("X-Autorespond", "")], "text/plain", "X-Autorespond"),
        ([("Precedence", "bulk")], "text/plain", "Precedence: bulk"),
        ([("Precedence", "junk")], "text/plain", "Precedence: junk"),
        ([("Precedence", "List")], "text/plain", "Precedence: list"),
        ([("Precedence", "auto_reply")], "text/plain", "Precedence: auto_reply"),
        ([("Return-Path", "<>")], "text/plain", "Return-Path: <>"),
        ([("Return-Path", " < > ")], "text/plain", "Return-Path: <>"),
        ([("From", "MAILER-DAEMON@mx.example.org")], "text/plain", "From: MAILER-DAEMON"),
        (
            [("From", "Mail Delivery System <Mailer-Daemon@mx.example.org>")],
            "text/plain",
            "From: Mailer-Daemon",
        ),
        ([("From", "MAILER-DAEMON")], "text/plain", "From: MAILER-DAEMON"),
        ([("From", "postmaster@example.org (Postmaster)")], "text/plain", "From: postmaster"),
        (
            [("From", "Jake <jake@customer.example>"), ("Sender", "postmaster@customer.example")],
            "text/plain",
            "Sender: postmaster",
        ),
        (
            [],
            "multipart/report; report-type=delivery-status; boundary=x",
            "Content-Type: multipart/report",
        ),
        ([], "Multipart/Report", "Content-Type: multipart/report"),
    ],
)
def test_auto_generated_mail_is_recognised_with_a_reason(headers, content_type, reason):
    assert auto_generated_reason([*HUMAN[1:], *headers], content_type=content_type) == reason


@pytest.mark.parametrize(
    "headers",
    [
        [("Auto-Submitted", "no")],
        [("Auto-Submitted", "No")],
        [("Auto-Submitted", "")],
        [("X-Autoreply", "no")],
        # We send it ourselves; Outlook copies it into people's replies.
        [("X-Auto-Response-Suppress", "All")],
        [("X-Auto-Response-Suppress", "DR, OOF, AutoReply")],
        [("Precedence", "first-class")],
        [("Precedence", "normal")],
        [("Return-Path", "<jake@customer.example>")],
        # Only the topmost Return-Path is the envelope sender of this delivery.
        [("Return-Path", "<jake@customer.example>"), ("Return-Path", "<>")],
        [("From", "postmaster-team@customer.example")],
        [("From", "Postmaster <jake@customer.example>")],
        [("From", "jake@mailer-daemon.example")],
        [("From", "")],
        [("Sender", "jake@customer.example")],
        [("X-MS-Has-Attach", "yes"), ("X-MS-Exchange-Organization-AuthAs", "Internal")],
        # Exchange stamps these on mail a team forwards to us with an inbox rule.
        [("X-MS-Exchange-Generated-Message-Source", "Mailbox Rules Agent")],
        [("X-MS-Exchange-Inbox-Rules-Loop", "kim@fabrikam.example")],
        # Mail through a list manager or newsletter tool is not written by a robot.
        [("List-Id", "<acme-users.lists.example>")],
        [("List-Unsubscribe", "<mailto:leave@lists.example>")],
    ],
)
def test_human_mail_is_kept(headers):
    assert auto_generated_reason([*HUMAN, *headers], content_type="text/plain") is None


@pytest.mark.parametrize(
    "content_type",
    ["text/plain; charset=utf-8", "multipart/mixed; boundary=x", "multipart/alternative", ""],
)
def test_ordinary_content_types_are_kept(content_type):
    assert auto_generated_reason(HUMAN, content_type=content_type) is None


# --- delivery_report: real-looking bounces ----------------------------------------------------


def test_postfix_dsn_names_our_notification_and_the_failed_recipient():
    report = delivery_report(fixture("routing_dsn_postfix.eml"), mailboxes=MAILBOXES)

    # Reply-To and References carry the same key: reported once.
    assert report == DeliveryReport(
        reply_keys=[REPLY_KEY], failed_recipients=["jake@customer.example"], permanent=True
    )


def test_exchange_ndr_reads_the_comma_joined_references_of_the_returned_message():
    report = delivery_report(fixture("routing_ndr_exchange.eml"), mailboxes=MAILBOXES)

    # Original-Recipient and Final-Recipient differ only in case: one recipient.
    assert report == DeliveryReport(
        reply_keys=[OTHER_REPLY_KEY], failed_recipients=["kim@fabrikam.example"], permanent=True
    )


def test_gmail_failure_reads_reply_to_from_the_returned_headers():
    report = delivery_report(fixture("routing_dsn_gmail.eml"), mailboxes=MAILBOXES)

    assert report == DeliveryReport(
        reply_keys=["c0ffee00c0ffee00c0ffee00c0ffee00"],
        failed_recipients=["finn@nowhere.example"],
        permanent=True,
    )


def test_delay_warning_is_not_permanent():
    report = delivery_report(fixture("routing_dsn_delayed.eml"), mailboxes=MAILBOXES)

    assert report == DeliveryReport(
        reply_keys=["5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e"],
        failed_recipients=["marceline@slow.example"],
        permanent=False,
    )


def test_non_standard_exim_bounce_with_the_original_attached():
    report = delivery_report(fixture("routing_bounce_exim.eml"), mailboxes=MAILBOXES)

    assert report == DeliveryReport(
        reply_keys=["abcdefabcdefabcdefabcdefabcdef01"],
        failed_recipients=["bmo@customer.example"],
        permanent=True,
    )


@pytest.mark.parametrize(
    "name",
    [
        "routing_dsn_postfix.eml",
        "routing_ndr_exchange.eml",
        "routing_dsn_gmail.eml",
        "routing_dsn_delayed.eml",
        "routing_bounce_exim.eml",
    ],
)
def test_every_bounce_fixture_is_also_dropped_as_auto_generated(name):
    import email
    import email.policy

    message = email.message_from_bytes(fixture(name), policy=email.policy.default)
    headers = [(key, str(value)) for key, value in message.items()]

    assert auto_generated_reason(headers, content_type=message["Content-Type"] or "") is not None


# --- delivery_report: built bounces, one variable at a time ----------------------------------


def notification(**headers: str) -> MIMEText:
    original = MIMEText("Mia (ACME) commented:\n\nFixed.\n")
    original["From"] = '"Support Bot" <support@example.com>'
    original["To"] = "jake@customer.example"
    original["Subject"] = "Re: Printer on fire (#7)"
    for name, value in headers.items():
        original[name.replace("_", "-")] = value
    return original


def dsn(
    original: MIMEText | None,
    *,
    action: str = "failed",
    status: str = "5.1.1",
    recipients: tuple[str, ...] = ("jake@customer.example",),
    headers_only: bool = False,
    status_type: str = "delivery-status",
) -> bytes:
    """A Postfix-style DSN; written out as text since email.mime cannot build delivery-status."""
    blocks = ["Reporting-MTA: dns; mail.example.com"]
    for recipient in recipients:
        fields = [f"Final-Recipient: rfc822; {recipient}", f"Status: {status}"]
        if action:
            fields.insert(1, f"Action: {action}")
        blocks.append("\n".join(fields))
    parts = [
        "Content-Type: text/plain\n\nYour message could not be delivered.\n",
        f"Content-Type: message/{status_type}\n\n" + "\n\n".join(blocks) + "\n",
    ]
    if original is not None and headers_only:
        headers = "".join(f"{name}: {value}\n" for name, value in original.items())
        parts.append(f"Content-Type: text/rfc822-headers\n\n{headers}")
    elif original is not None:
        parts.append(f"Content-Type: message/rfc822\n\n{original.as_string()}")
    body = "".join(f"--BOUNDARY\n{part}\n" for part in parts)
    return (
        "From: MAILER-DAEMON@mail.example.com (Mail Delivery System)\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"\n'
        f"\n{body}--BOUNDARY--\n"
    ).encode()


def test_reply_key_from_reply_to_alone():
    raw = dsn(notification(Reply_To=f"incoming+{REPLY_KEY}@example.com"))

    report = delivery_report(raw, mailboxes=MAILBOXES)

    assert report is not None
    assert report.reply_keys == [REPLY_KEY]


def test_reply_key_from_reply_to_on_the_alias_mailbox():
    raw = dsn(notification(Reply_To=f"Support <contact+{REPLY_KEY}@example.com>"))

    report = delivery_report(raw, mailboxes=MAILBOXES)

    assert report is not None
    assert report.reply_keys == [REPLY_KEY]


@pytest.mark.parametrize("header", ["References", "In-Reply-To", "Message-ID"])
def test_reply_key_from_our_message_ids_alone(header):
    raw = dsn(notification(**{header: f"<issue_7@example.com> <reply-{REPLY_KEY}@desk.example>"}))

    report = delivery_report(raw, mailboxes=MAILBOXES)

    assert report is not None
    assert report.reply_keys == [REPLY_KEY]


def test_two_notifications_keys_are_all_returned_in_order():
    raw = dsn(
        notification(
            Reply_To=f"incoming+{REPLY_KEY}@example.com",
            References=f"<reply-{OTHER_REPLY_KEY}@example.com>",
        )
    )

    report = delivery_report(raw, mailboxes=MAILBOXES)

    assert report is not None
    assert report.reply_keys == [REPLY_KEY, OTHER_REPLY_KEY]


@pytest.mark.parametrize(
    "reply_to",
    [
        "incoming+acme-game-7-issue-@example.com",  # a project key, not a notification
        f"incoming+{REPLY_KEY}-unsubscribe@example.com",
        f"someone+{REPLY_KEY}@example.com",  # not our template
    ],
)
def test_addresses_that_are_not_our_reply_address_give_no_key(reply_to):
    raw = dsn(notification(Reply_To=reply_to, References="<issue_7@example.com>"))

    report = delivery_report(raw, mailboxes=MAILBOXES)

    assert report is not None
    assert report.reply_keys == []


def test_returned_headers_only_are_enough():
    raw = dsn(notification(Reply_To=f"incoming+{REPLY_KEY}@example.com"), headers_only=True)

    report = delivery_report(raw, mailboxes=MAILBOXES)

    assert report is not None
    assert report.reply_keys == [REPLY_KEY]


def test_dsn_without_the_original_still_reports_its_recipients():
    report = delivery_report(dsn(None), mailboxes=MAILBOXES)

    assert report == DeliveryReport(
        reply_keys=[], failed_recipients=["jake@customer.example"], permanent=True
    )


def test_utf8_delivery_status_is_read_too():
    raw = dsn(None, recipients=("jøran@customer.example",), status_type="global-delivery-status")

    report = delivery_report(raw, mailboxes=MAILBOXES)

    assert report is not None
    assert report.failed_recipients == ["jøran@customer.example"]
    assert report.permanent is True


@pytest.mark.parametrize(
    ("action", "status", "permanent"),
    [
        ("failed", "5.1.1", True),
        ("failed", "5.2.2 (mailbox full)", True),
        ("", "5.1.1", True),
        ("delayed", "4.4.1", False),
        ("", "4.4.7", False),
        # Gave up after only temporary errors: not proof that the address is dead.
        ("failed", "4.4.7", False),
    ],
)
def test_permanence_follows_action_and_status(action, status, permanent):
    raw = dsn(
        notification(Reply_To=f"incoming+{REPLY_KEY}@example.com"), action=action, status=status
    )

    report = delivery_report(raw, mailboxes=MAILBOXES)

    assert report is not None
    assert report.permanent is permanent
    assert report.failed_recipients == ["jake@customer.example"]


def test_delivered_and_relayed_recipients_are_not_failed_recipients():
    raw = dsn(None, action="relayed", status="2.0.0", recipients=("jake@customer.example",))

    report = delivery_report(raw, mailboxes=MAILBOXES)

    assert report is not None
    assert report.failed_recipients == []


def test_mixed_report_lists_only_the_permanent_failures():
    raw = dsn(None, recipients=("gone@customer.example",)).replace(
        b"Status: 5.1.1\n",
        b"Status: 5.1.1\n\n"
        b"Final-Recipient: rfc822; slow@customer.example\nAction: delayed\nStatus: 4.4.1\n",
    )

    result = delivery_report(raw, mailboxes=MAILBOXES)

    assert result == DeliveryReport(failed_recipients=["gone@customer.example"], permanent=True)


# --- delivery_report: not a bounce ------------------------------------------------------------


def test_ordinary_mail_is_not_a_delivery_report():
    message = MIMEText("Hello, my printer is on fire.\n")
    message["From"] = "jake@customer.example"
    message["References"] = f"<reply-{REPLY_KEY}@example.com>"

    assert delivery_report(message.as_bytes(), mailboxes=MAILBOXES) is None


def test_customer_forwarding_our_notification_as_attachment_is_not_a_bounce():
    forward = MIMEMultipart()
    forward["From"] = "Jake <jake@customer.example>"
    forward["Subject"] = "Fwd: Re: Printer on fire (#7)"
    forward.attach(MIMEText("See below, still broken.\n"))
    forward.attach(MIMEMessage(notification(Reply_To=f"incoming+{REPLY_KEY}@example.com")))

    assert delivery_report(forward.as_bytes(), mailboxes=MAILBOXES) is None


def test_customer_forwarding_a_bounce_they_got_is_not_a_bounce():
    import email

    bounce = email.message_from_bytes(fixture("routing_dsn_postfix.eml"))
    forward = MIMEMultipart()
    forward["From"] = "Jake <jake@customer.example>"
    forward["Subject"] = "Fwd: Undelivered Mail Returned to Sender"
    forward.attach(MIMEText("Why did I get this?\n"))
    forward.attach(MIMEMessage(bounce))

    assert delivery_report(forward.as_bytes(), mailboxes=MAILBOXES) is None


def test_read_receipt_is_not_a_delivery_report():
    # RFC 8098 MDN, as Thunderbird sends it.
    original = notification(Reply_To=f"incoming+{REPLY_KEY}@example.com")
    receipt = (
        "From: Jake <jake@customer.example>\n"
        "Subject: Return Receipt (displayed) - Re: Printer on fire (#7)\n"
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="R"\n\n'
        "--R\nContent-Type: text/plain\n\nThe message was displayed.\n"
        "--R\nContent-Type: message/disposition-notification\n\n"
        "Reporting-UA: customer.example; Thunderbird\n"
        "Final-Recipient: rfc822;jake@customer.example\n"
        "Disposition: manual-action/MDN-sent-manually; displayed\n"
        f"--R\nContent-Type: text/rfc822-headers\n\n{original.as_string()}\n--R--\n"
    )

    assert delivery_report(receipt.encode(), mailboxes=MAILBOXES) is None


def test_auto_reply_with_the_original_attached_is_not_a_bounce():
    # Without a DSN part only a bounce sender (MAILER-DAEMON, postmaster, X-Failed-Recipients)
    # makes a mail a bounce.
    reply = MIMEMultipart()
    reply["From"] = "Jake <jake@customer.example>"
    reply["Auto-Submitted"] = "auto-replied"
    reply["Subject"] = "Out of office"
    reply.attach(MIMEText("I am away.\n"))
    reply.attach(MIMEMessage(notification(Reply_To=f"incoming+{REPLY_KEY}@example.com")))

    assert delivery_report(reply.as_bytes(), mailboxes=MAILBOXES) is None


def deeply_nested(depth: int) -> bytes:
    lines = []
    for level in range(depth):
        lines += [f'Content-Type: multipart/mixed; boundary="b{level}"', "", f"--b{level}"]
    return "\n".join(["From: MAILER-DAEMON@x.example", *lines, "", "x"]).encode()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe" * 1000,
        b"Content-Type: multipart/report; report-type=delivery-status\n\nno boundary at all",
        fixture("routing_dsn_postfix.eml")[:1500],
        deeply_nested(5000),
        b"From: MAILER-DAEMON\nContent-Type: multipart/mixed; boundary=x\n\n--x\n"
        b"Content-Type: message/rfc822\n\n\xff\xfe\x00garbage\n--x--\n",
    ],
    ids=["empty", "binary", "no-boundary", "truncated", "nested", "garbage-original"],
)
def test_garbage_never_raises(raw):
    result = delivery_report(raw, mailboxes=MAILBOXES)

    assert result is None or isinstance(result, DeliveryReport)


# --- delivery_report: bounded ----------------------------------------------------------------


def test_a_delivery_status_part_from_a_person_is_not_a_bounce():
    # Only a multipart/report (RFC 3464) or mail from a bounce sender is read as one.
    mixed = MIMEMultipart()
    mixed["From"] = "Jake <jake@customer.example>"
    mixed.attach(MIMEText("Look what I got.\n"))
    report = email.message_from_bytes(
        dsn(notification(Reply_To=f"incoming+{REPLY_KEY}@example.com"))
    )
    for part in report.get_payload():
        mixed.attach(part)

    assert delivery_report(mixed.as_bytes(), mailboxes=MAILBOXES) is None


def test_a_report_nested_deeper_than_reports_are_is_not_read():
    inner = dsn(notification(Reply_To=f"incoming+{REPLY_KEY}@example.com"))
    head, _, body = inner.partition(b"\n\n")
    nest = b"".join(
        b'--n%d\nContent-Type: multipart/mixed; boundary="n%d"\n\n' % (level, level + 1)
        for level in range(MAX_REPORT_DEPTH + 2)
    )
    raw = (
        head.replace(b'boundary="BOUNDARY"', b'boundary="n0"')
        + b"\n\n"
        + nest
        + b"--n%d\n" % (MAX_REPORT_DEPTH + 2)
        + b'Content-Type: multipart/report; boundary="BOUNDARY"\n\n'
        + body
    )

    assert delivery_report(raw, mailboxes=MAILBOXES) is None


def test_a_report_is_read_from_its_first_part_even_with_a_huge_original():
    original = notification(Reply_To=f"incoming+{REPLY_KEY}@example.com")
    raw = dsn(original).replace(b"Fixed.\n", b"Fixed.\n" + (b"y" * 76 + b"\n") * 40_000)

    assert len(raw) > 3 * MAX_REPORT_BYTES
    assert delivery_report(raw, mailboxes=MAILBOXES) == DeliveryReport(
        reply_keys=[REPLY_KEY], failed_recipients=["jake@customer.example"], permanent=True
    )


def test_mail_that_mentions_delivery_status_is_not_screened_as_a_bounce():
    # The worker searched the raw email for "delivery-status", then parsed all of it as a
    # report: 848 KB nested 480 deep held a thread for a minute.
    from mailroom.handlers import _may_be_bounce
    from mailroom.parsing import parse_email

    nest = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level)
        for level in range(480)
    )
    raw = (
        b"From: Jake <jake@customer.example>\r\nSubject: My order\r\n"
        + nest
        + b"Content-Type: text/plain\r\n\r\nWhat is the delivery-status of my order?\r\n"
        + b"x\r\n" * 250_000
    )

    assert not _may_be_bounce(parse_email(raw))
    assert delivery_report(raw, mailboxes=MAILBOXES) is None


@pytest.mark.parametrize(
    "name",
    [
        "routing_dsn_postfix.eml",
        "routing_ndr_exchange.eml",
        "routing_dsn_gmail.eml",
        "routing_dsn_delayed.eml",
        "routing_bounce_exim.eml",
    ],
)
def test_every_bounce_fixture_passes_the_screening(name):
    from mailroom.handlers import _may_be_bounce
    from mailroom.parsing import parse_email

    raw = fixture(name)
    assert _may_be_bounce(parse_email(raw))
