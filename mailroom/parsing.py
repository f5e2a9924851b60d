"""Inbound MIME parsing: the raw bytes of one email in, one ``ParsedEmail`` out.

Speed and safety decide the shape of this module:

- The header block is split here, by hand (RFC 5322 §2.2), so that routing, which needs only
  headers, never pays for the MIME tree. The MIME tree is parsed by the stdlib with the compat32
  policy (about six times faster than ``policy.default``) the first time a body or an attachment
  is asked for.
- Every decoding step (RFC 2047 words, RFC 2231 parameters, transfer encodings, charsets) is
  done here, leniently: whatever a sender's client got wrong ends as text, never as an exception.
  ``MalformedEmail`` is raised only when there is nothing to work with at all.
- Anyone can send us anything, so no stage may cost more than linear time in what it reads:
  each stage looks at a bounded amount (the raw email itself is kept whole by the ledger), and
  the optional, expensive ones (HTML to Markdown, reply trimming) run within a per-email CPU
  budget and fall back to plain text when it is spent. What was cut or simplified is listed in
  ``ParsedEmail.truncated``, for the issue to say.
"""

from __future__ import annotations

import binascii
import bisect
import codecs
import contextlib
import functools
import html
import logging
import re
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email._policybase import Compat32
from email.generator import BytesGenerator
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from io import BytesIO
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import charset_normalizer
from bs4 import BeautifulSoup

# Celery's soft time limit raises SoftTimeLimitExceeded wherever the task is: every "except
# Exception" fallback in this module lets it through, for the ledger to record as ours.
from celery.exceptions import SoftTimeLimitExceeded
from mailparser_reply import EmailMessage as ReplyParserMessage
from markdownify import MarkdownConverter

if TYPE_CHECKING:
    from datetime import datetime

logger = logging.getLogger(__name__)

# How deep the MIME tree is walked. Real mail nests five or six levels (a forward of a reply
# with an inline image); anything deeper is an attack or a loop, and is cut off.
MAX_DEPTH = 50
# The stdlib parser checks every line against every open boundary and recurses per level, so a
# deeply nested message costs depth x lines and then a RecursionError. Above this estimated
# depth the body is not MIME-parsed at all (see ParsedEmail._body_message).
_MAX_PARSE_DEPTH = 2 * MAX_DEPTH
# The same cost, line by line: the lines of the body times the multiparts open around them.
# Real mail stays far below (25 MB of base64 three levels deep: about a million); above it the
# body is not MIME-parsed either.
_MAX_PARSE_WORK = 3_000_000
MAX_FILENAME_BYTES = 255
# Seconds of CPU one email may spend in the optional stages (SERVICEDESK_PARSE_BUDGET_SECONDS).
DEFAULT_PARSE_BUDGET_SECONDS = 2.0


class MalformedEmail(Exception):
    """The sender's fault: the bytes are not an email in any usable sense (e.g. empty)."""


class ParseBudget:
    """The CPU time one email may spend in parsing, counted stage by stage.

    Only the time spent inside ``stage()`` blocks counts, on this thread's CPU clock: a batch
    that parses 25 emails' headers first and their bodies later does not charge one email for
    the others, and a busy machine does not make an email "slow". Stages check ``exhausted()``
    before (and, where they loop, during) their work and fall back to something cheaper.
    """

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = _configured_budget() if seconds is None else seconds
        self.spent = 0.0
        self._started: float | None = None

    @contextlib.contextmanager
    def stage(self) -> Iterator[None]:
        if self._started is not None:  # nested: the outer stage is already counting
            yield
            return
        self._started = time.thread_time()
        try:
            yield
        finally:
            self.spent += time.thread_time() - self._started
            self._started = None

    def exhausted(self) -> bool:
        running = time.thread_time() - self._started if self._started is not None else 0.0
        return self.spent + running >= self.seconds


class _OverBudget(Exception):
    """Raised inside a stage whose email has spent its budget."""


def _configured_budget() -> float:
    # This module does not need Django; the setting applies when there is one.
    from django.conf import settings

    if not settings.configured:
        return DEFAULT_PARSE_BUDGET_SECONDS
    return float(
        getattr(settings, "SERVICEDESK_PARSE_BUDGET_SECONDS", DEFAULT_PARSE_BUDGET_SECONDS)
    )


def _note(truncated: list[str] | None, text: str) -> None:
    if truncated is not None and text not in truncated:
        truncated.append(text)


@dataclass
class Attachment:
    filename: str
    content_type: str
    content: bytes = field(repr=False)
    content_id: str | None = None
    inline: bool = False

    @property
    def size(self) -> int:
        return len(self.content)


# ---------------------------------------------------------------------------------------------
# Charsets


# Labels that mail clients write but Python does not know, or knows as a smaller charset than
# the one the client really used (Outlook writes "ks_c_5601-1987" for cp949, "gb2312" for GBK,
# "shift_jis" for cp932 with its NEC/IBM extensions, "big5" for cp950). Each label maps to the
# codecs tried in order; the first that decodes strictly wins.
_CHARSET_CODECS: dict[str, tuple[str, ...]] = {
    "ks_c_5601-1987": ("cp949",),
    "ks_c_5601": ("cp949",),
    "ks_c_5601-1989": ("cp949",),
    "ksc5601": ("cp949",),
    "ksc_5601": ("cp949",),
    "euc-kr": ("cp949",),
    "x-windows-949": ("cp949",),
    "windows-949": ("cp949",),
    "uhc": ("cp949",),
    "gb2312": ("gb18030",),
    "gb_2312-80": ("gb18030",),
    "csgb2312": ("gb18030",),
    "euc-cn": ("gb18030",),
    "x-euc-cn": ("gb18030",),
    "gbk": ("gb18030",),
    "x-gbk": ("gb18030",),
    "cp936": ("gb18030",),
    "windows-936": ("gb18030",),
    "chinese": ("gb18030",),
    # Not shift_jis_2004 as a fallback: it reads 0x5C as "¥" and 0x7E as "‾", and Japanese
    # users mean "\\" and "~" (paths, URLs).
    "shift_jis": ("cp932",),
    "shift-jis": ("cp932",),
    "sjis": ("cp932",),
    "x-sjis": ("cp932",),
    "s-jis": ("cp932",),
    "ms_kanji": ("cp932",),
    "csshiftjis": ("cp932",),
    "windows-31j": ("cp932",),
    "x-ms-cp932": ("cp932",),
    "x-mac-japanese": ("cp932",),
    "euc-jp": ("euc_jp", "euc_jis_2004"),
    "x-euc-jp": ("euc_jp", "euc_jis_2004"),
    # Japanese mobile and Windows mailers put half-width katakana and NEC symbols (①) into
    # "iso-2022-jp"; plain iso2022_jp rejects them.
    "iso-2022-jp": ("iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2004", "iso2022_jp_2"),
    "csiso2022jp": ("iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2004", "iso2022_jp_2"),
    "big5": ("cp950", "big5hkscs"),
    "x-x-big5": ("cp950", "big5hkscs"),
    "cn-big5": ("cp950", "big5hkscs"),
    "csbig5": ("cp950", "big5hkscs"),
    "x-mac-chinesetrad": ("cp950", "big5hkscs"),
    "x-mac-chinesesimp": ("gb18030",),
    "x-mac-korean": ("cp949",),
    # Visual and explicit-direction Hebrew/Arabic (RFC 1556): the same bytes as the plain set.
    "iso-8859-8-i": ("iso8859_8",),
    "iso-8859-8-e": ("iso8859_8",),
    "iso-8859-6-i": ("iso8859_6",),
    "iso-8859-6-e": ("iso8859_6",),
    "windows-874": ("cp874",),
    "x-windows-874": ("cp874",),
    "tis-620": ("cp874",),
    "x-mac-roman": ("mac_roman",),
    "macintosh": ("mac_roman",),
    "x-mac-ce": ("mac_latin2",),
    "x-mac-centraleurroman": ("mac_latin2",),
    "x-mac-cyrillic": ("mac_cyrillic",),
    "x-mac-ukrainian": ("mac_cyrillic",),
    "x-mac-greek": ("mac_greek",),
    "x-mac-turkish": ("mac_turkish",),
    "x-mac-icelandic": ("mac_iceland",),
    "x-mac-croatian": ("mac_croatian",),
    "x-mac-romanian": ("mac_romanian",),
    "unicode-1-1-utf-7": ("utf_7",),
    "utf8mb4": ("utf_8",),
    # What the web (WHATWG Encoding) does too: text labelled Latin-1 is in practice cp1252
    # (curly quotes, euro sign in 0x80-0x9F, which Latin-1 leaves as control characters).
    "iso-8859-1": ("cp1252", "latin_1"),
    "iso8859-1": ("cp1252", "latin_1"),
    "iso_8859-1": ("cp1252", "latin_1"),
    "latin1": ("cp1252", "latin_1"),
    "latin-1": ("cp1252", "latin_1"),
    "l1": ("cp1252", "latin_1"),
}
_LABELS_MEANING_NO_CHARSET = frozenset(
    {"unknown-8bit", "x-unknown", "unknown", "x-user-defined", "default", "none", "8bit"}
)
# Codecs that Python has but that no mail client means: decoding with them would turn text
# into something else (escape sequences interpreted, punycode...).
_CODECS_NEVER_USED = frozenset(
    {"unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined", "charmap"}
)
# 7-bit encodings: ASCII bytes are not ASCII text in them, so the ASCII fast path is wrong.
_SEVEN_BIT_CODECS = frozenset(
    {"utf_7", "iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2004", "iso2022_jp_2", "iso2022_kr", "hz"}
)
# Where text that is valid UTF-8 is UTF-8 whatever the label says: old clients and list servers
# stamp "iso-8859-1" on everything, and real Latin-1 text is practically never valid UTF-8.
_LATIN1_FAMILY = frozenset({"cp1252", "latin_1", "iso8859_15"})


