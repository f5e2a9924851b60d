"""Inbound MIME parsing: real and crafted mail in, exact decoded text out, never an exception.

Fixtures in tests/fixtures/mail/: ``gitlab_*.eml`` are copies of GitLab's Service Desk fixtures
(MIT, via shared/corpus/gitlab/); the others are crafted after real clients' output.
"""

from __future__ import annotations

import base64
import html as html_module
import re
from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from issues.markdown import render_markdown
from mailroom.parsing import (
    _LIBRARY_MAX_CHARS,
    _LIBRARY_MAX_LINE,
    MAX_HTML_CHARS,
    MAX_HTML_DEPTH,
    MAX_HTML_PARTS,
    MAX_HTML_TEXT_CHARS,
    MalformedEmail,
    ParseBudget,
    ParsedEmail,
    _skim,
    _without_noise,
    clean_filename,
    decode_bytes,
    escape_markdown_backslashes,
    html_to_markdown,
    mime_shape,
    parse_email,
    rewrite_cid_references,
    split_reply,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "mail"


def fixture(name: str) -> ParsedEmail:
    return parse_email((FIXTURES / name).read_bytes())


def corpus(name: str) -> ParsedEmail:
    return fixture(f"gitlab_{name}")


def mail(body: bytes, *, content_type: bytes = b"text/plain", headers: bytes = b"") -> bytes:
    return (
        b"From: Jake <jake@adventuretime.ooo>\r\nTo: support@example.com\r\nSubject: test\r\n"
        + headers
        + b"MIME-Version: 1.0\r\nContent-Type: "
        + content_type
        + b"\r\n\r\n"
        + body
    )


# --- The GitLab corpus ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "subject", "from_address"),
    [
        ("service_desk.eml", "The message subject! @all", "jake@adventuretime.ooo"),
        ("service_desk_all_quoted.eml", "The message subject! @all", "jake@adventuretime.ooo"),
        ("service_desk_forwarded.eml", "The message subject! @all", "jake.g@adventuretime.ooo"),
        ("service_desk_legacy.eml", "The message subject! @all", "jake@adventuretime.ooo"),
        ("service_desk_reply.eml", "The message subject! @all", "alan@adventuretime.ooo"),
        (
            "service_desk_reference_headers.eml",
            "Re: Insert hilarious subject line here",
            "jake@example.com",
        ),
        (
            "service_desk_custom_email_address_verification.eml",
            "Verify custom email address custom-support-email@example.com for Flight",
            "custom-support-email@example.com",
        ),
        (
            "service_desk_reply_to_and_from.eml",
            "The message subject! @all",
            "finn@adventuretime.ooo",
        ),
    ],
)
def test_gitlab_corpus_parses_with_subject_and_sender(
    name: str, subject: str, from_address: str
) -> None:
    parsed = corpus(name)
    assert parsed.subject == subject
    assert parsed.from_address == from_address


def test_gitlab_new_issue_mail_has_ids_recipients_and_body_kept_verbatim() -> None:
    parsed = corpus("service_desk.eml")
    assert (
        parsed.message_id == "<CADkmRc+rNGAGGbV2iE5p918UVy4UyJqVcXRO2=otppgzduJSg@mail.gmail.com>"
    )
    assert parsed.from_name == "Jake the Dog"
    assert parsed.to == ["incoming+email-test-project_id-issue-@appmail.adventuretime.ooo"]
    assert parsed.cc == ["cc@example.com", "kk@example.org"]
    assert parsed.content_type == "text/plain"
    # Plain text is Markdown as it is: nothing escaped, slash commands left for later layers.
    assert parsed.body_text == (
        "Service desk stuff!\n\n```\na = b\n```\n\n/label ~label1\n/assign @user1\n/close"
    )
    assert parsed.attachments == []
    assert parsed.body_html is None


def test_gitlab_reply_names_the_first_mail_in_in_reply_to() -> None:
    parsed = corpus("service_desk_reply.eml")
    assert parsed.in_reply_to == [
        "<CADkmRc+rNGAGGbV2iE5p918UVy4UyJqVcXRO2=otppgzduJSg@mail.gmail.com>"
    ]
    assert parsed.references == []


def test_gitlab_shift_jis_reply_decodes_to_japanese() -> None:
    parsed = corpus("service_desk_reply_illegal_utf8.eml")
    assert parsed.body_text == (
        "Service desk reply!\nピーター・ジョーンズ\n\n/label ~label2\nピーター・ジョーンズ\n"
        "(encoded with `Shift_JIS` not UTF-8 for the purposes of testing)"
    )


@pytest.mark.parametrize(
    ("name", "reply_to"),
    [
        ("service_desk_reply_to_and_from.eml", "marceline@adventuretime.ooo"),
        ("service_desk_reply_to_sender_and_from.eml", "hooman@adventuretime.ooo"),
    ],
)
def test_gitlab_from_reply_to_and_sender_stay_apart(name: str, reply_to: str) -> None:
    parsed = corpus(name)
    assert parsed.from_address == "finn@adventuretime.ooo"
    assert parsed.from_name == "Finn the Human"
    assert parsed.reply_to == reply_to
    assert parsed.sender == "jake@adventuretime.ooo"


def test_gitlab_folded_references_are_all_found() -> None:
    parsed = corpus("service_desk_reference_headers.eml")
    assert parsed.references == [
        "<topic/35@some.other.server.example.com>",
        "<abc123@discourse-app.mail>",
    ]
    assert parsed.content_type == "multipart/alternative"
    # The text/plain alternative is blank, so the HTML one is the text.
    assert parsed.body_text == (
        "This message has unhelpful References headers with no key, and no key in the To headers"
        " either."
    )


def test_gitlab_all_quoted_body_is_kept_whole_by_split_reply() -> None:
    body = corpus("service_desk_all_quoted.eml").body_text
    assert body == (
        "> This is an empty quote\n> someone did forward this email without\n"
        "> adding any new content."
    )
    assert split_reply(body) == (body, "")


# --- Headers ----------------------------------------------------------------------------------


def test_headers_keep_every_field_in_order_with_names_as_written() -> None:
    parsed = fixture("ios_mail_comma_joined_references.eml")
    assert [name for name, _value in parsed.headers] == [
        "From",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Mime-Version",
        "Subject",
        "Date",
        "Message-Id",
        "References",
        "In-Reply-To",
        "To",
        "X-Mailer",
    ]
    # Unfolded: the continuation line is joined, not lost.
    assert dict(parsed.headers)["References"] == (
        "<issue_42@servicedesk.example.com>,<issue_42_note_7@servicedesk.example.com>,"
        " <issue_42_note_9@servicedesk.example.com>"
    )


