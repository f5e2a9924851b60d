"""Compile the translation catalogues (locale/*/LC_MESSAGES/*.po) into the .mo files Django reads.

Standard library only, so `make run` works on a machine that has Python and nothing else (Django's
own compilemessages needs GNU gettext's msgfmt). Fuzzy entries are left out, as msgfmt does.
A .mo that is newer than its .po is left alone.

    python scripts/compilemessages.py [--force] [LOCALE_DIR]
"""

from __future__ import annotations

import ast
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _unquote(line: str) -> str:
    # A .po string is a C string literal; Python's literal syntax reads the same escapes.
    return str(ast.literal_eval(line))


def parse_po(text: str) -> dict[str, str]:
    """The catalogue's translated, non-fuzzy entries as .mo keys and values: a context is
    ``ctxt\\x04id``, plural forms are joined by NUL."""
    entries: dict[str, str] = {}
    fields: dict[str, str] = {}
    fuzzy = next_fuzzy = False
    current = ""

    def add() -> None:
        if "msgid" not in fields:
            return
        msgid = fields["msgid"]
        if "msgid_plural" in fields:
            msgid += "\0" + fields["msgid_plural"]
            forms = sorted((int(k[7:-1]), v) for k, v in fields.items() if k.startswith("msgstr["))
            msgstr = "\0".join(v for _, v in forms)
        else:
            msgstr = fields.get("msgstr", "")
        if "msgctxt" in fields:
            msgid = fields["msgctxt"] + "\x04" + msgid
        if msgstr and all(msgstr.split("\0")) and not fuzzy:
            entries[msgid] = msgstr

    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            if line.startswith("#,") and "fuzzy" in line:
                next_fuzzy = True
            continue
        if not line:
            continue
        if line.startswith('"'):
            fields[current] += _unquote(line)
            continue
        keyword, _, value = line.partition(" ")
        if keyword in ("msgctxt", "msgid") and any(k.startswith("msgstr") for k in fields):
            add()
            fields = {}
        if not fields:
            fuzzy, next_fuzzy = next_fuzzy, False
        current = keyword
        fields[keyword] = _unquote(value)
    add()
    return entries


def mo_bytes(entries: dict[str, str]) -> bytes:
    """The GNU .mo format: header, two tables of (length, offset), then the strings."""
    keys = sorted(entries)
    ids = b""
    strs = b""
    offsets = []
    for key in keys:
        k, v = key.encode(), entries[key].encode()
        offsets.append((len(ids), len(k), len(strs), len(v)))
        ids += k + b"\0"
        strs += v + b"\0"
    count = len(keys)
    keystart = 7 * 4 + 16 * count
    valuestart = keystart + len(ids)
    key_table: list[int] = []
    value_table: list[int] = []
    for id_offset, id_length, str_offset, str_length in offsets:
        key_table += [id_length, id_offset + keystart]
        value_table += [str_length, str_offset + valuestart]
    header = struct.pack("Iiiiiii", 0x950412DE, 0, count, 7 * 4, 7 * 4 + count * 8, 0, 0)
    return (
        header
        + struct.pack(f"{len(key_table)}i", *key_table)
        + struct.pack(f"{len(value_table)}i", *value_table)
        + ids
        + strs
    )


def compile_all(locale_dir: Path = ROOT / "locale", *, force: bool = False) -> list[Path]:
    written = []
    for po in sorted(locale_dir.glob("*/LC_MESSAGES/*.po")):
        mo = po.with_suffix(".mo")
        if not force and mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        mo.write_bytes(mo_bytes(parse_po(po.read_text(encoding="utf-8"))))
        written.append(mo)
    return written


def main(argv: list[str]) -> int:
    force = "--force" in argv
    args = [a for a in argv if a != "--force"]
    locale_dir = Path(args[0]) if args else ROOT / "locale"
    for mo in compile_all(locale_dir, force=force):
        print(f"compiled {mo}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