@functools.lru_cache(maxsize=512)
def _codecs_for(charset: str | None) -> tuple[str, ...]:
    """The Python codecs to try, strictly and in order, for a declared charset label."""
    if not charset:
        return ()
    label = charset.strip().strip("\"'").strip().lower()
    if not label or label in _LABELS_MEANING_NO_CHARSET:
        return ()
    if label in _CHARSET_CODECS:
        return _CHARSET_CODECS[label]
    candidates = [label]
    if label.startswith("x-"):
        candidates.append(label[2:])
    if match := re.fullmatch(r"(?:x-)?(?:windows|win|cp|ms)[-_ ]?(\d{3,5})", label):
        candidates.append(f"cp{match[1]}")
    if match := re.fullmatch(r"iso[-_ ]?8859[-_ ]?(\d{1,2})(?:[-_:].*)?", label):
        candidates.append(f"iso8859_{match[1]}")
    for candidate in candidates:
        try:
            info = codecs.lookup(candidate)
        except (LookupError, ValueError):
            continue
        if info.name.replace("-", "_") in _CODECS_NEVER_USED:
            return ()
        if not getattr(info, "_is_text_encoding", True):
            return ()
        name = info.name.replace("-", "_")
        if name in ("latin_1", "iso8859_1"):
            return ("cp1252", "latin_1")
        return (name,)
    return ()


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Decode bytes from mail to text, whatever their label says; never raises.

    Order: the declared charset (aliases fixed) if it decodes strictly; UTF-8; charset-normalizer's
    guess; windows-1252 with replacement characters. One exception: text labelled Latin-1 or
    windows-1252 that is valid UTF-8 is UTF-8.
    """
    if not data:
        return ""
    candidates = _codecs_for(charset)
    if data.isascii() and b"\x1b" not in data and not _SEVEN_BIT_CODECS.intersection(candidates):
        return _without_nul(data.decode("ascii"))
    for codec in candidates:
        if codec in _LATIN1_FAMILY and _is_utf8(data):
            return _without_nul(data.decode("utf-8"))
        try:
            return _without_nul(data.decode(codec))
        except (UnicodeError, LookupError):
            continue
    if _is_utf8(data):
        return _without_nul(data.decode("utf-8"))
    return _without_nul(_guess_and_decode(data))


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _without_nul(text: str) -> str:
    # PostgreSQL text cannot hold NUL, and no mail means one. Byte order marks turn up at the
    # start and, from iOS Mail, in the middle of quoted text; they are invisible either way.
    if "\x00" in text:
        text = text.replace("\x00", "")
    if "\ufeff" in text:
        text = text.replace("\ufeff", "")
    return text


def _guess_and_decode(data: bytes) -> str:
    try:
        # UTF-16/32 without a byte order mark is a false friend for short CJK text; mail bodies
        # in UTF-16 carry a BOM, which the detector sees anyway.
        matches = [
            match
            for match in charset_normalizer.from_bytes(data)
            if not match.encoding.startswith(("utf_16", "utf_32")) or match.bom
        ]
    except SoftTimeLimitExceeded:
        raise
    except Exception:  # a guess is optional; the fallback below always works
        logger.debug("charset-normalizer failed", exc_info=True)
        matches = []
    if matches:
        best = matches[0]
        # The detector ranks look-alike code pages that read the text equally well by chance
        # (cp1250 "crčme" over cp1252 "crème"). Mail without a charset is overwhelmingly
        # Windows Western, so it wins every tie.
        for match in matches:
            if (
                match.chaos <= best.chaos
                and match.coherence >= best.coherence - 0.05
                and (match.encoding == "cp1252" or "cp1252" in match.could_be_from_charset)
            ):
                best = match
                break
        for codec in (_GUESS_PREFERRED.get(best.encoding), best.encoding):
            if codec:
                try:
                    return data.decode(codec)
                except (UnicodeError, LookupError):
                    continue
    return data.decode("cp1252", errors="replace")


# The detector names JIS X 0213 variants for Shift_JIS text; those read "\\" as "¥".
_GUESS_PREFERRED = {"shift_jis_2004": "cp932", "shift_jisx0213": "cp932", "shift_jis": "cp932"}


def _str_to_bytes(value: str) -> bytes:
    """Undo the stdlib's surrogateescape decoding: the bytes as they were in the message."""
    return value.encode("utf-8", "surrogateescape")


def _decode_8bit_header(data: bytes) -> str:
    if data.isascii():
        return data.decode("ascii")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _str_8bit_to_text(value: str) -> str:
    """A stdlib-parsed header or parameter value (raw bytes as surrogates) as real text."""
    if value.isascii():
        return value
    return _decode_8bit_header(_str_to_bytes(value))


# ---------------------------------------------------------------------------------------------
# Header values: unfolding and RFC 2047 encoded words

_FOLDING = re.compile(r"\r?\n|\r")
# RFC 2047 §2, with leniencies for what clients send: spaces inside Q text, a language suffix
# on the charset (RFC 2231 §5: "utf-8*en").
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")


def decode_header_value(value: str) -> str:
    """Unfold a header value and decode its RFC 2047 encoded words; never raises."""
    if "\n" in value or "\r" in value:
        value = _FOLDING.sub("", value)
    if "=?" in value:
        value = _decode_encoded_words(value)
    if "\x00" in value:
        value = value.replace("\x00", "")
    return value.strip()


def _decode_encoded_words(value: str) -> str:
    out: list[str] = []
    pending = bytearray()
    pending_charset: str | None = None
    position = 0
    after_word = False

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending_charset is not None:
            out.append(decode_bytes(bytes(pending), pending_charset))
        pending = bytearray()
        pending_charset = None

    for match in _ENCODED_WORD.finditer(value):
        gap = value[position : match.start()]
        # Whitespace between two encoded words is not part of the text (RFC 2047 §6.2).
        if not (after_word and not gap.strip()):
            flush()
            out.append(gap)
        charset = match[1].split("*", 1)[0].lower()
        text = match[3].encode("utf-8", "surrogateescape")
        data = _b64decode(text) if match[2] in "bB" else binascii.a2b_qp(text, header=True)
        # Adjacent words in the same charset are joined as bytes first: clients split a
        # multi-byte character across two words (invalid, and common in CJK mail).
        if pending_charset is not None and charset != pending_charset:
            flush()
        pending += data
        pending_charset = charset
        position = match.end()
        after_word = True
    flush()
    out.append(value[position:])
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Transfer encodings

_NOT_BASE64_ALPHABET = bytes(range(256)).translate(
    None, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
)
_BASE64_CHUNK = re.compile(rb"[A-Za-z0-9+/]+=*")


def _b64decode(data: bytes) -> bytes:
    """Base64 as mailers write it: missing padding, truncated, or several padded chunks."""
    decoded: bytes | None
    try:
        decoded = binascii.a2b_base64(data)
    except binascii.Error:
        decoded = None
    else:
        pad = data.find(b"=")
        # a2b_base64 stops at the first padding; data after it means concatenated chunks.
        if pad == -1 or not data[pad:].strip(b"=\r\n\t "):
            return decoded
    cleaned = data.translate(None, _NOT_BASE64_ALPHABET)
    out = bytearray()
    for chunk in _BASE64_CHUNK.findall(cleaned):
        chunk = chunk.rstrip(b"=")
        if len(chunk) % 4 == 1:  # a lone trailing character carries no whole byte
            chunk = chunk[:-1]
        try:
            out += binascii.a2b_base64(chunk + b"=" * (-len(chunk) % 4))
        except binascii.Error:
            continue
    return bytes(out) if out or decoded is None else decoded