def test_header_lookup_ignores_case_and_header_all_keeps_order() -> None:
    parsed = parse_email(
        b"Received: by one\r\nFrom: a@example.com\r\nreceived: by two\r\nRECEIVED: by three\r\n"
        b"\r\nbody\r\n"
    )
    assert parsed.header("RECEIVED") == "by one"
    assert parsed.header_all("Received") == ["by one", "by two", "by three"]
    assert parsed.header("X-Missing") is None
    assert parsed.header_all("X-Missing") == []


def test_comma_joined_references_from_ios_are_split() -> None:
    parsed = fixture("ios_mail_comma_joined_references.eml")
    assert parsed.references == [
        "<issue_42@servicedesk.example.com>",
        "<issue_42_note_7@servicedesk.example.com>",
        "<issue_42_note_9@servicedesk.example.com>",
    ]
    assert parsed.in_reply_to == ["<issue_42_note_9@servicedesk.example.com>"]
    assert parsed.message_id == "<7A1C0E55-22B1-4B0C-9E0B-3F2A1D9C8B7E@adventuretime.ooo>"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"<abc@host>", "<abc@host>"),
        (b"  <abc@host>  (comment)", "<abc@host>"),
        (b"abc@host", "<abc@host>"),
        (b"", None),
        (b"   ", None),
    ],
)
def test_message_id_is_normalised_with_angle_brackets(value: bytes, expected: str | None) -> None:
    parsed = parse_email(b"From: a@example.com\r\nMessage-ID: " + value + b"\r\n\r\nbody")
    assert parsed.message_id == expected


def test_missing_message_id_is_none() -> None:
    assert parse_email(b"From: a@example.com\r\n\r\nbody").message_id is None


def test_in_reply_to_with_a_trailing_comment_and_bare_ids() -> None:
    parsed = parse_email(
        b'From: a@example.com\r\nIn-Reply-To: <one@host> (Jake\'s message of "Mon, 10 Jun")\r\n'
        b"References: two@host three@host\r\n\r\nbody"
    )
    assert parsed.in_reply_to == ["<one@host>"]
    assert parsed.references == ["<two@host>", "<three@host>"]


def test_raw_8bit_headers_are_read_as_utf8_or_windows_1252() -> None:
    parsed = fixture("raw_8bit_headers.eml")
    assert parsed.subject == "Größe der Datei überschritten"
    assert parsed.header("X-Legacy-Note") == "Café crème"  # cp1252 bytes, not valid UTF-8
    assert parsed.from_name == "Jürgen Groß"
    assert parsed.from_address == "juergen@example.org"
    assert parsed.to == ["support+acme-game@example.com", "zoe@example.org"]
    # The domain is lowercased, the local part keeps its case (RFC 5321 §2.4).
    assert parsed.cc == ["UNAL@example.org"]
    assert parsed.body_text == "Die Datei ist zu groß."


def test_encoded_display_name_with_a_comma_stays_one_address() -> None:
    parsed = parse_email(
        b"From: =?utf-8?Q?M=C3=BCller=2C_Ren=C3=A9e?= <renee@example.de>\r\n"
        b"To: =?utf-8?B?S2ltLCBNaW4tanVu?= <minjun@example.kr>, b@example.org\r\n\r\nbody"
    )
    assert parsed.from_name == "Müller, Renée"
    assert parsed.from_address == "renee@example.de"
    assert parsed.addresses("to") == [("Kim, Min-jun", "minjun@example.kr"), ("", "b@example.org")]


def test_quoted_and_commented_addresses_use_the_full_parser() -> None:
    parsed = parse_email(
        b'From: "Doe, John" <john@example.com>\r\nCc: jake@example.com (Jake), '
        b"undisclosed-recipients:;\r\n\r\nbody"
    )
    assert parsed.from_name == "Doe, John"
    assert parsed.from_address == "john@example.com"
    assert parsed.cc == ["jake@example.com"]


@pytest.mark.parametrize("value", [b"", b"not an address", b"<>", b"Jake <jake>", b"@example.com"])
def test_from_without_a_valid_address_is_none(value: bytes) -> None:
    parsed = parse_email(b"From: " + value + b"\r\nSubject: x\r\n\r\nbody")
    assert parsed.from_address is None
    assert parsed.from_name == ""


def test_subject_is_decoded_and_whitespace_collapsed() -> None:
    parsed = parse_email(
        b"From: a@example.com\r\nSubject: =?utf-8?Q?Caf=C3=A9?=\r\n =?utf-8?Q?_cr=C3=A8me?=\r\n"
        b"\tand   more\r\n\r\nbody"
    )
    assert parsed.subject == "Café crème and more"


def test_missing_subject_is_empty_string() -> None:
    assert parse_email(b"From: a@example.com\r\n\r\nbody").subject == ""


def test_encoded_words_splitting_a_multibyte_character_are_joined() -> None:
    # "日本" in UTF-8 is e6 97 a5 e6 9c ac; a mailer cut the word after the fourth byte.
    parsed = parse_email(
        b"From: a@example.com\r\nSubject: =?UTF-8?B?5pel5g==?= =?UTF-8?B?nKw=?= test\r\n\r\nx"
    )
    assert parsed.subject == "日本 test"


def test_encoded_words_in_legacy_charsets_decode() -> None:
    parsed = fixture("shift_jis_backslash_path.eml")
    assert parsed.subject == "パスの問題"  # Shift_JIS, base64
    assert parsed.from_name == "山田 太郎"  # ISO-2022-JP, base64


def test_encoded_word_with_an_unknown_charset_still_decodes() -> None:
    parsed = parse_email(b"From: a@example.com\r\nSubject: =?x-bogus?Q?Caf=C3=A9?=\r\n\r\nx")
    assert parsed.subject == "Café"


def test_date_is_parsed_or_none() -> None:
    parsed = corpus("service_desk.eml")
    assert parsed.date is not None
    assert parsed.date.isoformat() == "2013-06-13T17:03:48-04:00"
    assert parse_email(b"From: a@example.com\r\nDate: yesterday\r\n\r\nx").date is None


def test_reading_headers_does_not_parse_the_body() -> None:
    parsed = fixture("outlook_html_cid_image_and_pdf.eml")
    assert parsed.subject == "Logo looks wrong"
    assert parsed.from_address == "marceline@adventuretime.ooo"
    assert parsed.content_type == "multipart/related"
    assert parsed.headers
    assert "_body_message" not in vars(parsed)
    assert parsed.body_text
    assert "_body_message" in vars(parsed)


