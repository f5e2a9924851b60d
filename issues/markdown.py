"""User Markdown to safe HTML: Python-Markdown renders, bleach keeps only an allow-list.

Everything a user or a customer writes goes through ``render_markdown``; nothing executable
(script, event handlers, ``javascript:`` URLs, style beyond text alignment) survives, and
nothing can make it slow or fail: a text that is too large, too deeply nested, takes longer
than its CPU budget or makes a renderer raise is shown as escaped text instead.
"""

from __future__ import annotations

import functools
import hashlib
import html
import inspect
import itertools
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import bleach
import markdown
from bleach.css_sanitizer import CSSSanitizer
from bleach.html5lib_shim import Filter
from bleach.linkifier import DEFAULT_CALLBACKS
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache

ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl",
        "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li",
        "ol", "p", "pre", "s", "span", "strong", "sub", "summary", "sup", "table", "tbody",
        "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": ["href", "title"],
    "abbr": ["title"],
    "img": ["src", "alt", "title", "width", "height"],
    "code": ["class"],
    "th": ["style", "align"],
    "td": ["style", "align"],
    "ol": ["start"],
}
ALLOWED_PROTOCOLS = frozenset({"http", "https", "mailto"})
_css = CSSSanitizer(allowed_css_properties=["text-align"])
# GitLab Flavored Markdown (CommonMark and GFM) has neither abbreviations nor definition lists,
# and both extensions were hazards: "abbr" matches every definition against the whole text
# (120 KB of definitions: minutes), "def_list" nests each "term\n: definition" pair in the
# previous one (3.6 KB of them: RecursionError). <abbr> and <dl> written as HTML still work.
_EXTENSIONS = ["fenced_code", "tables", "sane_lists", "nl2br", "md_in_html"]
# Longer texts are shown as escaped text: Python-Markdown and bleach take about a second for
# 100 KB of ordinary Markdown, and more for some shapes of it.
MAX_MARKDOWN_CHARS = 100_000
# CPU seconds one text may take to render (SERVICEDESK_MARKDOWN_BUDGET_SECONDS).
DEFAULT_RENDER_BUDGET_SECONDS = 0.75
# HTML nested deeper than this is not handed to bleach: html5lib's tree builder scans the open
# elements for many tags, so its cost grows with the depth times the size.
MAX_HTML_DEPTH = 100
# Nor HTML with an element holding more elements than this (a table of many rows): bleach's
# tree walker looks for each element among its siblings again when it leaves it.
MAX_HTML_CHILDREN = 2_000
# Nor HTML of more elements than this: bleach parses it whole before it can be interrupted, at
# up to about _SANITISE_SECONDS_PER_ELEMENT each (measured: 15-25 µs).
MAX_HTML_ELEMENTS = 10_000
_SANITISE_SECONDS_PER_ELEMENT = 30e-6


def _nofollow_external(attrs: dict, new: bool = False) -> dict:  # type: ignore[type-arg]
    href = attrs.get((None, "href"), "")
    if href.startswith(("http://", "https://")):
        attrs[(None, "rel")] = "nofollow noopener noreferrer"
    return attrs


log = logging.getLogger(__name__)
_local = threading.local()


class _OverBudget(Exception):
    """The text being rendered has spent its CPU budget."""


def _check_budget() -> None:
    if time.thread_time() > getattr(_local, "deadline", math.inf):
        raise _OverBudget


class _WithinBudget(Filter):
    """Checks the budget between the tokens bleach walks (its tree walker can be slow)."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for count, token in enumerate(super().__iter__()):
            if count % 32 == 0:
                _check_budget()
            yield token


def _is_ours(url: str) -> bool:
    """Whether a URL points at this site: relative, or under SITE_URL."""
    if "\\" in url:  # browsers read "\\" as "/": "/\\evil.example/x.png" is another host
        return False
    parts = urlsplit(url.strip())
    if not parts.scheme and not parts.netloc:
        return True
    site = urlsplit(settings.SITE_URL)
    return (
        parts.scheme.lower() == site.scheme.lower()
        and parts.netloc.lower() == site.netloc.lower()
        and f"{parts.path}/".startswith(f"{site.path.rstrip('/')}/")
    )


class _RemoteImagesAsLinks(Filter):
    """An <img> from another site becomes a link to it (its alt text, or its address): an email
    client that shows the email fetches nothing, so no tracking pixel learns who read it."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        in_link = 0
        for token in super().__iter__():
            kind, name = token["type"], token.get("name")
            if name == "a" and kind in ("StartTag", "EndTag"):
                in_link += 1 if kind == "StartTag" else -1
            if name != "img" or kind not in ("StartTag", "EmptyTag"):
                yield token
                continue
            attributes = token.get("data") or {}
            source = attributes.get((None, "src"), "")
            if not source or _is_ours(source):
                yield token
                continue
            label = {"type": "Characters", "data": attributes.get((None, "alt")) or source}
            if in_link > 0:  # a link cannot hold another link: the label alone
                yield label
                continue
            namespace = token.get("namespace")
            link = {(None, "href"): source}
            yield {"type": "StartTag", "name": "a", "namespace": namespace, "data": link}
            yield label
            yield {"type": "EndTag", "name": "a", "namespace": namespace}


