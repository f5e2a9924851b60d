"""The plain-text part of our emails, read from their rendered HTML.

The Markdown we render from is not plain text: a client that shows the text part (or a reader
that prefers it) would show ``**#5**``, ``[Unsubscribe](https://…)`` and any HTML a note holds.
markdownify (already used for inbound HTML mail) walks the sanitised HTML instead, told to write
no Markdown: emphasis loses its markers, links read "text (url)", lists keep their bullets,
quotes their "> ", headings are underlined and code blocks indented.

The HTML comes from ``render_markdown`` (at most 10,000 elements, 100 levels deep); HTML over
MAX_HTML_CHARS, or a conversion that overruns its CPU budget, falls back to the text between
the tags.
"""

from __future__ import annotations

import html
import logging
import math
import re
import threading
import time
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from markdownify import MarkdownConverter

log = logging.getLogger(__name__)

# markdownify converts our HTML at about 1 MB a CPU second (measured: 160 KB in 0.16 s); the text
# part is rendered in the transaction of the comment that causes it, so it may not cost more
# than a fraction of a second. Larger HTML is not even parsed.
MAX_HTML_CHARS = 200_000
BUDGET_SECONDS = 0.3
_local = threading.local()


class _OverBudget(Exception):
    """The conversion has spent its CPU budget."""


def _text_only(self: Any, el: Any, text: str, parent_tags: set[str]) -> str:
    return text


class _PlainText(MarkdownConverter):
    """markdownify, writing text for people rather than Markdown for a renderer."""

    def process_tag(self, node, parent_tags=None):  # type: ignore[no-untyped-def]
        if time.thread_time() > getattr(_local, "deadline", math.inf):
            raise _OverBudget
        return super().process_tag(node, parent_tags)

    convert_b = convert_strong = convert_em = convert_i = _text_only
    convert_del = convert_s = convert_ins = convert_sub = convert_sup = _text_only
    convert_code = convert_kbd = convert_samp = convert_abbr = _text_only

    def convert_a(self, el, text, parent_tags):  # type: ignore[no-untyped-def]
        prefix = " " if text[:1].isspace() else ""
        suffix = " " if text[-1:].isspace() else ""
        text, href = text.strip(), el.get("href") or ""
        if not text:
            text, href = href, ""
        # A bare link (linkified by bleach) or a mailto of the address shown: said once.
        if not href or href in (text, f"mailto:{text}") or "_noformat" in parent_tags:
            return f"{prefix}{text}{suffix}"
        return f"{prefix}{text} ({href.removeprefix('mailto:')}){suffix}"

    def convert_img(self, el, text, parent_tags):  # type: ignore[no-untyped-def]
        alt, src = el.get("alt") or "", el.get("src") or ""
        return f"{alt} ({src})" if alt and src else alt or src

    def convert_hN(self, n, el, text, parent_tags):  # type: ignore[no-untyped-def]
        if "_inline" in parent_tags:
            return text
        return self.underline(" ".join(text.split()), "=" if n == 1 else "-")

    def convert_pre(self, el, text, parent_tags):  # type: ignore[no-untyped-def]
        lines = text.strip("\n").split("\n")
        return "\n\n" + "\n".join(f"    {line}" if line else "" for line in lines) + "\n\n"

    def convert_summary(self, el, text, parent_tags):  # type: ignore[no-untyped-def]
        return f"\n\n{text.strip()}\n\n"

    def convert_details(self, el, text, parent_tags):  # type: ignore[no-untyped-def]
        return self.convert_div(el, text, parent_tags)


_BLANK_LINES = re.compile(r"\n{3,}")
_BLOCK_TAG = re.compile(
    r"</?(?:p|div|br|li|ul|ol|blockquote|pre|h[1-6]|tr|table|hr|details|summary)\b[^<>]*>", re.I
)
_TAG = re.compile(r"<[^<>]*>")


def html_to_plain_text(rendered: str) -> str:
    """Readable plain text of HTML that ``render_markdown`` wrote. Never raises (but a task's
    soft time limit)."""
    text = None
    if len(rendered) <= MAX_HTML_CHARS:
        _local.deadline = time.thread_time() + BUDGET_SECONDS
        try:
            converter = _PlainText(
                escape_asterisks=False,
                escape_underscores=False,
                escape_misc=False,
                bullets="-",
                table_infer_header=True,
            )
            text = converter.convert(rendered)
        except _OverBudget:
            log.info("HTML of %d characters over its plain-text budget", len(rendered))
        except SoftTimeLimitExceeded:
            raise
        except Exception:  # a converter's bug must not cost an email: its words are there
            log.warning("HTML could not be converted to plain text", exc_info=True)
        finally:
            _local.deadline = math.inf
    if text is None:
        # The HTML is bleach's output (well-formed, every "<" of text escaped): linear.
        text = html.unescape(_TAG.sub("", _BLOCK_TAG.sub("\n", rendered)))
    return _tidy(text)


def _tidy(text: str) -> str:
    lines = text.replace("\xa0", " ").split("\n")
    return _BLANK_LINES.sub("\n\n", "\n".join(line.rstrip() for line in lines)).strip() + "\n"
