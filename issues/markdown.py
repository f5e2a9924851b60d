"""User Markdown to safe HTML: Python-Markdown renders, bleach keeps only an allow-list.

Everything a user or a customer writes goes through ``render_markdown``; nothing executable
(script, event handlers, ``javascript:`` URLs, style beyond text alignment) survives.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence

import bleach
import markdown
from bleach.css_sanitizer import CSSSanitizer
from bleach.linkifier import DEFAULT_CALLBACKS
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
_EXTENSIONS = ["fenced_code", "tables", "sane_lists", "nl2br", "abbr", "def_list", "md_in_html"]


def _nofollow_external(attrs: dict, new: bool = False) -> dict:  # type: ignore[type-arg]
    href = attrs.get((None, "href"), "")
    if href.startswith(("http://", "https://")):
        attrs[(None, "rel")] = "nofollow noopener noreferrer"
    return attrs


_cleaner = bleach.Cleaner(
    tags=ALLOWED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    protocols=ALLOWED_PROTOCOLS,
    css_sanitizer=_css,
    strip=True,
    strip_comments=True,
    filters=[
        # Linkify bare URLs after cleaning, so its output is itself allow-listed.
        lambda source: bleach.linkifier.LinkifyFilter(
            source, callbacks=[*DEFAULT_CALLBACKS, _nofollow_external], skip_tags={"pre", "code"}
        )
    ],
)


log = logging.getLogger(__name__)
_local = threading.local()


def _parser() -> markdown.Markdown:
    # Building a Markdown instance (extensions, processors) costs more than most conversions:
    # one per thread, reset between documents.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = markdown.Markdown(extensions=_EXTENSIONS, output_format="html")
    return parser


def render_markdown(text: str) -> str:
    """Render Markdown and sanitise the result. Returns HTML safe to mark as such."""
    parser = _parser()
    try:
        html = parser.convert(text or "")
    finally:
        parser.reset()
    return _cleaner.clean(html)


# Rendered HTML is cached by the text's hash (content-addressed: nothing to invalidate). Bump
# the version when the allow-list or the extensions change.
_CACHE_VERSION = "md1"
_CACHE_SECONDS = 7 * 24 * 3600


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
    out = []
    for key, text in zip(keys, texts, strict=True):
        html = cached.get(key)
        if html is None:
            html = fresh.get(key) or render_markdown(text)
            fresh[key] = html
        out.append(html)
    if fresh:
        try:
            cache.set_many(fresh, timeout=_CACHE_SECONDS)
        except Exception:
            log.warning("markdown cache unavailable", exc_info=True)
    return out