_BASE64_BODY_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n"


def _looks_like_base64(data: bytes) -> bool:
    # A part labelled base64 that is really plain text (a wrong Content-Transfer-Encoding):
    # base64 lines have no spaces or punctuation, prose has plenty.
    junk = len(data.translate(None, _BASE64_BODY_BYTES))
    return junk <= 2 or junk * 100 <= len(data)


def _raw_payload(part: Message) -> str | list[Message]:
    """The part's payload as parsed: its children, or its text with raw bytes surrogateescaped.

    Not get_payload(): on 8-bit text that decodes with the declared charset, replacing what
    does not fit (and raises TypeError on an RFC 2231 ``charset*``); we need the bytes.
    """
    payload = part._payload  # type: ignore[attr-defined]
    return payload if isinstance(payload, list) else str(payload or "")


def _payload_bytes(part: Message) -> bytes:
    """The part's content with its transfer encoding undone."""
    payload = _raw_payload(part)
    if isinstance(payload, list):
        return _serialize_payload(payload)
    data = _str_to_bytes(payload)
    encoding = str(part.get("content-transfer-encoding") or "").strip().lower()
    encoding = encoding.split(None, 1)[0] if encoding else ""
    if encoding == "base64":
        return _b64decode(data) if _looks_like_base64(data) else data
    if encoding == "quoted-printable":
        return binascii.a2b_qp(data)
    if encoding in ("x-uuencode", "uuencode", "x-uue", "uue"):
        try:
            decoded = part.get_payload(decode=True)
        except SoftTimeLimitExceeded:
            raise
        except Exception:  # the stdlib's uu decoder raises on broken input
            return data
        return decoded if isinstance(decoded, bytes) else data
    return data


# ---------------------------------------------------------------------------------------------
# The header block