def _cleaner_with(*filters: Callable[[Any], Any]) -> bleach.Cleaner:
    return bleach.Cleaner(
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        protocols=ALLOWED_PROTOCOLS,
        css_sanitizer=_css,
        strip=True,
        strip_comments=True,
        filters=[
            *filters,
            # Linkify bare URLs after cleaning, so its output is itself allow-listed.
            lambda source: bleach.linkifier.LinkifyFilter(
                source,
                callbacks=[*DEFAULT_CALLBACKS, _nofollow_external],
                skip_tags={"pre", "code"},
            ),
            _WithinBudget,
        ],
    )


_cleaner = _cleaner_with()
_cleaner_without_remote_images = _cleaner_with(_RemoteImagesAsLinks)


def _parser() -> markdown.Markdown:
    # Building a Markdown instance (extensions, processors) costs more than most conversions:
    # one per thread, reset between documents.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = markdown.Markdown(extensions=_EXTENSIONS, output_format="html")
        _check_budget_in_every_step(parser)
        _local.parser = parser
    return parser


def _check_budget_in_every_step(parser: markdown.Markdown) -> None:
    """Make each of Python-Markdown's processors check the budget before it works.

    Several of its steps cost the square of the text ("[" repeated, one-letter headings or
    lines): each step is short, but there are as many as characters.
    """

    calls = itertools.count()

    def checked(step: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(step)
        def check_then_step(*args: Any, **kwargs: Any) -> Any:
            if next(calls) % 16 == 0:  # reading the CPU clock is a system call
                _check_budget()
            return step(*args, **kwargs)

        return check_then_step

    registries = (
        parser.preprocessors,
        parser.parser.blockprocessors,
        parser.treeprocessors,
        parser.inlinePatterns,
        parser.postprocessors,
    )
    for registry in registries:
        for processor in registry:
            # Every method, not only run(): the table processor builds each row in a method.
            for name, _function in inspect.getmembers(type(processor), inspect.isfunction):
                if not name.startswith("__"):
                    setattr(processor, name, checked(getattr(processor, name)))


def _budget_seconds() -> float:
    return float(
        getattr(settings, "SERVICEDESK_MARKDOWN_BUDGET_SECONDS", DEFAULT_RENDER_BUDGET_SECONDS)
    )


def render_markdown(text: str, *, remote_images: bool = True) -> str:
    """Render Markdown and sanitise the result. Returns HTML safe to mark as such.

    ``remote_images=False`` (for email): an image that is not on this site (SITE_URL, or a
    relative URL) becomes a link to it. Never raises, and never takes much longer than its
    budget: texts over MAX_MARKDOWN_CHARS, nested deeper than MAX_HTML_DEPTH, slower than
    SERVICEDESK_MARKDOWN_BUDGET_SECONDS of CPU or that make a renderer fail are shown as
    escaped text.
    """
    return _render(text or "", remote_images=remote_images)[0]


def render_markdown_final(text: str, *, remote_images: bool = True) -> tuple[str, bool]:
    """``render_markdown``, and whether the text would render the same again (False when it
    ran out of its CPU budget and is shown as text: another time it may render)."""
    return _render(text or "", remote_images=remote_images)


def _render(text: str, *, remote_images: bool = True) -> tuple[str, bool]:
    """The HTML, and whether it would be the same next time (not a fallback for time)."""
    if len(text) > MAX_MARKDOWN_CHARS:
        return _as_text(text), True
    parser = _parser()
    cleaner = _cleaner if remote_images else _cleaner_without_remote_images
    _local.deadline = time.thread_time() + _budget_seconds()
    try:
        rendered = parser.convert(text)
        depth, children, elements = _shape(rendered)
        if depth > MAX_HTML_DEPTH or children > MAX_HTML_CHILDREN or elements > MAX_HTML_ELEMENTS:
            log.info("Markdown renders too many elements, too deep or wide; shown as text")
            return _as_text(text), True
        if _local.deadline - time.thread_time() < elements * _SANITISE_SECONDS_PER_ELEMENT:
            raise _OverBudget
        return cleaner.clean(rendered), True
    except _OverBudget:
        log.info("Markdown of %d characters over its render budget; shown as text", len(text))
        _local.parser = None  # its processors stopped half-way; start afresh
        return _as_text(text), False
    except SoftTimeLimitExceeded:  # rendering an email in a task whose time is up
        _local.parser = None
        raise
    except Exception:  # a renderer's bug must not break a page or an email: the text is there
        log.warning("Markdown could not be rendered; shown as text", exc_info=True)
        _local.parser = None
        return _as_text(text), True
    finally:
        _local.deadline = math.inf
        try:
            parser.reset()
        except Exception:  # the next text gets a new parser
            _local.parser = None


_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)[^<>]*?(/?)>")
_VOID_ELEMENTS = frozenset({"br", "hr", "img", "input", "meta", "link", "wbr", "area", "col"})


