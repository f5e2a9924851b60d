"""Fuzzing the whole inbound pipeline: stored → claimed → parsed → rules → routing → issue/note.

Hypothesis generates random bytes, random headers and mutations of the real email corpus
(truncation, flipped and inserted bytes, repeated headers, bogus charsets); hand-made monsters
cover huge headers, deep MIME nesting and 10 000 parts. Whatever comes in, no exception escapes
and every email ends processed with a recorded outcome — never as an error of ours.
"""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.hostile import HOSTILE
from issues.markdown import render_markdown
from issues.models import Issue
from mailroom.ledger import inbound_claim, inbound_process, inbound_store
from mailroom.models import InboundMessage
from mailroom.parsing import (
    MAX_HTML_DEPTH,
    escape_markdown_backslashes,
    html_to_markdown,
    parse_email,
    split_reply,
)
from tests.mailroom.helpers import ALIAS, FIXTURES, INCOMING

pytestmark = pytest.mark.django_db
CORPUS = sorted(FIXTURES.glob("*.eml"))
OUTCOMES = {choice for choice, _ in InboundMessage.Outcome.choices} - {"failed"}
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # CI runs the same examples every time; failures reproduce
)


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    settings.SERVICEDESK_NEW_ISSUES_PER_SENDER_PER_MINUTE = 0  # fuzzing is not abuse


def run(raw: bytes) -> InboundMessage:
    """Store and process as a worker would; the row must end done with an outcome."""
    if not raw:
        raw = b"\r\n"  # the ledger refuses nothing; an empty body is still a message
    row = inbound_store(raw=raw, transport="fuzz", enqueue=False)
    claimed, token = inbound_claim([row.pk])
    assert claimed == [row.pk]
    inbound_process(row.pk, token)  # catches our errors and records them: check below
    row.refresh_from_db()
    assert row.last_error == "", row.last_error
    assert row.status == "done", (row.status, row.reason)
    assert row.outcome in OUTCOMES, (row.outcome, row.reason)
    return row


def project_address(project) -> bytes:  # type: ignore[no-untyped-def]
    return INCOMING.address_for(project.service_desk.default_key).encode()


@FUZZ
@given(raw=st.binary(max_size=4000))
def test_random_bytes(project, raw: bytes) -> None:
    run(raw)


header_name = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
    min_size=1,
    max_size=30,
)
header_value = st.text(max_size=300)  # any Unicode, control characters and newlines included


@FUZZ
@given(
    headers=st.lists(st.tuples(header_name, header_value), max_size=15),
    body=st.binary(max_size=2000),
)
def test_random_headers_to_a_real_project(project, headers, body: bytes) -> None:
    lines = [b"To: " + project_address(project), b"From: fuzz@customer.example"]
    lines += [f"{name}: {value}".encode("utf-8", "surrogateescape") for name, value in headers]
    run(b"\r\n".join(lines) + b"\r\n\r\n" + body)


def addressed_to(raw: bytes, address: bytes) -> bytes:
    """A corpus email re-addressed to our project, so that it goes all the way through."""
    return re.sub(rb"(?im)^(to|delivered-to):[^\r\n]*(\r?\n[ \t][^\r\n]*)*", b"To: " + address,
                  raw, count=1)  # fmt: skip


@st.composite
def mutated_corpus_email(draw: st.DrawFn, address: bytes) -> bytes:
    raw = bytearray(addressed_to(Path(draw(st.sampled_from(CORPUS))).read_bytes(), address))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "repeat", "charset", "cut"]))
        at = draw(st.integers(min_value=0, max_value=max(len(raw) - 1, 0)))
        if kind == "truncate":
            del raw[at:]
        elif kind == "flip" and raw:
            raw[at] = draw(st.integers(min_value=0, max_value=255))
        elif kind == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=200))
        elif kind == "repeat":
            end = raw.find(b"\n", at)
            raw[at:at] = raw[at : end + 1 if end >= 0 else len(raw)] * draw(st.integers(2, 50))
        elif kind == "charset":
            name = draw(st.sampled_from([b"x-unknown", b"utf-7", b"shift_jis", b"", b'"', b"\xff"]))
            raw = bytearray(bytes(raw).replace(b"charset=", b"charset=" + name + b";x=", 1))
        elif kind == "cut":  # drop a slice from the middle (boundaries, headers…)
            del raw[at : at + draw(st.integers(1, 500))]
    return bytes(raw)


@FUZZ
@given(data=st.data())
def test_mutated_real_emails(project, data: st.DataObject) -> None:
    run(data.draw(mutated_corpus_email(project_address(project))))


def test_the_unmutated_corpus_goes_all_the_way_through(project) -> None:
    """The mutations start from emails that reach the project (else fuzzing tests routing only)."""
    outcomes = [run(addressed_to(path.read_bytes(), project_address(project))).outcome
                for path in CORPUS]  # fmt: skip
    assert outcomes.count("issue_created") + outcomes.count("note_added") >= len(CORPUS) // 2


def _peak_mib(raw: bytes) -> tuple[InboundMessage, float]:
    tracemalloc.start()
    try:
        row = run(raw)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    return row, peak


def _header(project, subject: bytes = b"Monster") -> bytes:  # type: ignore[no-untyped-def]
    return (
        b"From: monster@customer.example\r\nTo: " + project_address(project) + b"\r\n"
        b"Subject: " + subject + b"\r\nMIME-Version: 1.0\r\n"
    )