class _RawHeaderPolicy(Compat32):
    """compat32 that hands header values back as parsed.

    compat32 turns a value holding raw 8-bit bytes into a ``Header`` whose ``str()`` replaces
    every such byte with U+FFFD, which would destroy raw UTF-8 filenames; we decode ourselves.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:  # type: ignore[override]
        return value


_POLICY = _RawHeaderPolicy()


class _LenientMessage(Message):
    """A MIME part whose parameters never raise.

    ``email.utils.decode_params`` raises TypeError when a part has both ``name*`` and ``name*0``
    (it sorts None against int), and the parser asks for the boundary while parsing, so one
    such header would make the whole message unparseable. A bad parameter is a missing one.
    """

    def get_params(
        self, failobj: Any = None, header: str = "content-type", unquote: bool = True
    ) -> Any:
        try:
            return super().get_params(failobj, header, unquote)
        except (TypeError, ValueError, IndexError, LookupError):
            return failobj

    def get_param(
        self, param: str, failobj: Any = None, header: str = "content-type", unquote: bool = True
    ) -> Any:
        try:
            return super().get_param(param, failobj, header, unquote)
        except (TypeError, ValueError, IndexError, LookupError):
            return failobj


# RFC 5322 §2.2 field name: printable ASCII except colon; obsolete syntax allows WSP before ":".
_HEADER_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:")
_MIME_FIELDS = frozenset(
    {"content-type", "content-transfer-encoding", "content-disposition", "content-id"}
)


class _Field:
    """One header field: its name as written, and its value with the folding kept
    (continuation lines joined by "\\n"), as bytes and as text (8-bit read as UTF-8 or cp1252)."""

    __slots__ = ("lname", "name", "raw", "text")

    def __init__(self, name: bytes, raw: bytes) -> None:
        self.name = _decode_8bit_header(name)
        self.lname = self.name.lower()
        self.raw = raw
        self.text = _decode_8bit_header(raw)


_HEADER_END = re.compile(rb"\n\r?\n")


def _split_header_block(raw: bytes) -> tuple[list[_Field], int]:
    """Split the header fields off; return them and the offset of the body."""
    end = _HEADER_END.search(raw)
    block = raw[: end.start() if end else len(raw)]
    body_offset = end.end() if end else len(raw)
    # Fast path, one regex match per field: every line is a field or a continuation.
    fields: list[_Field] = []
    position = 0
    while position < len(block):
        match = _WELL_FORMED_FIELD.match(block, position)
        if match is None:
            return _split_header_lines(block, body_offset)
        value = match[2]
        if b"\r" in value:
            value = value.replace(b"\r", b"")
        fields.append(_Field(match[1], value))
        position = match.end()
    return fields, body_offset


# A field and its continuation lines, "\r" optional before each "\n".
_WELL_FORMED_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:[ \t]*([^\n]*(?:\n[ \t][^\n]*)*)(?:\n|\Z)")


def _split_header_lines(block: bytes, body_offset: int) -> tuple[list[_Field], int]:
    """The slow path, line by line, for a header block with lines that are not fields."""
    lines = block.split(b"\n")
    fields: list[_Field] = []
    name: bytes | None = None
    value: list[bytes] = []
    offset = 0
    for index, line in enumerate(lines):
        start = offset
        offset += len(line) + 1
        if line.endswith(b"\r"):
            line = line[:-1]
        if line[:1] in (b" ", b"\t"):
            if name is not None:
                value.append(line)
            continue
        match = _HEADER_FIELD.match(line)
        if match:
            if name is not None:
                fields.append(_Field(name, b"\n".join(value)))
            name, value = match[1], [line[match.end() :].lstrip(b" \t")]
        elif name is None and line.startswith(b"From "):
            pass  # an mbox "From " line, not a header
        elif index + 1 < len(lines) and _is_header_line(lines[index + 1]):
            # A line without a colon in the middle of the header block (a broken client, a
            # wrapped line that lost its indent): keep its text with the field before it.
            if name is not None:
                value.append(b" " + line)
        else:
            # No blank line between header and body: the body starts here.
            if name is not None:
                fields.append(_Field(name, b"\n".join(value)))
            return fields, start
    if name is not None:
        fields.append(_Field(name, b"\n".join(value)))
    return fields, body_offset


def _is_header_line(line: bytes) -> bool:
    return line[:1] in (b" ", b"\t") or _HEADER_FIELD.match(line) is not None


# ---------------------------------------------------------------------------------------------
# Addresses and message ids

_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")


def _message_ids(value: str) -> list[str]:
    ids = [f"<{found}>" for found in _MESSAGE_ID.findall(value)]
    if not ids:
        # Without angle brackets (broken clients): bare tokens that look like ids.
        ids = [f"<{token}>" for token in re.split(r"[\s,]+", value) if "@" in token]
    return ids


_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
# "Name <addr>" or "addr", as almost every From/To/Cc is written: no quotes, comments, groups or
# escapes. Those go to getaddresses, which handles everything but is slow (pure Python). No two
# quantifiers here may match the same characters: the name takes its spaces with it (stripped
# below), or a name of many spaces would be tried split at every one of them.
_SIMPLE_ADDRESS = re.compile(
    r"(?:([^<>,\"()\\:;]*)<([^<>\s,\"()\\:;]+)>|\s*([^<>\s,\"()\\:;]+))\s*"
)


def _parse_addresses(value: str) -> list[tuple[str, str]]:
    """(display name, address) pairs, as email.utils.getaddresses returns them."""
    pairs = []
    for item in value.split(","):
        if not item.strip():
            continue
        match = _SIMPLE_ADDRESS.fullmatch(item)
        if match is None:
            try:
                return getaddresses([value])
            except RecursionError:  # RFC 5322 comments nest, and the stdlib recurses per level
                logger.info("address header nested too deep; no addresses read from it")
                return []
        pairs.append(((match[1] or "").strip(), match[2] or match[3]))
    return pairs


def _normalize_address(address: str) -> str | None:
    address = address.strip().strip("<>").strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or _SPACE_OR_CONTROL.search(address):
        return None
    return f"{local}@{domain.rstrip('.').lower()}"


# ---------------------------------------------------------------------------------------------
# Parts, filenames


def _params(part: Message, header: str = "content-type") -> dict[str, str]:
    """A header's parameters as text: RFC 2231 (charset, continuations) and RFC 2047 decoded.

    An RFC 2231 value wins over a plain one of the same name (RFC 6266 §4.3: the plain one is
    the fallback for old readers).
    """
    params = part.get_params(header=header) or []
    result: dict[str, str] = {}
    extended: set[str] = set()
    for key, value in params[1:]:
        key = key.lower()
        if isinstance(value, tuple):  # RFC 2231: (charset, language, octets as latin-1 chars)
            if key not in extended:
                charset, _language, text = value
                result[key] = decode_bytes(_latin1_octets(text), charset or None)
                extended.add(key)
        elif key not in result:
            # Encoded words inside a quoted parameter are forbidden by RFC 2047 §5 and written
            # by Outlook and Gmail anyway; raw UTF-8 bytes are written by everything else.
            result[key] = decode_header_value(_str_8bit_to_text(value))
    return result


def _latin1_octets(text: str) -> bytes:
    try:
        return text.encode("latin-1", "surrogateescape")
    except UnicodeEncodeError:
        return _str_to_bytes(text)


def _disposition(part: Message) -> str:
    value = str(part.get("content-disposition") or "")
    return value.split(";", 1)[0].strip().lower()


def _content_id(part: Message) -> str | None:
    value = _str_8bit_to_text(str(part.get("content-id") or "")).strip().strip("<>").strip()
    return value or None


_CONTROL_CHARS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]"
)
_EXTENSIONS = {
    "application/octet-stream": ".bin",
    "application/pdf": ".pdf",
    "application/zip": ".zip",
    "application/ms-tnef": ".dat",
    "application/pgp-signature": ".asc",
    "application/pkcs7-signature": ".p7s",
    "application/x-pkcs7-signature": ".p7s",
    "application/msword": ".doc",
    "application/vnd.ms-excel": ".xls",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/json": ".json",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/heic": ".heic",
    "image/svg+xml": ".svg",
    "image/bmp": ".bmp",
    "image/tiff": ".tif",
    "text/plain": ".txt",
    "text/html": ".html",
    "text/calendar": ".ics",
    "text/csv": ".csv",
    "text/x-vcard": ".vcf",
    "text/vcard": ".vcf",
    "text/rfc822-headers": ".txt",
    "message/rfc822": ".eml",
    "message/global": ".eml",
    "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt",
    "audio/mpeg": ".mp3",
    "video/mp4": ".mp4",
}


def clean_filename(name: str | None, *, content_type: str, index: int) -> str:
    """A safe, non-empty file name: no directories, no control or bidi characters, ≤255 bytes."""
    # NFC: macOS writes decomposed names ("U" + combining diaeresis for "Ü").
    name = unicodedata.normalize("NFC", name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _CONTROL_CHARS.sub("", name).strip().rstrip(". ")
    if name in ("", ".", ".."):
        name = f"attachment-{index}{_EXTENSIONS.get(content_type, '')}"
    encoded = name.encode("utf-8")
    if len(encoded) > MAX_FILENAME_BYTES:
        stem, dot, extension = name.rpartition(".")
        suffix = f".{extension}" if dot and stem and len(extension.encode()) <= 16 else ""
        stem = name[: -len(suffix)] if suffix else name
        budget = MAX_FILENAME_BYTES - len(suffix.encode("utf-8"))
        name = stem.encode("utf-8")[:budget].decode("utf-8", "ignore") + suffix
    return name


def _serialize_payload(messages: list[Message]) -> bytes:
    out = BytesIO()
    for message in messages:
        try:
            BytesGenerator(out, mangle_from_=False, policy=_POLICY).flatten(message)
        except SoftTimeLimitExceeded:
            raise
        except Exception:  # a broken inner message (or one nested too deep) must not lose the rest
            logger.debug("could not serialise an attached message", exc_info=True)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# The MIME walk


@dataclass
class _Chunk:
    """A piece of the body: its plain text and/or its HTML, whichever the sender gave."""

    plain: str | None = None
    html: str | None = None


@dataclass
class _PendingAttachment:
    part: Message
    content_type: str
    disposition: str
    filename: str | None
    whole: bool = False  # a subtree cut off at MAX_DEPTH: serialised as it is, not decoded


@dataclass
class _Content:
    chunks: list[_Chunk]
    attachments: list[Attachment]


_CID_REFERENCE = re.compile(r"""cid:([^\s"'<>)]+)""", re.IGNORECASE)
_BOUNDARY_PARAM = re.compile(rb"""boundary\s*=\s*"?([^";\r\n]+)"?""", re.IGNORECASE)
_CLOSE_DELIMITER = re.compile(rb"^--(\S+?)--[ \t]*\r?$", re.MULTILINE)
_FIRST_DELIMITER = re.compile(rb"^--(\S{1,200}?)(?:--)?[ \t]*\r?$", re.MULTILINE)


class _Walker:
    def __init__(self) -> None:
        self.pending: list[_PendingAttachment] = []
        self.referenced_cids: set[str] = set()
        self.cut_off = False

    def walk(self, part: Message, depth: int = 0) -> list[_Chunk]:
        if depth > MAX_DEPTH:
            # Not walked any further, but not lost: the whole subtree becomes one file.
            logger.info("MIME tree deeper than %d levels; the rest kept as a file", MAX_DEPTH)
            self.cut_off = True
            self.pending.append(
                _PendingAttachment(part, "message/rfc822", "attachment", None, whole=True)
            )
            return []
        content_type = part.get_content_type()
        maintype = content_type.partition("/")[0]
        if maintype == "multipart":
            payload = _raw_payload(part)
            children = payload if isinstance(payload, list) else _recover_multipart(part)
            if children is None:
                return self._leaf(part, "text/plain")
            if content_type == "multipart/alternative":
                return self._alternative(children, depth)
            chunks: list[_Chunk] = []
            for child in children:
                chunks.extend(self.walk(child, depth + 1))
            return chunks
        return self._leaf(part, content_type)

    def _alternative(self, children: list[Message], depth: int) -> list[_Chunk]:
        # RFC 2046 §5.1.4 orders alternatives plainest first; the plain one becomes the text,
        # the last HTML one the HTML. Other alternatives (text/calendar) are attachments.
        plain: str | None = None
        html_body: str | None = None
        for child in children:
            chunks = self.walk(child, depth + 1)
            if not chunks:
                continue
            if plain is None and all(chunk.plain is not None for chunk in chunks):
                text = "\n\n".join(chunk.plain for chunk in chunks if chunk.plain)
                if text.strip():
                    plain = text
            htmls = [chunk.html for chunk in chunks if chunk.html]
            if htmls:
                html_body = "\n".join(htmls)
        if plain is None and html_body is None:
            return []
        return [_Chunk(plain=plain, html=html_body)]

    def _leaf(self, part: Message, content_type: str) -> list[_Chunk]:
        disposition = _disposition(part)
        type_params = _params(part)
        filename = _params(part, "content-disposition").get("filename") or type_params.get("name")
        is_body = disposition != "attachment" and not filename
        if content_type in ("text/plain", "text/html") and is_body:
            data = _payload_bytes(part)
            text = _normalize_newlines(decode_bytes(data, type_params.get("charset")))
            if content_type == "text/html":
                self.referenced_cids.update(unquote(c) for c in _CID_REFERENCE.findall(text))
                return [_Chunk(html=text)]
            if type_params.get("format", "").lower() == "flowed":
                text = unflow(text, delsp=type_params.get("delsp", "").lower() == "yes")
            return [_Chunk(plain=text)]
        self.pending.append(_PendingAttachment(part, content_type, disposition, filename))
        return []

    def attachments(self) -> list[Attachment]:
        cids = self.referenced_cids | {cid.lower() for cid in self.referenced_cids}
        result = []
        for index, pending in enumerate(self.pending, start=1):
            part, content_type = pending.part, pending.content_type
            filename = pending.filename
            if content_type in ("message/rfc822", "message/global") and not filename:
                subject = _attached_message_subject(part)
                filename = f"{subject}.eml" if subject else None
            content = _serialize_payload([part]) if pending.whole else _payload_bytes(part)
            content_id = _content_id(part)
            inline = pending.disposition == "inline" or (
                content_id is not None and (content_id in cids or content_id.lower() in cids)
            )
            result.append(
                Attachment(
                    filename=clean_filename(filename, content_type=content_type, index=index),
                    content_type=content_type,
                    content=content,
                    content_id=content_id,
                    inline=inline,
                )
            )
        return result


def _attached_message_subject(part: Message) -> str:
    payload = _raw_payload(part)
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        subject = payload[0].get("subject")
        if subject:
            return " ".join(decode_header_value(_str_8bit_to_text(str(subject))).split())
    return ""


def _recover_multipart(part: Message) -> list[Message] | None:
    """A multipart whose boundary parameter is missing or wrong: find the boundary it uses."""
    payload = _raw_payload(part)
    if not isinstance(payload, str):
        return None
    data = _str_to_bytes(payload)
    match = _FIRST_DELIMITER.search(data)
    if not match:
        return None
    boundary = match[1].replace(b'"', b"")
    try:
        recovered = message_from_bytes(
            b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\n\n' + data,
            _LenientMessage,
            policy=_POLICY,
        )
    except SoftTimeLimitExceeded:
        raise
    except Exception:  # RecursionError and whatever else: unrecoverable after all
        return None
    children = _raw_payload(recovered)
    return children if isinstance(children, list) and children else None


def mime_shape(data: bytes, *, depth_limit: int = _MAX_PARSE_DEPTH) -> tuple[int, int]:
    """(nesting, work) the stdlib's MIME parser would face on ``data``.

    Nesting: how many multiparts deep it goes. Work: its lines times the multiparts open around
    each (the parser checks every line against every open boundary). Estimated in one linear
    pass from boundary declarations and closing delimiters; counting stops once the nesting
    passes ``depth_limit``.
    """
    opens = [(m.start(), 1, m[1].strip()) for m in _BOUNDARY_PARAM.finditer(data)]
    if not opens:
        return 0, 0
    closes = [(m.start(), -1, m[1]) for m in _CLOSE_DELIMITER.finditer(data)]
    open_boundaries: list[bytes] = []
    open_counts: dict[bytes, int] = {}
    deepest = work = position = 0
    for at, kind, boundary in sorted(opens + closes):
        work += len(open_boundaries) * data.count(b"\n", position, at)
        position = at
        if kind == 1:
            open_boundaries.append(boundary)
            open_counts[boundary] = open_counts.get(boundary, 0) + 1
            deepest = max(deepest, len(open_boundaries))
            if deepest > depth_limit:
                return deepest, work
        elif open_counts.get(boundary):
            # A closing delimiter closes its multipart and every one opened inside it.
            while True:
                closed = open_boundaries.pop()
                open_counts[closed] -= 1
                if closed == boundary:
                    break
    work += len(open_boundaries) * data.count(b"\n", position)
    return deepest, work


def _normalize_newlines(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def unflow(text: str, *, delsp: bool = False) -> str:
    """Undo RFC 3676 format=flowed: join soft-wrapped lines, keep quote depth as "> "."""
    out: list[str] = []
    paragraph: str | None = None
    paragraph_depth = 0
    for line in text.split("\n"):
        stripped = line.lstrip(">")
        depth = len(line) - len(stripped)
        if stripped.startswith(" "):  # space-stuffing (RFC 3676 §4.4)
            stripped = stripped[1:]
        flowed = stripped.endswith(" ") and stripped != "-- "
        if flowed and delsp:
            stripped = stripped[:-1]
        if paragraph is not None and depth != paragraph_depth:
            out.append(_quoted(paragraph, paragraph_depth))
            paragraph = None
        paragraph = stripped if paragraph is None else paragraph + stripped
        paragraph_depth = depth
        if not flowed:
            out.append(_quoted(paragraph, depth))
            paragraph = None
    if paragraph is not None:
        out.append(_quoted(paragraph, paragraph_depth))
    return "\n".join(out)


def _quoted(text: str, depth: int) -> str:
    return f"{'>' * depth} {text}" if depth else text


# ---------------------------------------------------------------------------------------------
# Plain text as Markdown

# The characters a backslash escapes in our renderer (Python-Markdown's, with the tables
# extension's "|"). CommonMark escapes every ASCII punctuation character: a backslash before any
# of them is doubled, so that both renderers show it as written.
MARKDOWN_ESCAPABLE = frozenset("\\`*_{}[]()>#+-.!|")
# Escaping the character after the backslash too keeps "\\*" an asterisk rather than the start of
# emphasis. Not a backtick: Python-Markdown reads an escaped backslash before backticks as a
# backslash and then a code span, as CommonMark does, and code spans are left alone below.
_ESCAPED_AFTER_BACKSLASH = MARKDOWN_ESCAPABLE - {"`"}
_ESCAPED_BY_MARKDOWNIFY = _ESCAPED_AFTER_BACKSLASH - {"*", "_"}
_BACKSLASH_BEFORE_PUNCTUATION = re.compile(r"\\([!-/:-@\[-`{-~])")
_FENCE = re.compile(r"~{3,}|`{3,}")
_BACKTICKS = re.compile(r"`+")


def escape_markdown_backslashes(text: str) -> str:
    """Plain text that renders as Markdown the way it was written, as far as backslashes go.

    Markdown reads "\\\\srv\\share" as "\\srv\\share" and "C:\\Users\\*name*" as
    "C:\\Users*name*": every backslash before ASCII punctuation is escaped (and the punctuation
    after it, where Markdown would act on it). Not in code, where Markdown reads backslashes
    literally: fenced and indented code blocks, and code spans within a line. The rest of the
    text is left as it is, to stay readable and keep its Markdown (quotes, lists, emphasis).
    """
    if "\\" not in text:
        return text
    lines = text.split("\n")
    code = _code_block_lines(lines)
    return "\n".join(
        line if in_code else _escape_outside_code_spans(line)
        for line, in_code in zip(lines, code, strict=True)
    )


def _escape_backslashes(text: str, escapable: frozenset[str]) -> str:
    if "\\" not in text:
        return text

    def escape(match: re.Match[str]) -> str:
        after = match[1]
        return "\\\\" + ("\\" + after if after in escapable else after)

    return _BACKSLASH_BEFORE_PUNCTUATION.sub(escape, text)


def _code_block_lines(lines: list[str]) -> list[bool]:
    """Which lines Markdown reads as code: fenced blocks (closed by the same fence) and
    indented blocks (four spaces or a tab, after a blank line or more such lines)."""
    code = [False] * len(lines)
    closers: dict[str, list[int]] = {}
    for index, line in enumerate(lines):
        fence = _FENCE.match(line)
        if fence and not line[fence.end() :].strip(" "):
            closers.setdefault(fence[0], []).append(index)
    index = 0
    indented = False
    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        if fence:
            candidates = closers.get(fence[0], [])
            after = bisect.bisect_right(candidates, index)
            if after < len(candidates):
                end = candidates[after]
                code[index : end + 1] = [True] * (end + 1 - index)
                index, indented = end + 1, False
                continue
        starts_block = index == 0 or not lines[index - 1].strip() or indented
        indented = line.startswith(("    ", "\t")) and starts_block
        code[index] = indented
        index += 1
    return code


def _escape_outside_code_spans(line: str) -> str:
    if "`" not in line:
        return _escape_backslashes(line, _ESCAPED_AFTER_BACKSLASH)
    # A code span runs from a backtick run to the next run of the same length.
    runs = [(match.start(), match.end()) for match in _BACKTICKS.finditer(line)]
    next_same = [-1] * len(runs)
    last: dict[int, int] = {}
    for index in range(len(runs) - 1, -1, -1):
        length = runs[index][1] - runs[index][0]
        next_same[index] = last.get(length, -1)
        last[length] = index
    out: list[str] = []
    position = index = 0
    while index < len(runs):
        closer = next_same[index]
        if closer == -1:
            index += 1
            continue
        start, end = runs[index][0], runs[closer][1]
        before = line[position:start]
        out.append(_escape_backslashes(before, _ESCAPED_AFTER_BACKSLASH))
        if (len(before) - len(before.rstrip("\\"))) % 2:
            out.append("\\")  # the backslash before the span's backticks, doubled
        out.append(line[start:end])
        position, index = end, closer + 1
    out.append(_escape_backslashes(line[position:], _ESCAPED_AFTER_BACKSLASH))
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# HTML to Markdown


# What the conversion looks at. Larger HTML (counted after its comments, styles and scripts are
# dropped) is shown as plain text; markdownify converts about 200 KB a second, and no email may
# cost a second.
MAX_HTML_CHARS = 160_000
# markdownify recurses (three frames) per element and rebuilds the text of every level: deeper
# HTML is shown as plain text. A forwarded Gmail thread nests about three levels per message.
MAX_HTML_DEPTH = 100
# HTML past this is not read at all (even as text): 2 MB of HTML is hundreds of pages.
MAX_HTML_TEXT_CHARS = 2_000_000
_HTML_CUT = f"HTML body cut after {MAX_HTML_TEXT_CHARS // 1_000_000} MB; the whole email is kept."


class _TooDeep(Exception):
    """The HTML nests deeper than MAX_HTML_DEPTH."""


class _ShallowSoup(BeautifulSoup):
    """A BeautifulSoup tree that refuses to grow deeper than MAX_HTML_DEPTH."""

    def pushTag(self, tag):  # type: ignore[no-untyped-def]
        if len(self.tagStack) > MAX_HTML_DEPTH:
            raise _TooDeep
        super().pushTag(tag)


class _MarkdownConverter(MarkdownConverter):
    """markdownify, minus the parts of an HTML mail that are not its text, within a budget."""

    def __init__(self, budget: ParseBudget | None = None, **options: Any) -> None:
        super().__init__(**options)
        self._budget = budget

    def process_tag(self, node, parent_tags=None):  # type: ignore[no-untyped-def]
        if self._budget is not None and self._budget.exhausted():
            raise _OverBudget
        return super().process_tag(node, parent_tags)

    def escape(self, text, parent_tags):  # type: ignore[no-untyped-def]
        # markdownify escapes "*" and "_" itself, but not backslashes: "\\srv" would render
        # as "\srv".
        return super().escape(_escape_backslashes(text, _ESCAPED_BY_MARKDOWNIFY), parent_tags)

    def convert_head(self, el, text, parent_tags):  # type: ignore[no-untyped-def]
        return ""

    convert_title = convert_head
    convert_style = convert_head
    convert_script = convert_head


_CONVERTER_OPTIONS = {"heading_style": "atx", "bullets": "-", "table_infer_header": True}
_BLANK_LINES = re.compile(r"\n{3,}")
# Outlook's "downlevel-revealed" conditionals (<![if !supportLists]>…<![endif]>) around list
# bullets: html.parser shows the markers as text, or rejects the markup when they are mangled.
# (No "<" inside, so that an unclosed one costs its own length, not the rest of the document.)
_DOWNLEVEL_REVEALED = re.compile(r"<!\[\s*(?:if\b[^\]<>]*|endif\s*)\]>", re.IGNORECASE)
# Any other "<![" but CDATA makes html.parser give up on the whole document; show it as text.
_MARKED_SECTION = re.compile(r"<!\[(?!CDATA\[)")
# markdownify's whitespace patterns cost the square of a run of spaces without a line break;
# longer runs mean nothing in HTML (and little in <pre>) and are cut to this length.
_LONG_WHITESPACE = re.compile(r"(?<![ \t\r\n\f])[ \t\r\n\f]{65,}")


def html_to_markdown(
    html_text: str, *, budget: ParseBudget | None = None, truncated: list[str] | None = None
) -> str:
    """HTML mail as Markdown: emphasis, links, lists, tables, block quotes and images kept.

    Bounded: HTML larger than MAX_HTML_CHARS or nested deeper than MAX_HTML_DEPTH, or still
    converting when ``budget`` is spent, is shown as plain text (tags stripped, in linear
    time) instead, and a sentence saying why is added to ``truncated``.
    """
    if len(html_text) > MAX_HTML_TEXT_CHARS:
        _note(truncated, _HTML_CUT)
        html_text = html_text[:MAX_HTML_TEXT_CHARS]
    html_text = _without_noise(html_text)
    reason = ""
    if len(html_text) > MAX_HTML_CHARS:
        reason = f"it is larger than {MAX_HTML_CHARS // 1000} KB"
    elif budget is not None and budget.exhausted():
        reason = "reading the email took too long"
    else:
        try:
            soup = _ShallowSoup(html_text, "html.parser")
            markdown = _MarkdownConverter(budget, **_CONVERTER_OPTIONS).convert_soup(soup)
        except _TooDeep:
            reason = f"it is nested deeper than {MAX_HTML_DEPTH} levels"
        except _OverBudget:
            reason = "converting it took too long"
        except SoftTimeLimitExceeded:
            raise
        except Exception:  # broken beyond what bs4 and markdownify take: its text is worth having
            logger.info("HTML body could not be converted; falling back to its text", exc_info=True)
            reason = "it could not be converted"
    if reason:
        _note(truncated, f"HTML body shown as plain text: {reason}.")
        markdown = _html_as_text(html_text)
    return _tidy(markdown)


def html_to_text(html_text: str, *, truncated: list[str] | None = None) -> str:
    """HTML as plain text (tags dropped, block elements on lines of their own), for Markdown."""
    if len(html_text) > MAX_HTML_TEXT_CHARS:
        _note(truncated, _HTML_CUT)
        html_text = html_text[:MAX_HTML_TEXT_CHARS]
    return _tidy(_html_as_text(_without_noise(html_text)))


def _tidy(markdown: str) -> str:
    lines = markdown.replace("\xa0", " ").split("\n")
    return _BLANK_LINES.sub("\n\n", "\n".join(line.rstrip(" \t") for line in lines)).strip()


# Markup that is dropped with its content. <head> is not: without its end tag (browsers close
# it at <body>) it would take the whole mail with it.
_DROPPED_ELEMENTS = ("style", "script", "title")
_END_TAGS = {name: re.compile(rf"</{name}\s*>", re.IGNORECASE) for name in _DROPPED_ELEMENTS}
_ELEMENT_NAME = re.compile(r"/?([a-zA-Z][a-zA-Z0-9]*)")
# Where html.parser sees markup: a tag, an end tag, a comment, a declaration or an instruction.
_MARKUP_START = re.compile(r"<[a-zA-Z/!?]")
# Text, and tags that end before any other "<" (but those of the elements dropped with their
# content): most of any HTML, and passed through as it is.
_TEXT_AND_TAGS = re.compile(
    r"(?:[^<]+|<(?!(?:style|script|title)[\s/>])[a-zA-Z][^<>]*>|</[^<>]*>)*", re.IGNORECASE
)


class _NextMatch:
    """Where a search next succeeds at or after a position, remembered: scanning a document
    left to right with it costs the document's length, whatever the number of positions."""

    def __init__(self, find: Any) -> None:
        self._find = find  # (start) -> position or -1
        self._found: int | None = None

    def after(self, start: int) -> int:
        if self._found is None or (self._found != -1 and self._found < start):
            self._found = self._find(start)
        return self._found


def _without_noise(html_text: str) -> str:
    """The HTML minus comments, styles, scripts and titles, with every "<" that opens no
    complete markup escaped.

    html.parser scans the rest of the document again for each "<" whose markup does not end
    ("<a<a<a…", "<!--<!--…": quadratic), and hands a lone "<" over one character at a time.
    After this pass each "<" it sees ends at the next ">", before any other "<", so its scans
    never overlap.
    """
    html_text = _DOWNLEVEL_REVEALED.sub("", html_text)
    html_text = _MARKED_SECTION.sub("&lt;![", html_text)
    html_text = _LONG_WHITESPACE.sub(lambda match: match[0][:64], html_text)
    find = html_text.find
    next_lt = _NextMatch(lambda start: find("<", start))
    next_gt = _NextMatch(lambda start: find(">", start))
    comment_end = _NextMatch(lambda start: find("-->", start))
    end_tags = {
        name: _NextMatch(lambda start, pattern=pattern: _start_of(pattern.search(html_text, start)))
        for name, pattern in _END_TAGS.items()
    }
    out: list[str] = []
    position = 0
    while True:
        # Text and complete tags, in bulk; the loop below sees only the other "<".
        plain = _TEXT_AND_TAGS.match(html_text, position)
        out.append(plain[0])  # type: ignore[index]
        position = plain.end()  # type: ignore[union-attr]
        opener = _MARKUP_START.search(html_text, position)
        if opener is None:
            break
        at = opener.start()
        out.append(html_text[position:at].replace("<", "&lt;"))
        position = at + 1
        if html_text.startswith("<!--", at):
            end = comment_end.after(at + 4)
            if end == -1:
                out.append("&lt;")
            else:
                position = end + 3
            continue
        gt = next_gt.after(at + 1)
        lt = next_lt.after(at + 1)
        if gt == -1 or (lt != -1 and lt < gt):
            out.append("&lt;")
            continue
        name = _ELEMENT_NAME.match(html_text, at + 1)
        if name and not name[0].startswith("/") and name[1].lower() in end_tags:
            end = end_tags[name[1].lower()].after(gt + 1)
            if end != -1:
                position = _END_TAGS[name[1].lower()].match(html_text, end).end()  # type: ignore[union-attr]
                continue
        out.append(html_text[at : gt + 1])
        position = gt + 1
    out.append(html_text[position:].replace("<", "&lt;"))
    return "".join(out)


def _start_of(match: re.Match[str] | None) -> int:
    return match.start() if match else -1


_BLOCK_ELEMENTS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption",
        "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main",
        "nav", "ol", "p", "pre", "section", "table", "tbody", "td", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
_MARKUP = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)?[^<>]*>")
_COMMON_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&nbsp;", "\xa0"))


def _html_as_text(html_text: str) -> str:
    """HTML as plain text, in linear time: tags dropped (block elements end a line),
    entities decoded, backslashes escaped for Markdown. For ``_without_noise`` output."""

    def replace(match: re.Match[str]) -> str:
        name = (match[2] or "").lower()
        return "\n" if name in _BLOCK_ELEMENTS else ""

    text = _MARKUP.sub(replace, html_text)
    # html.unescape calls back into Python per entity; the ones _without_noise writes (and the
    # commonest) go in bulk first. None of them makes an "&" that could start another entity.
    for entity, character in _COMMON_ENTITIES:
        text = text.replace(entity, character)
    text = html.unescape(text)
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return escape_markdown_backslashes("\n".join(lines))


_CID_LINK = re.compile(r"\]\(\s*<?cid:([^\s)>]+)>?", re.IGNORECASE)


def rewrite_cid_references(markdown: str, urls_by_content_id: dict[str, str]) -> str:
    """Point ``](cid:…)`` image and link targets at the given URLs (keys without ``<>``)."""
    if "cid:" not in markdown.lower() or not urls_by_content_id:
        return markdown
    urls = {key.strip().strip("<>"): url for key, url in urls_by_content_id.items()}
    lowered = {key.lower(): url for key, url in urls.items()}

    def replace(match: re.Match[str]) -> str:
        content_id = unquote(match[1])
        url = urls.get(content_id) or lowered.get(content_id.lower())
        return f"]({url}" if url else match[0]

    return _CID_LINK.sub(replace, markdown)


# ---------------------------------------------------------------------------------------------
# The parsed email


# Converting an HTML part costs a fixed amount besides its size (a parser, a tree): the parts
# after these many are shown as plain text.
MAX_HTML_PARTS = 100
_HTML_PARTS_AS_TEXT = f"HTML parts after the first {MAX_HTML_PARTS} shown as plain text."
_HTML_PARTS_NOT_READ = (
    "Some HTML parts were not read: reading the email took too long. The whole email is kept."
)
_NOT_PARSED = (
    "The email's parts are nested too deeply to read: its text was not extracted, and the "
    "whole email is attached as a file."
)


class ParsedEmail:
    """One inbound email. Header properties are cheap; bodies are decoded on first use.

    ``truncated`` lists, one sentence each, what parsing cut or simplified so that no email
    costs more than its budget: "HTML body shown as plain text: …", "Quoted text not separated
    from the reply: …". The raw email is never cut (the ledger keeps it whole). Entries are added
    as the body is read, so read it (``body_text``, ``attachments``, ``split_reply()``) first.
    """

    def __init__(
        self, raw: bytes, fields: list[_Field], body_offset: int, budget: ParseBudget | None = None
    ) -> None:
        self.raw_size = len(raw)
        self._raw = raw
        self._fields = fields
        self._body_offset = body_offset
        self.budget = budget or ParseBudget()
        self.truncated: list[str] = []

    def __repr__(self) -> str:
        return f"<ParsedEmail {self.message_id} from {self.from_address}: {self.subject!r}>"

    # Headers ---------------------------------------------------------------------------------

    @functools.cached_property
    def headers(self) -> list[tuple[str, str]]:
        return [(f.name, decode_header_value(f.text)) for f in self._fields]

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for f in self._fields:
            if f.lname == lname:
                return decode_header_value(f.text)
        return None

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [decode_header_value(f.text) for f in self._fields if f.lname == lname]

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """(display name, address) pairs of every valid address in every ``name`` header."""
        lname = name.lower()
        result = []
        pairs = [
            pair
            for f in self._fields
            if f.lname == lname
            for pair in _parse_addresses(_FOLDING.sub("", f.text))
        ]
        for display, address in pairs:
            normalized = _normalize_address(address)
            if normalized:
                result.append((" ".join(decode_header_value(display).split()), normalized))
        return result

    @functools.cached_property
    def message_id(self) -> str | None:
        value = self.header("message-id")
        if not value:
            return None
        ids = _MESSAGE_ID.findall(value)
        if ids:
            return f"<{ids[0]}>"
        token = value.split()[0].strip("<>")
        return f"<{token}>" if token else None

    @functools.cached_property
    def in_reply_to(self) -> list[str]:
        return _unique(i for v in self.header_all("in-reply-to") for i in _message_ids(v))

    @functools.cached_property
    def references(self) -> list[str]:
        # Outlook and iOS join References with commas; _message_ids does not mind.
        return _unique(i for v in self.header_all("references") for i in _message_ids(v))

    @functools.cached_property
    def subject(self) -> str:
        return " ".join((self.header("subject") or "").split())

    @functools.cached_property
    def _from(self) -> tuple[str, str] | None:
        found = self.addresses("from")
        return found[0] if found else None

    @property
    def from_address(self) -> str | None:
        return self._from[1] if self._from else None

    @property
    def from_name(self) -> str:
        return self._from[0] if self._from else ""

    @functools.cached_property
    def names(self) -> dict[str, str]:
        """Display names by lowercased address, from From, Reply-To, Sender and Cc (the first
        non-empty one wins): "Jürgen Weiß" for jw@example.com. Capped at 200 characters."""
        found: dict[str, str] = {}
        for header in ("from", "reply-to", "sender", "cc"):
            for name, address in self.addresses(header):
                if name and address.lower() not in found:
                    found[address.lower()] = name.strip().strip('"').strip()[:200]
        return found

    def name_of(self, address: str | None) -> str:
        return self.names.get((address or "").lower(), "")

    @functools.cached_property
    def reply_to(self) -> str | None:
        found = self.addresses("reply-to")
        return found[0][1] if found else None

    @functools.cached_property
    def sender(self) -> str | None:
        found = self.addresses("sender")
        return found[0][1] if found else None

    @functools.cached_property
    def to(self) -> list[str]:
        return _unique(address for _name, address in self.addresses("to"))

    @functools.cached_property
    def cc(self) -> list[str]:
        return _unique(address for _name, address in self.addresses("cc"))

    @functools.cached_property
    def date(self) -> datetime | None:
        value = self.header("date")
        if not value:
            return None
        try:
            return parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None

    @functools.cached_property
    def content_type(self) -> str:
        value = self.header("content-type") or ""
        content_type = value.split(";", 1)[0].strip().lower()
        # As the stdlib does (RFC 2045 §5.2): an invalid type means text/plain.
        if content_type.count("/") != 1 or " " in content_type:
            return "text/plain"
        return content_type

    # Body ------------------------------------------------------------------------------------

    @functools.cached_property
    def _body_message(self) -> Message | None:
        """The MIME tree of the body; None when it cannot be parsed safely."""
        body = self._raw[self._body_offset :]
        head = b"".join(
            f.name.encode("ascii", "replace") + b": " + f.raw + b"\n"
            for f in self._fields
            if f.lname in _MIME_FIELDS
        )
        depth, work = mime_shape(body)
        if depth > _MAX_PARSE_DEPTH or work > _MAX_PARSE_WORK:
            logger.info("MIME nesting too deep (%d, %d line checks); body not parsed", depth, work)
            _note(self.truncated, _NOT_PARSED)
            return None
        try:
            return message_from_bytes(head + b"\n" + body, _LenientMessage, policy=_POLICY)
        except RecursionError:  # nested message/rfc822 parts, which declare no boundary
            logger.info("MIME nesting too deep for the parser; body not parsed")
        except SoftTimeLimitExceeded:
            raise
        except Exception:  # the stdlib parser is lenient; if it still fails, keep the mail whole
            logger.warning("MIME parser failed; body kept as an attachment", exc_info=True)
        _note(self.truncated, _NOT_PARSED)
        return None

    @functools.cached_property
    def _content(self) -> _Content:
        with self.budget.stage():
            message = self._body_message
            if message is None:
                # Still nothing lost: the whole message is handed on as a file.
                whole = Attachment("attachment-1.eml", "message/rfc822", self._raw)
                return _Content(chunks=[], attachments=[whole])
            walker = _Walker()
            chunks = walker.walk(message)
            if walker.cut_off:
                _note(
                    self.truncated,
                    f"Parts nested deeper than {MAX_DEPTH} levels are attached as a file.",
                )
            return _Content(chunks=chunks, attachments=walker.attachments())

    @functools.cached_property
    def body_text(self) -> str:
        """The body as Markdown: plain text with its backslashes escaped, HTML converted.

        Reading it may add to ``truncated`` (HTML shown as plain text).
        """
        chunks = self._content.chunks
        pieces = []
        converted = 0
        with self.budget.stage():
            for chunk in chunks:
                if chunk.plain is not None and chunk.plain.strip():
                    pieces.append(escape_markdown_backslashes(chunk.plain))
                elif chunk.html and converted and self.budget.exhausted():
                    _note(self.truncated, _HTML_PARTS_NOT_READ)
                elif chunk.html and converted >= MAX_HTML_PARTS:
                    _note(self.truncated, _HTML_PARTS_AS_TEXT)
                    pieces.append(html_to_text(chunk.html, truncated=self.truncated))
                elif chunk.html:
                    converted += 1
                    pieces.append(
                        html_to_markdown(chunk.html, budget=self.budget, truncated=self.truncated)
                    )
        return "\n\n".join(_strip_blank_edges(piece) for piece in pieces if piece.strip())

    def split_reply(self) -> tuple[str, str]:
        """``split_reply(self.body_text)`` within this email's budget.

        When the budget is spent the whole text is the reply, and ``truncated`` says so.
        """
        return split_reply(self.body_text, budget=self.budget, truncated=self.truncated)

    @functools.cached_property
    def body_html(self) -> str | None:
        htmls = [chunk.html for chunk in self._content.chunks if chunk.html]
        return "\n".join(htmls) if htmls else None

    @functools.cached_property
    def attachments(self) -> list[Attachment]:
        return self._content.attachments


def _unique(items: object) -> list[str]:
    return list(dict.fromkeys(items))  # type: ignore[call-overload]


_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")


def _strip_blank_edges(text: str) -> str:
    """Drop blank lines around the text, keeping the first line's indentation."""
    return _LEADING_BLANK_LINES.sub("", text).rstrip()


def parse_email(raw: bytes, *, budget_seconds: float | None = None) -> ParsedEmail:
    """Parse an email from its raw bytes. Raises MalformedEmail only if nothing is usable.

    ``budget_seconds``: CPU seconds the optional stages of this email may spend (default:
    the SERVICEDESK_PARSE_BUDGET_SECONDS setting).
    """
    raw = bytes(raw)
    start = len(raw) - len(raw.lstrip(b"\r\n\t "))
    if start == len(raw):
        raise MalformedEmail("empty message")
    if start:
        raw = raw[start:]
    if b"\n" not in raw[:8192] and b"\r" in raw[:8192]:
        raw = raw.replace(b"\r", b"\n")  # classic Mac OS line ends
    fields, body_offset = _split_header_block(raw)
    if not fields:
        raise MalformedEmail("no header fields")
    return ParsedEmail(raw, fields, body_offset, ParseBudget(budget_seconds))


# ---------------------------------------------------------------------------------------------
# Reply trimming

# Languages whose reply headers ("Am … schrieb …:", "Le … a écrit :") are recognised. Left out:
# da, sv and pl, whose patterns match ordinary lines ("/label", "Tak…", "Data: …").
_REPLY_LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "cs", "ja", "ko", "zh")
_ORIGINAL_MESSAGE = re.compile(
    r"^\s*(?:-{2,}\s*(?:Original Message|Forwarded message|Ursprüngliche Nachricht|"
    r"Message d'origine)\s*-{2,}|_{20,})\s*$",
    re.IGNORECASE,
)
_WROTE = re.compile(r"^\s*On\b.*\bwrote:\s*$", re.IGNORECASE)
_AUTOMATIC_SIGNATURE = re.compile(
    r"^\s*(?:Sent from my |Get Outlook for |Envoyé de mon |Gesendet von )", re.IGNORECASE
)
# A sign-off ("Thanks,", "Best regards") starts a signature only if little follows it.
_MAX_SIGNOFF_LINES = 6
_MAX_SIGNOFF_WORDS = 4