def _shape(rendered: str) -> tuple[int, int, int]:
    """How deep the elements of HTML nest, the most elements one holds, and how many there
    are, from its start and end tags (linear; unclosed tags count as open)."""
    children = [0]  # per open element, the elements it holds so far
    deepest = widest = elements = 0
    for tag in _TAG.finditer(rendered):
        if tag[1]:
            if len(children) > 1:
                children.pop()
            continue
        elements += 1
        children[-1] += 1
        widest = max(widest, children[-1])
        if not tag[3] and tag[2].lower() not in _VOID_ELEMENTS:
            children.append(0)
            deepest = max(deepest, len(children) - 1)
    return deepest, widest, elements


def _as_text(text: str) -> str:
    """The text as escaped paragraphs: what Markdown would show if it had no syntax."""
    paragraphs: list[list[str]] = [[]]
    for line in text.split("\n"):
        if line.strip():
            paragraphs[-1].append(html.escape(line))
        elif paragraphs[-1]:
            paragraphs.append([])
    return "\n".join(f"<p>{'<br>'.join(lines)}</p>" for lines in paragraphs if lines)


# Rendered HTML is cached by the text's hash (content-addressed: nothing to invalidate). Bump
# the version when the allow-list, the extensions or the limits change.
_CACHE_VERSION = "md2"
_CACHE_SECONDS = 7 * 24 * 3600
# A text shown as escaped text because rendering ran out of time may render in time later
# (a less busy worker, a change of budget); it is tried again after this long, not at every view.
_FALLBACK_CACHE_SECONDS = 3600


def _cache_key(text: str) -> str:
    return f"{_CACHE_VERSION}:{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()}"


def render_markdown_many(texts: Sequence[str]) -> list[str]:
    """``render_markdown`` for a whole thread: one cache round trip for all of them, and only
    the texts nobody rendered before are rendered (a long thread is not re-rendered per view)."""
    keys = [_cache_key(text) for text in texts]
    try:
        cached = cache.get_many(keys)
    except Exception:  # the cache is down: render, the page still works
        log.warning("markdown cache unavailable", exc_info=True)
        cached = {}
    fresh: dict[str, str] = {}
    retry_soon: dict[str, str] = {}
    out = []
    for key, text in zip(keys, texts, strict=True):
        rendered = cached.get(key) or fresh.get(key) or retry_soon.get(key)
        if rendered is None:
            rendered, final = _render(text)
            (fresh if final else retry_soon)[key] = rendered
        out.append(rendered)
    for batch, seconds in ((fresh, _CACHE_SECONDS), (retry_soon, _FALLBACK_CACHE_SECONDS)):
        if batch:
            try:
                cache.set_many(batch, timeout=seconds)
            except Exception:
                log.warning("markdown cache unavailable", exc_info=True)
    return out