# --- Bodies -----------------------------------------------------------------------------------


def test_multipart_alternative_prefers_plain_text_and_keeps_the_html() -> None:
    parsed = fixture("gmail_reply_multipart_alternative.eml")
    assert parsed.body_text.startswith("It still fails after the update — same error.\n\nOn Mon,")
    assert "**" not in parsed.body_text  # the HTML's <b> did not leak in
    assert parsed.body_html is not None
    assert parsed.body_html.startswith('<div dir="ltr">It still fails after the update <b>—</b>')


def test_html_only_mail_becomes_markdown() -> None:
    parsed = fixture("outlook_html_only_rich.eml")
    assert parsed.subject == "Problème avec la facture n° 4711"
    assert parsed.from_name == "Renée Müller"
    assert parsed.from_address == "Renee.Mueller@contoso.com"
    assert parsed.body_text == (
        "Hallo,\n\n"
        "die Rechnung ist **leider falsch** und *viel zu hoch*. Details stehen im "
        "[Kundenportal](https://portal.contoso.com/invoices/4711).\n\n"
        "- Position 1 fehlt\n- Position 2 doppelt\n\n"
        "| Artikel | Preis |\n| --- | --- |\n| Lizenz | 120 € |\n\n"
        "> Bitte prüfen Sie das.\n\n"
        "![Contoso Logo](https://www.contoso.com/logo.png)"
    )
    # Neither the <title>, the <style> nor Outlook's conditional XML leaks into the text.
    assert "Invoice" not in parsed.body_text
    assert "MsoNormal" not in parsed.body_text


def test_outlook_downlevel_conditionals_around_list_bullets_are_dropped() -> None:
    html = (
        b"<html><body><p class=MsoListParagraph><![if !supportLists]><span>1.<span>&nbsp;"
        b"</span></span><![endif]>First<o:p></o:p></p><p>Second <![endi broken</p></body></html>"
    )
    parsed = parse_email(mail(html, content_type=b"text/html; charset=us-ascii"))
    assert "supportLists" not in parsed.body_text
    assert "endif" not in parsed.body_text
    assert parsed.body_text.startswith("1. First")


def test_blank_plain_alternative_falls_back_to_html() -> None:
    raw = mail(
        b"--b\r\nContent-Type: text/plain\r\n\r\n  \r\n--b\r\nContent-Type: text/html\r\n\r\n"
        b"<p>Only <em>here</em></p>\r\n--b--\r\n",
        content_type=b'multipart/alternative; boundary="b"',
    )
    assert parse_email(raw).body_text == "Only *here*"


def test_text_parts_around_an_inline_image_are_joined() -> None:
    raw = mail(
        b"--b\r\nContent-Type: text/plain\r\n\r\nBefore the image.\r\n"
        b"--b\r\nContent-Type: image/png\r\nContent-Disposition: inline; filename=a.png\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nAfter the image.\r\n--b--\r\n",
        content_type=b'multipart/mixed; boundary="b"',
    )
    parsed = parse_email(raw)
    assert parsed.body_text == "Before the image.\n\nAfter the image."
    assert [(a.filename, a.inline, a.content) for a in parsed.attachments] == [
        ("a.png", True, b"\x89PNG\r\n\x1a\n")
    ]


def test_format_flowed_text_is_unwrapped() -> None:
    parsed = fixture("thunderbird_rfc2231_filenames.eml")
    assert parsed.body_text == (
        "Bonjour,\n\n"
        "voici les tarifs demandés, ils sont valables jusqu'à la fin du mois prochain pour "
        "toutes les licences.\n\nGaëlle"
    )


def test_format_flowed_keeps_quote_depth_and_signature_delimiter() -> None:
    body = b"Yes \r\nplease.\r\n> quoted \r\n> line\r\n-- \r\nJake\r\n"
    parsed = parse_email(mail(body, content_type=b"text/plain; format=flowed; delsp=no"))
    assert parsed.body_text == "Yes please.\n> quoted line\n-- \nJake"


def test_cid_image_in_html_is_an_inline_attachment_and_is_rewritten() -> None:
    parsed = fixture("outlook_html_cid_image_and_pdf.eml")
    assert parsed.body_text == (
        "See the logo:\n\n![logo](cid:image001.png@01DAB7F1.5E3C2A70)\n\nThanks"
    )
    image, pdf = parsed.attachments
    assert (image.filename, image.content_type, image.content_id, image.inline) == (
        "image001.png",
        "image/png",
        "image001.png@01DAB7F1.5E3C2A70",
        True,
    )
    assert image.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert (pdf.filename, pdf.content_type, pdf.content_id, pdf.inline) == (
        "invoice.pdf",
        "application/pdf",
        None,
        False,
    )
    assert pdf.content.startswith(b"%PDF-1.4")
    rewritten = rewrite_cid_references(
        parsed.body_text, {"image001.png@01DAB7F1.5E3C2A70": "/uploads/7/image001.png"}
    )
    assert rewritten == "See the logo:\n\n![logo](/uploads/7/image001.png)\n\nThanks"


def test_apple_mail_related_image_is_inline_when_plain_text_wins() -> None:
    parsed = fixture("apple_mail_inline_cid_image.eml")
    assert parsed.body_text == (
        "The game crashes when I open the map. Screenshot:\n\n[image: crash.png]\n\nFinn"
    )
    assert parsed.body_html is not None
    assert 'src="cid:A1B2C3D4-0000-4E5F-9A8B-123456789ABC@home"' in parsed.body_html
    (image,) = parsed.attachments
    assert image.filename == "crash.png"
    assert image.content_id == "A1B2C3D4-0000-4E5F-9A8B-123456789ABC@home"
    assert image.inline is True


def test_image_referenced_by_cid_is_inline_even_without_disposition() -> None:
    raw = mail(
        b'--b\r\nContent-Type: text/html\r\n\r\n<img src="cid:logo@x">\r\n'
        b"--b\r\nContent-Type: image/gif\r\nContent-ID: <logo@x>\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nR0lGODlh\r\n--b--\r\n",
        content_type=b'multipart/related; boundary="b"',
    )
    (image,) = parse_email(raw).attachments
    assert (image.filename, image.inline, image.content) == ("attachment-1.gif", True, b"GIF89a")