# mail-parser-reply's patterns backtrack: a line that starts like an attribution ("On …",
# "Am …", "> On …") costs the square of its length, a run of blank lines or of spaces the
# square of the run. So it reads a skim of the text: the first _LIBRARY_MAX_CHARS, each line cut
# to _LIBRARY_MAX_LINE characters (no attribution or header line is longer) with its runs of
# whitespace as one space, and at most two blank lines in a row. Our own rules read everything,
# in linear time.
_LIBRARY_MAX_CHARS = 32_000
_LIBRARY_MAX_LINE = 200
_REPLY_NOT_SPLIT = "Quoted text not separated from the reply: reading the email took too long."


def split_reply(
    text: str, *, budget: ParseBudget | None = None, truncated: list[str] | None = None
) -> tuple[str, str]:
    """Split an email body into (the new reply, the quoted history and signature trimmed).

    Nothing is lost: the two parts are the whole text. A body that is only quotes is kept
    whole: (text, ""). So is any body once ``budget`` is spent; ``truncated`` then says so.
    """
    if budget is not None and budget.exhausted():
        _note(truncated, _REPLY_NOT_SPLIT)
        return text, ""
    normalized = _normalize_newlines(text)
    lines = normalized.split("\n")
    with budget.stage() if budget is not None else contextlib.nullcontext():
        cut = min(_library_cut(lines), _rules_cut(lines))
    if cut >= len(lines):
        return text, ""
    reply = "\n".join(lines[:cut]).rstrip()
    if not reply.strip():
        return text, ""
    trimmed = "\n".join(lines[cut:]).strip("\n")
    return _strip_blank_edges(reply), trimmed


