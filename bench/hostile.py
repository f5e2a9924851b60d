"""Hostile inputs: the CPU cost of each stage for the emails and texts built to stall us.

    make bench                      # or: .venv/bin/python bench/hostile.py [--only NAME ...]

Builds each hostile input (a 41 KB "On a a a …" reply line, 243 KB of nested <b><i>, an 848 KB
email that mentions delivery-status, 3.6 KB of definition-list lines, 120 KB of abbreviations
and the others listed in HOSTILE) and measures the CPU time (time.process_time) of every stage
it reaches:

- parse_email: headers, body text (HTML converted) and attachments, as the handler reads them;
- split_reply: reply trimming of that body text;
- html_to_markdown: the HTML body alone (HTML inputs);
- bounce screen: what the worker pays before routing (handlers._may_be_bounce, then
  rules.delivery_report when it says "maybe");
- delivery_report: rules.delivery_report called on the raw email regardless;
- render_markdown: the text as the issue page renders it (the body text for emails).

Prints a table and writes bench/results/hostile.json. Not a test: nothing here asserts. The
inputs are also fed through the real pipeline by tests/mailroom/test_fuzz.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADDRESS = b"incoming+acme-game-1-issue-@appmail.adventuretime.ooo"


def email(
    body: bytes,
    *,
    content_type: bytes = b"text/plain; charset=utf-8",
    headers: bytes = b"",
    sender: bytes = b"Jake <jake@customer.example>",
) -> bytes:
    """A minimal email to the demo project's address."""
    return (
        b"From: " + sender + b"\r\nTo: " + ADDRESS + b"\r\nSubject: Hostile\r\n"
        b"Message-ID: <hostile@customer.example>\r\nMIME-Version: 1.0\r\n"
        + headers
        + b"Content-Type: "
        + content_type
        + b"\r\n\r\n"
        + body
    )


def on_a_a_a() -> bytes:
    """A reply whose second paragraph looks like the start of an attribution line, 41 KB long."""
    return email(b"Hello,\r\n\r\nOn " + b"a " * 20_500 + b"\r\n")


def attribution_lines() -> bytes:
    """8 000 attribution lines, each followed by a quote: our own "only quotes after" check."""
    return email(b"Hi\r\n" + b"On Monday Jake wrote:\r\n> quoted\r\n" * 8_000 + b"end\r\n")


def blank_lines() -> bytes:
    """41 000 blank lines between two words (the reply parser's signature pattern)."""
    return email(b"Hi" + b"\r\n" * 41_000 + b"there\r\n")


def spaces() -> bytes:
    """One line with 41 000 spaces in the middle."""
    return email(b"Hi\r\n\r\na" + b" " * 41_000 + b"b\r\n")


NESTED_B_I = "<b><i>" * 40_500 + "text"


def nested_b_i() -> bytes:
    """243 KB of nested <b><i> in an HTML-only email."""
    return email(NESTED_B_I.encode(), content_type=b"text/html; charset=utf-8")


UNCLOSED_TAGS = "<p>" + "<" * 250_000


def unclosed_tags() -> bytes:
    """250 KB of "<" in an HTML-only email (the fallback tag stripper)."""
    return email(UNCLOSED_TAGS.encode(), content_type=b"text/html; charset=utf-8")