def test_rewrite_cid_references_leaves_unknown_ids_and_other_links() -> None:
    markdown = '![a](cid:one@x) ![b](<cid:two%40x> "title") [c](cid:unknown@x) [d](https://cid:x)'
    assert rewrite_cid_references(markdown, {"<one@x>": "/u/1", "TWO@X": "/u/2"}) == (
        '![a](/u/1) ![b](/u/2 "title") [c](cid:unknown@x) [d](https://cid:x)'
    )
    assert rewrite_cid_references("no images", {"one@x": "/u/1"}) == "no images"


def test_calendar_alternative_becomes_an_ics_attachment() -> None:
    parsed = fixture("outlook_meeting_invite_calendar.eml")
    assert parsed.body_text == "Let's talk about the onboarding."
    (invite,) = parsed.attachments
    assert (invite.filename, invite.content_type, invite.inline) == (
        "attachment-1.ics",
        "text/calendar",
        False,
    )
    assert invite.content.startswith(b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\n")


def test_forwarded_message_is_an_eml_attachment_named_after_its_subject() -> None:
    parsed = fixture("forwarded_as_attachment_rfc822.eml")
    assert parsed.body_text == "The key below does not work, see the forwarded mail."
    (forwarded,) = parsed.attachments
    assert forwarded.filename == "Licence key für you.eml"
    assert forwarded.content_type == "message/rfc822"
    inner = parse_email(forwarded.content)
    assert inner.message_id == "<original-123@candykingdom.ooo>"
    assert inner.from_address == "pb@candykingdom.ooo"
    assert inner.body_text == "Your key is ABCD-1234. Grüße!"


# --- Attachment names -------------------------------------------------------------------------


def test_rfc2231_filenames_with_charset_and_continuations() -> None:
    parsed = fixture("thunderbird_rfc2231_filenames.eml")
    assert parsed.subject == "Les tarifs en €"
    assert [a.filename for a in parsed.attachments] == [
        "€ rates.pdf",
        "Übersicht der Prämien und Staffelpreise für 2024.pdf",
    ]
    assert all(a.content.startswith(b"%PDF-1.4") for a in parsed.attachments)


def test_rfc2047_filenames_from_outlook_and_directories_stripped() -> None:
    parsed = fixture("outlook_rfc2047_attachment_names.eml")
    assert parsed.subject == "견적 요청"  # ks_c_5601-1987 → cp949
    assert parsed.from_name == "Kim, Min-jun"
    assert parsed.body_text == "안녕하세요. 견적서를 보내드립니다."
    assert [(a.filename, a.content_type) for a in parsed.attachments] == [
        ("견적서 최종.pdf", "application/pdf"),
        ("passwd", "text/plain"),  # filename="../../etc/passwd"
        ("attachment-3.bin", "application/octet-stream"),  # no name at all
    ]
    assert parsed.attachments[1].content == b"root:x:0:0:root:/root:/bin/bash\n"
    assert parsed.attachments[2].content == b"\x00\x01\x02\x03\x04\x05"


def test_raw_utf8_filename_in_the_header() -> None:
    raw = mail(
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n"
        b"--b\r\nContent-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="Gr\xc3\xbc\xc3\x9fe \xe2\x82\xac.pdf"\r\n'
        b"\r\n%PDF\r\n--b--\r\n",
        content_type=b'multipart/mixed; boundary="b"',
    )
    (attachment,) = parse_email(raw).attachments
    assert attachment.filename == "Grüße €.pdf"


def test_plain_and_rfc2231_filename_together_prefer_rfc2231() -> None:
    raw = mail(
        b"--b\r\nContent-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="EUR rates.pdf"; '
        b"filename*=UTF-8''%E2%82%AC%20rates.pdf\r\n\r\n%PDF\r\n--b--\r\n",
        content_type=b'multipart/mixed; boundary="b"',
    )
    (attachment,) = parse_email(raw).attachments
    assert attachment.filename == "€ rates.pdf"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\jake\\Desktop\\report.pdf", "report.pdf"),
        ("evil\u202egpj.exe", "evilgpj.exe"),  # right-to-left override, a classic spoof
        ("tab\tand\nnewline\x00.txt", "tabandnewline.txt"),
        ("..", "attachment-4.pdf"),
        ("   ", "attachment-4.pdf"),
        (None, "attachment-4.pdf"),
        ("trailing dots. . .", "trailing dots"),
        ("U\u0308bersicht.pdf", "\u00dcbersicht.pdf"),  # macOS decomposed → NFC
    ],
)
def test_clean_filename(name: str | None, expected: str) -> None:
    assert clean_filename(name, content_type="application/pdf", index=4) == expected


def test_long_filename_is_cut_to_255_bytes_keeping_the_extension() -> None:
    name = "ü" * 300 + ".pdf"
    cleaned = clean_filename(name, content_type="application/pdf", index=1)
    assert cleaned == "ü" * 125 + ".pdf"
    assert len(cleaned.encode()) == 254  # 125 two-byte characters fit, half a character does not


# --- Charsets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("charset", "encoding", "text"),
    [
        (b"iso-8859-2", "iso8859_2", "Zażółć gęślą jaźń"),
        (b"ISO-8859-15", "iso8859_15", "Prix : 12 €, œuvre"),
        (b"windows-1250", "cp1250", "Příliš žluťoučký kůň"),
        (b"windows-1251", "cp1251", "Привет, мир"),
        (b"KOI8-R", "koi8_r", "Привет, мир"),
        (b"iso-8859-7", "iso8859_7", "Καλημέρα κόσμε"),
        (b"windows-1256", "cp1256", "مرحبا بالعالم"),
        (b"iso-8859-8-i", "iso8859_8", "שלום עולם"),
        # NEC and Microsoft extensions (①, full-width tilde) only cp932 has; ソ and 表 end in 0x5C.
        (b"Shift_JIS", "cp932", "①テスト\uff5eソ表"),
        (b"EUC-JP", "euc_jp", "日本語のテキスト"),
        (b"ISO-2022-JP", "iso2022_jp", "日本語のテキスト"),
        (b"gb2312", "gbk", "测试邮件\uff0c镕"),  # 镕 is GBK, not GB2312
        (b"GBK", "gbk", "简体中文"),
        (b"big5", "cp950", "繁體中文測試"),
        (b"EUC-KR", "cp949", "똠방각하 테스트"),  # 똠 is only in cp949
        (b"ks_c_5601-1987", "cp949", "안녕하세요"),
        (b"x-mac-roman", "mac_roman", "Café ™"),
        (b"UTF-7", "utf_7", "Hi Mom -☺-! 日本"),
        (b'"utf-8"', "utf_8", "quoted label ✓"),
        (b"utf8", "utf_8", "no dash ✓"),
        (b"windows-874", "cp874", "สวัสดี"),
    ],
)
def test_declared_charset_decodes(charset: bytes, encoding: str, text: str) -> None:
    raw = mail(
        text.encode(encoding),
        content_type=b"text/plain; charset=" + charset,
        headers=b"Content-Transfer-Encoding: 8bit\r\n",
    )
    assert parse_email(raw).body_text == text