def _skim(lines: list[str]) -> tuple[list[str], list[int]]:
    """The lines mail-parser-reply reads, and for each the index of the line of ours it is."""
    skimmed: list[str] = []
    origin: list[int] = []
    size = blank_run = 0
    for index, line in enumerate(lines):
        line = line.strip()
        if line:
            blank_run = 0
            line = " ".join(line.split())[:_LIBRARY_MAX_LINE]
        else:
            blank_run += 1
            if blank_run > 2:
                continue
        size += len(line) + 1
        if size > _LIBRARY_MAX_CHARS:
            break
        skimmed.append(line)
        origin.append(index)
    return skimmed, origin


def _library_cut(lines: list[str]) -> int:
    """The first line of quoted history or signature, as mail-parser-reply finds it."""
    skimmed, origin = _skim(lines)
    try:
        parsed = ReplyParserMessage(
            text="\n".join(skimmed), languages=list(_REPLY_LANGUAGES), keep_hyphen_lists=True
        )
        header = parsed.HEADER_REGEX.search(parsed.text)
        header_at = header.start() if header else len(parsed.text)
        signature = parsed.SIGNATURE_REGEX.search(parsed.text, 0, header_at)
    except (RecursionError, re.error):
        return len(lines)

    def ours(line: int) -> int:
        return origin[line] if line < len(origin) else len(lines)

    library_lines = parsed.text.split("\n")
    history = len(lines)
    if header:
        history = ours(_original_line(parsed.text, header_at, library_lines, skimmed))
    if signature:
        at = signature.start() + len(signature[0]) - len(signature[0].lstrip())
        line = ours(_original_line(parsed.text, at, library_lines, skimmed))
        if line < history and _is_signature_start(lines[line:history]):
            return line
    return history