def test_huge_headers(project) -> None:
    folded = b"\r\n ".join([b"x" * 900] * 1100)  # a 1 MB folded Subject
    many = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"y" * 50) for i in range(20_000))
    raw = _header(project, folded) + many + b"Content-Type: text/plain\r\n\r\nHello\r\n"
    row, peak = _peak_mib(raw)
    assert row.outcome == "issue_created"
    assert len(row.subject) <= 998
    assert peak < 25 * len(raw) / 2**20 + 20  # proportional to the email (measured ~16x)


def test_deep_mime_nesting(project) -> None:
    depth = 500
    parts = [_header(project)]
    for level in range(depth):
        parts.append(
            b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level)
        )
    parts.append(b"Content-Type: text/plain\r\n\r\nAt the bottom.\r\n")
    for level in reversed(range(depth)):
        parts.append(b"--b%d--\r\n" % level)
    row, peak = _peak_mib(b"".join(parts))
    assert row.outcome in {"issue_created", "rejected"}, row.reason
    assert peak < 20  # measured 0.4 MiB


def test_ten_thousand_parts(project) -> None:
    body = b"".join(
        b"--sep\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(10_000)
    )
    raw = (
        _header(project)
        + b'Content-Type: multipart/mixed; boundary="sep"\r\n\r\n'
        + body
        + b"--sep--\r\n"
    )
    row, peak = _peak_mib(raw)
    assert row.outcome == "issue_created", row.reason
    assert peak < 50  # measured 9 MiB


# --- Hostile inputs: built to cost the square of their size (bench/hostile.py) ----------------
# Timings belong in the benchmark; here each input must end with an outcome, its text whole
# or cut in the ways parsing says (ParsedEmail.truncated).


@pytest.mark.parametrize("name", [name for name, (kind, _) in HOSTILE.items() if kind == "email"])
def test_each_hostile_email_becomes_an_issue(project, name: str) -> None:
    _kind, build = HOSTILE[name]
    raw = addressed_to(build(), project_address(project))
    row = run(raw)
    assert row.outcome == "issue_created", row.reason
    assert "bounce" not in row.decision.get("rule", "")
    description = Issue.objects.get(pk=row.issue_id).description
    assert len(description) <= len(raw)
    assert render_markdown(description) or not description.strip()


def test_nested_b_i_is_its_text_and_the_issue_says_how_it_was_read(project) -> None:
    row = run(addressed_to(HOSTILE["nested-b-i-243k"][1](), project_address(project)))
    text, _, said = Issue.objects.get(pk=row.issue_id).description.partition("\n\n")
    assert text == "text"
    assert "inbound ledger" in said
    assert "- HTML body shown as plain text: it is larger than 160 KB." in said


def test_deep_mime_with_many_lines_is_kept_whole_as_a_file(project) -> None:
    raw = addressed_to(HOSTILE["deep-mime-848k"][1](), project_address(project))
    row = run(raw)
    issue = Issue.objects.get(pk=row.issue_id)
    assert issue.uploads.get().size == len(raw)


HOSTILE_FRAGMENTS = [
    "On ", "Am ", "a ", " ", "\t", "\n", "\n\n", "> ", "wrote:", "From: x\n", "Sent: y\n",
    "-----Original Message-----\n", "-- \n", "Thanks,\n", "_" * 40, "<b>", "<i>", "</b>", "<",
    "<a", "<!--", "-->", "</", "<?", "<![CDATA[", "&lt;", "[", "](", "![", "*", "_", "`",
    "```\n", "~~~\n", "# ", "|", "|-|\n", "a\n: b\n", "*[x]: y\n", "\\", "- ", "1. ", "    ",
    "=?utf-8?q?a?=", "boundary=x\n", "--x--\n", "http://x.example/", "<div markdown=\"1\">",
]  # fmt: skip
hostile_text = st.lists(
    st.tuples(st.sampled_from(HOSTILE_FRAGMENTS), st.integers(min_value=1, max_value=3000)),
    min_size=1,
    max_size=5,
).map(lambda parts: "".join(fragment * count for fragment, count in parts))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
@given(text=hostile_text)
def test_hostile_text_through_every_stage_comes_out_whole_and_bounded(text: str) -> None:
    truncated: list[str] = []
    markdown = html_to_markdown(text, truncated=truncated)
    assert len(markdown) <= 2 * len(text) + 100
    assert set(truncated) <= {
        f"HTML body shown as plain text: it is nested deeper than {MAX_HTML_DEPTH} levels.",
        "HTML body shown as plain text: it could not be converted.",
    }
    reply, quoted = split_reply(text)
    assert reply.split() + quoted.split() == text.split()
    rendered = render_markdown(text)
    assert len(rendered) <= 20 * len(text) + 100
    assert rendered or not text.strip()
    subject = " ".join(text[:2000].split()).encode()
    parsed = parse_email(
        b"From: a@example.com\r\nSubject: " + subject + b"\r\n\r\n" + text.encode()
    )
    body = parsed.body_text
    if parsed.truncated:  # "boundary=" in the text counts as nesting: kept whole as a file
        assert body == ""
        assert parsed.attachments[0].content.endswith(text.encode())
    else:
        assert body.split() == escape_markdown_backslashes(text).split()