def test_iso_8859_1_label_reads_windows_1252_quotes_and_euro() -> None:
    text = "\u201cQuoted\u201d \u2013 12 \u20ac"
    raw = mail(text.encode("cp1252"), content_type=b"text/plain; charset=iso-8859-1")
    assert parse_email(raw).body_text == text


def test_utf8_labelled_as_latin1_is_read_as_utf8() -> None:
    raw = mail("Grüße aus Köln".encode(), content_type=b"text/plain; charset=iso-8859-1")
    assert parse_email(raw).body_text == "Grüße aus Köln"


@pytest.mark.parametrize(
    "charset", [b"unknown-8bit", b"x-unknown", b"utf-8-bogus", b"iso-8859-99", b"base64", b""]
)
def test_unknown_or_unusable_charset_label_falls_back_to_utf8(charset: bytes) -> None:
    raw = mail("Grüße, 日本".encode(), content_type=b"text/plain; charset=" + charset)
    assert parse_email(raw).body_text == "Grüße, 日本"


def test_missing_charset_on_latin1_bytes() -> None:
    parsed = fixture("latin1_8bit_no_charset.eml")
    assert parsed.subject == "Café crème"  # raw 8-bit header, not UTF-8: windows-1252
    assert parsed.from_name == "René"
    assert parsed.body_text == "Merci, ça marche très bien. À bientôt !\nLe prix est de 12 €."


def test_missing_charset_on_koi8_text_is_guessed() -> None:
    text = "Привет, как дела? Я хотел бы узнать статус моего заказа номер 12345."
    assert decode_bytes(text.encode("koi8_r")) == text


def test_bytes_invalid_in_the_declared_charset_are_decoded_anyway() -> None:
    # Declared UTF-8, written in windows-1252 by a misconfigured form mailer.
    raw = mail("Réponse reçue".encode("cp1252"), content_type=b"text/plain; charset=utf-8")
    assert parse_email(raw).body_text == "Réponse reçue"
    # Declared US-ASCII, but the bytes are UTF-8.
    raw = mail("naïve ✓".encode(), content_type=b"text/plain; charset=us-ascii")
    assert parse_email(raw).body_text == "naïve ✓"


def test_shift_jis_backslashes_and_0x5c_trail_bytes_round_trip() -> None:
    parsed = fixture("shift_jis_backslash_path.eml")
    assert parsed.body_text == (
        "パスは C:\\Users\\テスト\\ソフト\\表.txt です。\n~/config も確認してください。"
    )


def test_decode_bytes_never_raises_on_garbage() -> None:
    garbage = bytes(range(256)) * 4
    for charset in (None, "utf-8", "shift_jis", "iso-2022-jp", "utf-7", "x-nonsense"):
        text = decode_bytes(garbage, charset)
        assert isinstance(text, str)
        assert "\x00" not in text


# --- Transfer encodings and broken MIME -------------------------------------------------------


def test_truncated_base64_keeps_what_was_sent() -> None:
    encoded = base64.b64encode("Grüße aus Köln, alles gut".encode())[:-3]
    raw = mail(
        encoded,
        content_type=b"text/plain; charset=utf-8",
        headers=b"Content-Transfer-Encoding: base64\r\n",
    )
    assert parse_email(raw).body_text == "Grüße aus Köln, alles gu"


def test_base64_in_separately_padded_chunks_is_decoded_whole() -> None:
    encoded = base64.b64encode(b"hello ") + b"\r\n" + base64.b64encode(b"world")
    raw = mail(encoded, headers=b"Content-Transfer-Encoding: base64\r\n")
    assert parse_email(raw).body_text == "hello world"


def test_wrong_transfer_encoding_label_keeps_the_text() -> None:
    raw = mail(
        b"This is plain text, not base64 at all.",
        headers=b"Content-Transfer-Encoding: base64\r\n",
    )
    assert parse_email(raw).body_text == "This is plain text, not base64 at all."


def test_quoted_printable_with_soft_breaks_and_bad_escapes() -> None:
    raw = mail(
        b"caf=C3=A9 with a soft=\r\n break and =ZZ bad escape",
        content_type=b"text/plain; charset=utf-8",
        headers=b"Content-Transfer-Encoding: quoted-printable\r\n",
    )
    assert parse_email(raw).body_text == "café with a soft break and =ZZ bad escape"


def test_missing_boundary_parameter_is_recovered_from_the_body() -> None:
    raw = mail(
        b"--xyz\r\nContent-Type: text/plain\r\n\r\nhello\r\n--xyz\r\nContent-Type: application/pdf"
        b"\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\n%PDF\r\n--xyz--\r\n",
        content_type=b"multipart/mixed",
    )
    parsed = parse_email(raw)
    assert parsed.body_text == "hello"
    assert [(a.filename, a.content) for a in parsed.attachments] == [("a.pdf", b"%PDF")]


def test_wrong_boundary_parameter_is_recovered_from_the_body() -> None:
    raw = mail(
        b"--real\r\nContent-Type: text/plain\r\n\r\nhello\r\n--real--\r\n",
        content_type=b'multipart/alternative; boundary="declared"',
    )
    assert parse_email(raw).body_text == "hello"


def test_clashing_rfc2231_parameters_do_not_break_parsing() -> None:
    # The stdlib raises TypeError on "name*" next to "name*0" while looking for the boundary.
    raw = mail(
        b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        b"--b\r\nContent-Type: application/pdf; name*=x.pdf; name*0=y.pdf\r\n\r\n%PDF\r\n--b--\r\n",
        content_type=b'multipart/mixed; boundary="b"; boundary*0="c"; boundary*="d"',
    )
    parsed = parse_email(raw)
    assert parsed.body_text == "hello"
    assert [(a.filename, a.content) for a in parsed.attachments] == [("attachment-1.pdf", b"%PDF")]


def test_header_line_without_colon_is_kept_with_the_field_before() -> None:
    parsed = parse_email(
        b"From: a@example.com\r\nSubject: broken\r\nthis line lost its indent\r\n"
        b"To: b@example.com\r\n\r\nbody here\r\n"
    )
    assert parsed.subject == "broken this line lost its indent"
    assert parsed.to == ["b@example.com"]
    assert parsed.body_text == "body here"