def _original_line(
    library_text: str, offset: int, library_lines: list[str], lines: list[str]
) -> int:
    """Map an offset in mail-parser-reply's normalised text to a line of ours.

    It strips every line and drops Outlook separator lines, so its lines are a subsequence of
    our stripped lines; walk both.
    """
    while offset < len(library_text) and library_text[offset] == "\n":
        offset += 1
    target = library_text.count("\n", 0, offset)
    ours = 0
    for index in range(target + 1):
        wanted = library_lines[index] if index < len(library_lines) else ""
        while ours < len(lines) and lines[ours].strip() != wanted:
            ours += 1
        if index < target:
            ours += 1
    return min(ours, len(lines))


def _is_signature_start(signature: list[str]) -> bool:
    """Whether the lines the library took for a signature (up to the history) are one."""
    first = signature[0].strip()
    if first.startswith(("--", "__")) or _AUTOMATIC_SIGNATURE.match(first):
        return True
    # A sign-off ("Thanks,", "Best regards") is a short line that ends no sentence ("Thanks,
    # that fixed it." is text), with little after it.
    rest = [line for line in signature if line.strip() and not line.startswith(">")]
    return (
        len(first.split()) <= _MAX_SIGNOFF_WORDS
        and not first.endswith((".", "!", "?"))
        and len(rest) <= _MAX_SIGNOFF_LINES
    )