def _nested_multiparts(depth: int, total: int, text: bytes) -> bytes:
    nest = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level)
        for level in range(depth)
    )
    head = email(b"", content_type=b'multipart/mixed; boundary="top"')
    body = b"--top\r\n" + nest + b"Content-Type: text/plain\r\n\r\n" + text + b"\r\n"
    lines = max(0, (total - len(head) - len(body)) // 3)
    return head + body + b"x\r\n" * lines


def delivery_status_848k() -> bytes:
    """848 KB, 480 multiparts deep, that mentions delivery-status: not a bounce."""
    return _nested_multiparts(480, 848_000, b"About the delivery-status of my order...")


def deep_mime_848k() -> bytes:
    """848 KB, 99 multiparts deep: just under the parser's nesting cap, many lines."""
    return _nested_multiparts(99, 848_000, b"Deep down.")


def long_from() -> bytes:
    """A From display name with 100 000 spaces in it."""
    return email(b"Hello\r\n", sender=b"a" + b" " * 100_000 + b"b <c@customer.example>")


def nested_comments() -> bytes:
    """A To header of 100 000 opening parentheses (RFC 5322 comments nest)."""
    return email(b"Hello\r\n", headers=b"Cc: " + b"(" * 100_000 + b"\r\n")


def boundary_mentions() -> bytes:
    """A text body that declares 25 000 boundaries and closes others."""
    return email(b"boundary=x\r\n--y--\r\n" * 25_000)


def many_html_parts() -> bytes:
    """10 000 HTML parts of one line each."""
    part = b"--s\r\nContent-Type: text/html\r\n\r\n<p>part <b>%d</b></p>\r\n"
    parts = b"".join(part % i for i in range(10_000))
    return email(parts + b"--s--\r\n", content_type=b'multipart/mixed; boundary="s"')


RICH_UNIT = (
    "<div class='x'><h2>Title</h2><p>It <b>crashes</b> when I <i>open</i> the "
    "<a href='https://x.example/a?b=c'>inventory</a> &amp; close it.</p>"
    "<ul><li>one</li><li>two</li></ul><table><tr><td>a</td><td>b</td></tr></table></div>\n"
)
RICH_HTML = RICH_UNIT * (500_000 // len(RICH_UNIT))
# The largest ordinary HTML that is still converted to Markdown (parsing.MAX_HTML_CHARS).
RICH_HTML_CONVERTED = RICH_UNIT * (150_000 // len(RICH_UNIT))


def rich_html() -> bytes:
    """500 KB of ordinary, formatted HTML: over the size cap, read as plain text."""
    return email(RICH_HTML.encode(), content_type=b"text/html; charset=utf-8")


def rich_html_converted() -> bytes:
    """150 KB of ordinary, formatted HTML: the most that is converted to Markdown."""
    return email(RICH_HTML_CONVERTED.encode(), content_type=b"text/html; charset=utf-8")


def definition_list() -> str:
    """3.6 KB of alternating term and definition lines."""
    return "a\n: b\n" * 600


def abbreviations() -> str:
    """120 KB of abbreviation definitions, then a paragraph using some."""
    lines = []
    size = 0
    index = 0
    while size < 120_000:
        line = f"*[ABBR{index}]: Abbreviation number {index}\n"
        lines.append(line)
        size += len(line)
        index += 1
    return "".join(lines) + "\n" + " ".join(f"ABBR{i}" for i in range(0, index, 97)) + "\n"


def brackets() -> str:
    """10 000 opening brackets: each one starts a link search to the end."""
    return "[" * 10_000 + "x"


def headings() -> str:
    """96 KB of one-letter ATX headings."""
    return "# a\n" * 24_000


def line_breaks() -> str:
    """96 KB of one-letter lines (each a <br>)."""
    return "a\n" * 48_000


def table_rows() -> str:
    """A 40 KB table of 6 800 rows."""
    return "|a|b|\n|-|-|\n" + "|a|b|\n" * 6_800


def fences() -> str:
    """25 000 unclosed code fences."""
    return "```\n" * 25_000


HOSTILE: dict[str, tuple[str, Callable[[], Any]]] = {
    "on-a-a-a-41k": ("email", on_a_a_a),
    "attribution-lines": ("email", attribution_lines),
    "blank-lines-41k": ("email", blank_lines),
    "spaces-41k": ("email", spaces),
    "nested-b-i-243k": ("email", nested_b_i),
    "unclosed-tags-250k": ("email", unclosed_tags),
    "delivery-status-848k": ("email", delivery_status_848k),
    "deep-mime-848k": ("email", deep_mime_848k),
    "long-from-100k": ("email", long_from),
    "nested-comments-100k": ("email", nested_comments),
    "boundary-mentions": ("email", boundary_mentions),
    "html-parts-10k": ("email", many_html_parts),
    "rich-html-500k": ("email", rich_html),
    "rich-html-150k": ("email", rich_html_converted),
    "def-list-3.6k": ("markdown", definition_list),
    "abbreviations-120k": ("markdown", abbreviations),
    "brackets-10k": ("markdown", brackets),
    "headings-96k": ("markdown", headings),
    "line-breaks-96k": ("markdown", line_breaks),
    "table-rows-40k": ("markdown", table_rows),
    "fences-100k": ("markdown", fences),
}
HTML_BODIES = {
    "nested-b-i-243k": NESTED_B_I,
    "unclosed-tags-250k": UNCLOSED_TAGS,
    "rich-html-500k": RICH_HTML,
    "rich-html-150k": RICH_HTML_CONVERTED,
}
STAGES = [
    "parse_email",
    "split_reply",
    "html_to_markdown",
    "bounce screen",
    "delivery_report",
    "render_markdown",
]


def _timed(function: Callable[[], Any]) -> tuple[float, Any, str]:
    start = time.process_time()
    try:
        result, error = function(), ""
    except Exception as exc:  # the table says which stage raised; nothing else stops the run
        result, error = None, type(exc).__name__
    return time.process_time() - start, result, error


def measure(name: str) -> dict[str, Any]:
    from issues.markdown import render_markdown
    from mailroom.handlers import _mailboxes, _may_be_bounce
    from mailroom.parsing import html_to_markdown, parse_email, split_reply
    from mailroom.rules import delivery_report

    kind, build = HOSTILE[name]
    data = build()
    stages: dict[str, float] = {}
    errors: dict[str, str] = {}

    def record(stage: str, function: Callable[[], Any]) -> Any:
        seconds, result, error = _timed(function)
        stages[stage] = round(seconds, 3)
        if error:
            errors[stage] = error
        return result

    if kind == "markdown":
        record("render_markdown", lambda: render_markdown(data))
        return {"kind": kind, "bytes": len(data.encode()), "stages": stages, "errors": errors}

    def parse() -> Any:
        parsed = parse_email(data)
        _ = (parsed.subject, parsed.from_address, parsed.to, parsed.cc, parsed.references)
        _ = (parsed.body_text, parsed.attachments)
        return parsed

    parsed = record("parse_email", parse)
    text = parsed.body_text if parsed is not None else ""
    if parsed is not None:
        record("split_reply", lambda: split_reply(text))
    if name in HTML_BODIES:
        record("html_to_markdown", lambda: html_to_markdown(HTML_BODIES[name]))
    mailboxes = _mailboxes()
    if parsed is not None:
        record(
            "bounce screen",
            lambda: _may_be_bounce(parsed) and delivery_report(data, mailboxes=mailboxes),
        )
    record("delivery_report", lambda: delivery_report(data, mailboxes=mailboxes))
    record("render_markdown", lambda: render_markdown(text))
    return {"kind": kind, "bytes": len(data), "stages": stages, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=sorted(HOSTILE), help="inputs to measure")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "hostile.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hostile-") as var:
        os.environ.setdefault("SERVICEDESK_VAR_DIR", var)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "servicedesk.settings")
        os.environ.setdefault("SERVICEDESK_ENV", "development")
        import logging

        import django

        django.setup()
        logging.disable(logging.INFO)  # the fallbacks log what they do; the table says enough
        results = {}
        for name in args.only or HOSTILE:
            results[name] = measure(name)
            print(f"  measured {name}", file=sys.stderr, flush=True)

    worst = max(max(r["stages"].values(), default=0.0) for r in results.values())
    print("\nHostile inputs: CPU seconds per stage (time.process_time)")
    header = f"  {'input':<22} {'size':>8}" + "".join(f" {stage:>16}" for stage in STAGES)
    print(header)
    for name, result in results.items():
        cells = []
        for stage in STAGES:
            if stage not in result["stages"]:
                cells.append(f" {'-':>16}")
                continue
            error = result["errors"].get(stage)
            value = f"{result['stages'][stage]:.3f}" + (f" ({error})" if error else "")
            cells.append(f" {value:>16}")
        print(f"  {name:<22} {result['bytes'] / 1000:>6.1f}KB" + "".join(cells))
    print(f"\n  worst stage: {worst:.3f} s CPU")

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "inputs": results,
        "worst_stage_cpu_seconds": worst,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten to {output}")


if __name__ == "__main__":
    main()