def test_body_without_blank_line_after_headers() -> None:
    parsed = parse_email(b"From: a@example.com\nSubject: s\nHello, no separator.\nLine two.\n")
    assert parsed.subject == "s"
    assert parsed.body_text == "Hello, no separator.\nLine two."


def test_nul_bytes_are_dropped_everywhere() -> None:
    parsed = parse_email(
        b"From: a@example.com\r\nSubject: nul\x00here\r\n\r\nbody\x00 with\x00 nul\r\n"
    )
    assert parsed.subject == "nulhere"
    assert parsed.body_text == "body with nul"


def test_leading_blank_lines_mbox_from_line_and_bare_cr_line_ends() -> None:
    assert parse_email(b"\r\n\r\nFrom: a@example.com\r\n\r\nbody").from_address == "a@example.com"
    mbox = parse_email(b"From a@example.com Mon Jun 10 10:00:00 2024\nFrom: b@example.com\n\nx")
    assert mbox.from_address == "b@example.com"
    mac = parse_email(b"From: a@example.com\rSubject: cr\r\rbody\r")
    assert (mac.subject, mac.body_text) == ("cr", "body")


@pytest.mark.parametrize("raw", [b"", b"   \r\n\r\n  ", b"no header here\njust text\n"])
def test_nothing_usable_is_a_malformed_email(raw: bytes) -> None:
    with pytest.raises(MalformedEmail):
        parse_email(raw)


def test_ten_thousand_parts_all_become_attachments() -> None:
    part = (
        b"--x\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"iVBORw0KGgo=\r\n"
    )
    raw = mail(part * 10_000 + b"--x--\r\n", content_type=b'multipart/mixed; boundary="x"')
    attachments = parse_email(raw).attachments
    assert len(attachments) == 10_000
    assert attachments[-1].filename == "attachment-10000.png"
    assert attachments[-1].content == b"\x89PNG\r\n\x1a\n"


def nested_multiparts(depth: int) -> bytes:
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    closing = b"".join(b"\r\n--b%d--" % i for i in reversed(range(depth)))
    return b"From: a@example.com\r\n" + opening + b"Content-Type: text/plain\r\n\r\ndeep" + closing


def test_nesting_within_the_limit_is_walked() -> None:
    assert parse_email(nested_multiparts(40)).body_text == "deep"


def test_nesting_past_the_walk_limit_is_kept_as_a_file() -> None:
    parsed = parse_email(nested_multiparts(60))
    assert parsed.body_text == ""
    (kept,) = parsed.attachments
    assert kept.content_type == "message/rfc822"
    assert b"\r\n\r\ndeep" in kept.content or b"\n\ndeep" in kept.content


def test_absurd_nesting_keeps_the_whole_message_as_a_file() -> None:
    raw = nested_multiparts(5_000)
    parsed = parse_email(raw)
    assert parsed.from_address == "a@example.com"
    assert parsed.body_text == ""
    assert [(a.filename, a.content) for a in parsed.attachments] == [("attachment-1.eml", raw)]


def test_deeply_nested_attached_messages_do_not_crash() -> None:
    raw = b"From: a@example.com\r\n" + b"Content-Type: message/rfc822\r\n\r\n" * 3_000 + b"x"
    parsed = parse_email(raw)
    assert parsed.from_address == "a@example.com"
    assert len(parsed.attachments) == 1


# --- split_reply ------------------------------------------------------------------------------


def test_split_reply_gmail_attribution_wrapped_over_two_lines() -> None:
    body = fixture("gmail_reply_multipart_alternative.eml").body_text
    reply, quoted = split_reply(body)
    assert reply == "It still fails after the update — same error."
    assert quoted.startswith("On Mon, Jun 10, 2024 at 5:02\u202fPM ACME Support <\nsupport+")
    assert quoted.endswith("> Reply to this email directly or view it on ACME\n>")


def test_split_reply_outlook_header_block_and_sign_off() -> None:
    body = (
        "Yes, that fixed it, thank you!\n\nBest regards,\nRenée Müller\nContoso GmbH\n\n"
        "________________________________\nFrom: ACME Support <support@example.com>\n"
        "Sent: Monday, June 10, 2024 5:02 PM\nTo: Renée Müller <renee@contoso.com>\n"
        "Subject: [ACME] The map does not load (#42)\n\nPlease try version 2.1.\n"
    )
    reply, quoted = split_reply(body)
    assert reply == "Yes, that fixed it, thank you!"
    assert quoted == body.split("\n\n", 1)[1].strip("\n")


def test_split_reply_original_message_separator() -> None:
    body = "Works now.\n\n-----Original Message-----\nFrom: ACME\nSent: Monday\n\nTry 2.1.\n"
    assert split_reply(body) == (
        "Works now.",
        "-----Original Message-----\nFrom: ACME\nSent: Monday\n\nTry 2.1.",
    )


def test_split_reply_apple_mail_sent_from_and_quote() -> None:
    body = fixture("ios_mail_comma_joined_references.eml").body_text
    assert split_reply(body) == (
        "Works now, thanks!",
        "Sent from my iPhone\n\n> On 11. Jun 2024, at 17:30, ACME Support "
        "<support+acme-game-42-issue-0123456789abcdef@example.com> wrote:\n> \n"
        "> Please update to 2.1.",
    )


def test_split_reply_signature_delimiter() -> None:
    body = "Here are the logs.\n\n-- \nJake the Dog\nAdventure Time Ltd.\n"
    assert split_reply(body) == ("Here are the logs.", "-- \nJake the Dog\nAdventure Time Ltd.")


@pytest.mark.parametrize(
    ("body", "reply"),
    [
        ("Danke, klappt.\n\nAm Mo., 10. Juni 2024 um 17:02 Uhr schrieb ACME <a@b.c>:\n> Test\n",
         "Danke, klappt."),
        ("Merci.\n\nLe lun. 10 juin 2024 à 17:02, ACME <a@b.c> a écrit :\n> Test\n", "Merci."),
        ("Gracias.\n\nEl lun, 10 jun 2024 a las 17:02, ACME (<a@b.c>) escribió:\n> Test\n",
         "Gracias."),
    ],
)  # fmt: skip
def test_split_reply_other_languages(body: str, reply: str) -> None:
    assert split_reply(body)[0] == reply