def _rules_cut(lines: list[str]) -> int:
    """Plain rules for what the library misses: delimiters and a trailing block of quotes."""
    only_quotes_after = _only_quotes_after(lines)
    for index, line in enumerate(lines):
        stripped = line.rstrip()
        if stripped == "--" or _ORIGINAL_MESSAGE.match(stripped):  # "-- ": RFC 3676 §4.3
            return index
        if only_quotes_after[index + 1] and _WROTE.match(stripped):
            return index
    # A block of ">" lines that runs to the end, with the attribution line just above it.
    start = len(lines)
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith(">"):
            start = index
        elif lines[index].strip():
            break
    if start == len(lines):
        return start
    above = start - 1
    while above >= 0 and not lines[above].strip():
        above -= 1
    if above >= 0 and lines[above].rstrip().endswith(":") and len(lines[above]) < 200:
        return above
    return start


def _only_quotes_after(lines: list[str]) -> list[bool]:
    """For each index, whether the lines from there on are quotes and blank lines, with at
    least one quote (one pass from the end, not one per attribution-looking line)."""
    result = [False] * (len(lines) + 1)
    quotes_only = True
    seen_quote = False
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if line.strip():
            if line.startswith(">"):
                seen_quote = True
            else:
                quotes_only = False
        result[index] = quotes_only and seen_quote
    return result