def test_split_reply_trailing_quote_block_under_an_unknown_attribution() -> None:
    body = "Thanks!\n\nOp 10 jun. 2024 heeft ACME het volgende geschreven:\n> Test\n> more\n"
    assert split_reply(body) == (
        "Thanks!",
        "Op 10 jun. 2024 heeft ACME het volgende geschreven:\n> Test\n> more",
    )


def test_split_reply_keeps_a_body_that_is_only_quotes() -> None:
    body = "On Mon, Jun 10, 2024 at 5:02 PM ACME <a@b.c> wrote:\n> only the quote\n"
    assert split_reply(body) == (body, "")
    assert split_reply("> quoted\n> only\n") == ("> quoted\n> only\n", "")


def test_split_reply_keeps_inline_answers_between_quotes() -> None:
    body = "> Which version?\n2.0.3\n\n> Which OS?\nWindows 11\n"
    assert split_reply(body) == (body, "")


def test_split_reply_does_not_mistake_lists_commands_or_sentences_for_signatures() -> None:
    body = (
        "Steps:\n\n- open the map\n- zoom in\n\n/label ~bug\nTakes five minutes.\n"
        "Thanks, that is all I know.\nMore details tomorrow.\n"
    )
    assert split_reply(body) == (body, "")


def test_split_reply_keeps_indentation_of_the_reply() -> None:
    body = "Log:\n\n    Traceback (most recent call last):\n\tline 2\n\nThanks,\nJake\n"
    assert split_reply(body) == (
        "Log:\n\n    Traceback (most recent call last):\n\tline 2",
        "Thanks,\nJake",
    )


def test_split_reply_loses_nothing() -> None:
    body = fixture("gmail_reply_multipart_alternative.eml").body_text
    reply, quoted = split_reply(body)
    assert [line for line in body.splitlines() if line.strip()] == [
        line for line in (reply + "\n" + quoted).splitlines() if line.strip()
    ]


def test_split_reply_on_crlf_text() -> None:
    assert split_reply("Yes.\r\n\r\n-- \r\nJake\r\n") == ("Yes.", "-- \nJake")


# --- Bounded: no email costs more than linear time, and what is cut is said ------------------


def test_split_reply_after_the_budget_keeps_the_whole_text_and_says_so() -> None:
    parsed = parse_email(
        mail(b"Thanks!\r\n\r\nOn Monday Jake wrote:\r\n> hello\r\n"), budget_seconds=0
    )
    assert parsed.split_reply() == (parsed.body_text, "")
    assert parsed.truncated == [
        "Quoted text not separated from the reply: reading the email took too long."
    ]


def test_split_reply_within_the_budget_trims_and_notes_nothing() -> None:
    parsed = parse_email(mail(b"Thanks!\r\n\r\nOn Monday Jake wrote:\r\n> hello\r\n"))
    assert parsed.split_reply() == ("Thanks!", "On Monday Jake wrote:\n> hello")
    assert parsed.truncated == []


def test_html_after_the_budget_is_plain_text_and_says_so() -> None:
    html_mail = mail(b"<p>It <b>crashes</b><br>on start</p>", content_type=b"text/html")
    parsed = parse_email(html_mail, budget_seconds=0)
    assert parsed.body_text == "It crashes\non start"
    assert parsed.truncated == ["HTML body shown as plain text: reading the email took too long."]
    assert parse_email(html_mail).body_text == "It **crashes**\non start"


def test_deeply_nested_html_is_plain_text_and_says_so() -> None:
    # 243 KB of these took 28 s in markdownify; 120 KB is under the size cap, over the depth.
    parsed = parse_email(mail(b"<b><i>" * 20_000 + b"text", content_type=b"text/html"))
    assert parsed.body_text == "text"
    assert parsed.truncated == [
        f"HTML body shown as plain text: it is nested deeper than {MAX_HTML_DEPTH} levels."
    ]
    reported = parse_email(mail(b"<b><i>" * 40_500 + b"text", content_type=b"text/html"))
    assert reported.body_text == "text"
    assert reported.truncated == [
        f"HTML body shown as plain text: it is larger than {MAX_HTML_CHARS // 1000} KB."
    ]


def test_html_nested_within_the_limit_is_converted() -> None:
    deep = b"<div>" * (MAX_HTML_DEPTH - 5) + b"<b>bold</b>" + b"</div>" * (MAX_HTML_DEPTH - 5)
    parsed = parse_email(mail(deep, content_type=b"text/html"))
    assert parsed.body_text == "**bold**"
    assert parsed.truncated == []


def test_large_html_is_plain_text_and_huge_html_is_cut() -> None:
    unit = b"<p>line <b>bold</b></p>\n"
    large = parse_email(mail(unit * (MAX_HTML_CHARS // len(unit) + 1), content_type=b"text/html"))
    assert large.body_text.startswith("line bold\n\nline bold")
    assert large.truncated == [
        f"HTML body shown as plain text: it is larger than {MAX_HTML_CHARS // 1000} KB."
    ]
    huge = parse_email(
        mail(b"<p>x</p>" * (MAX_HTML_TEXT_CHARS // 8 + 10), content_type=b"text/html")
    )
    assert huge.body_text.count("x") == MAX_HTML_TEXT_CHARS // 8
    assert huge.truncated[0] == "HTML body cut after 2 MB; the whole email is kept."


def test_html_parts_past_the_limit_are_plain_text() -> None:
    parts = b"".join(
        b"--s\r\nContent-Type: text/html\r\n\r\n<p><b>%d</b></p>\r\n" % i for i in range(150)
    )
    parsed = parse_email(mail(parts + b"--s--\r\n", content_type=b'multipart/mixed; boundary="s"'))
    pieces = parsed.body_text.split("\n\n")
    assert pieces[:2] == ["**0**", "**1**"]
    assert pieces[MAX_HTML_PARTS - 1 :][:2] == [f"**{MAX_HTML_PARTS - 1}**", f"{MAX_HTML_PARTS}"]
    assert len(pieces) == 150
    assert parsed.truncated == [f"HTML parts after the first {MAX_HTML_PARTS} shown as plain text."]


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>" + "<" * 250_000, "<" * 250_000),
        ("<a" * 100_000, "<a" * 100_000),
        ("<!--" * 50_000 + "x", "<!--" * 50_000 + "x"),
        ("</" * 100_000, "</" * 100_000),
        ("<?" * 100_000, "<?" * 100_000),
        ("<p>a</p><!-- note --><p>b</p>", "a\n\nb"),
        ("<style>p {}</style><p>a &lt; b</p><script>x()</script>", "a < b"),
    ],
    ids=[
        "lt",
        "unclosed-tags",
        "unclosed-comments",
        "end-tags",
        "instructions",
        "comment",
        "style",
    ],
)
def test_markup_that_never_ends_is_text(html: str, text: str) -> None:
    # Each "<" that opens no complete markup made html.parser scan the rest of the document
    # again: 100 KB of "<a" took 13 s, 200 KB 55 s. What it is given now ends every "<" at a
    # ">" before the next "<", so that its scans never overlap.
    given = _without_noise(html)
    starts = [at for at, character in enumerate(given) if character == "<"]
    for at, following in zip(starts, [*starts[1:], len(given)], strict=False):
        assert ">" in given[at:following], given[at : at + 20]
    assert html_to_markdown(html) == text


def test_long_runs_of_whitespace_are_cut() -> None:
    # markdownify's whitespace patterns cost the square of a run without a line break.
    assert html_to_markdown("<pre>a" + " " * 200_000 + "b</pre>") == f"```\na{' ' * 64}b\n```"


def test_mime_shape_counts_depth_and_lines_under_open_multiparts() -> None:
    assert mime_shape(b"no boundaries\n" * 10) == (0, 0)
    body = (
        b'Content-Type: multipart/mixed; boundary="a"\n\n--a\n'
        b'Content-Type: multipart/alternative; boundary="b"\n\n--b\nx\ny\n--b--\n--a--\nafter\n'
    )
    depth, work = mime_shape(body)
    assert depth == 2
    assert work == 1 * 3 + 2 * 5 + 1 * 1  # lines while one, two, then one multipart is open
    # Declarations in text count as multiparts; with closes that match nothing, still linear.
    assert mime_shape(b"boundary=x\n--y--\n" * 50_000, depth_limit=100)[0] == 101


def test_many_lines_deep_inside_multiparts_are_not_mime_parsed() -> None:
    # 99 levels of multipart over 280 000 lines: 4.5 s in the stdlib parser.
    nest = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level)
        for level in range(99)
    )
    raw = b"From: a@example.com\r\n" + nest + b"Content-Type: text/plain\r\n\r\nx\r\n" * 280_000
    parsed = parse_email(raw)
    assert parsed.body_text == ""
    assert [(a.filename, a.content) for a in parsed.attachments] == [("attachment-1.eml", raw)]
    assert parsed.truncated == [
        "The email's parts are nested too deeply to read: its text was not extracted, and the "
        "whole email is attached as a file."
    ]


def test_a_display_name_of_a_million_spaces_is_read() -> None:
    # The name and the spaces before "<" were two quantifiers over the same characters.
    parsed = parse_email(mail(b"x", headers=b"Cc: a" + b" " * 1_000_000 + b"b <c@example.com>\r\n"))
    assert parsed.cc == ["c@example.com"]


def test_nested_comments_in_an_address_header_are_no_error() -> None:
    parsed = parse_email(mail(b"x", headers=b"Cc: " + b"(" * 100_000 + b"\r\n"))
    assert parsed.cc == []


def test_the_reply_parser_reads_a_skim_of_the_text() -> None:
    lines = ["Hi", "", "", "", "", "x" * 5_000, "a" + " " * 1_000 + "b", *["On a wrote:"] * 10_000]
    skimmed, origin = _skim(lines)
    assert skimmed[:5] == ["Hi", "", "", "x" * _LIBRARY_MAX_LINE, "a b"]
    assert origin[:5] == [0, 1, 2, 5, 6]
    assert sum(len(line) + 1 for line in skimmed) <= _LIBRARY_MAX_CHARS


@pytest.mark.parametrize(
    "body",
    [
        "Hi\n\nOn " + "a " * 200_000,  # an attribution line that never ends
        "Hi\n\nAm " + "Am " * 100_000,
        "Hi" + "\n" * 200_000 + "there",
        "Hi\n\na" + " " * 200_000 + "b",
        "Hi\n" + "On Monday Jake wrote:\n> quoted\n" * 50_000 + "end",
    ],
    ids=["on-a-a-a", "am-am", "blank-lines", "spaces", "attribution-lines"],
)
def test_split_reply_on_text_built_to_backtrack_keeps_everything(body: str) -> None:
    # The library's patterns cost the square of such lines and runs (41 KB: 20 s to 4 min),
    # and our "only quotes after" check the square of the number of attribution lines.
    reply, quoted = split_reply(body)
    assert reply.split() + quoted.split() == body.split()


def test_stages_let_a_celery_soft_time_limit_through() -> None:
    # Raised wherever the task is: the ledger records it, no fallback may swallow it.
    class TimeIsUp(ParseBudget):
        def exhausted(self) -> bool:
            raise SoftTimeLimitExceeded

    with pytest.raises(SoftTimeLimitExceeded):
        html_to_markdown("<p>x</p>", budget=TimeIsUp(10))
    with pytest.raises(SoftTimeLimitExceeded):
        split_reply("x", budget=TimeIsUp(10))


# --- Plain text as Markdown: backslashes render as written -----------------------------------


def rendered_text(markdown: str) -> str:
    return html_module.unescape(re.sub(r"<[^>]+>", "", render_markdown(markdown))).strip()


@pytest.mark.parametrize(
    "text",
    [
        r"\\srv\share",
        r"C:\Users\*name*",
        r"my\_file and \[x\] and \#1 and a\|b",
        r"say \"hi\" \(ok\)",
        r"trailing\\",
        r"one \ alone",
    ],
)
def test_plain_text_backslashes_render_as_written(text: str) -> None:
    # Text bodies are stored as Markdown; "\\srv\share" used to show as "\srv\share".
    body = parse_email(mail(text.encode())).body_text
    assert rendered_text(body) == text


def test_html_backslashes_render_as_written() -> None:
    body = html_to_markdown(r"<p>\\srv\share and C:\Users\*name* and a_b</p>")
    assert rendered_text(body) == r"\\srv\share and C:\Users\*name* and a_b"


def test_backslashes_in_code_are_left_alone() -> None:
    text = (
        "Run `dir \\\\srv\\*` then:\n\n    \\\\srv\\share\\*\n\n```\n\\\\srv\\*\n```\nand \\\\srv"
    )
    assert escape_markdown_backslashes(text) == (
        "Run `dir \\\\srv\\*` then:\n\n    \\\\srv\\share\\*\n\n```\n\\\\srv\\*\n```\n"
        "and \\\\\\\\srv"
    )


def test_an_unclosed_fence_is_no_code_block() -> None:
    assert escape_markdown_backslashes("```\n\\\\srv") == "```\n\\\\\\\\srv"
