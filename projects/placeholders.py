"""The %{PLACEHOLDERS} of Service Desk email templates: which there are, and finding mistyped
ones before a customer sees them."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

# "%{NAME}", spaces allowed inside (SPEC §7). Wider than a name, so that a mistyped one
# ("%{ISSUE ID}", "%{issue_id}", "%{ISSUE-ID}") is found too; at most 64 characters between the
# braces, so a stray "%{" costs a short look ahead, not a scan of the rest of the text.
PLACEHOLDER = re.compile(r"%\{([^{}]{1,64})\}")

# Every placeholder issues.emails fills in, with what it stands for (shown in the editor).
EMAIL_PLACEHOLDERS = {
    "ISSUE_ID": _("#<number> of the issue"),
    "ISSUE_PATH": _("project path and number, e.g. acme/game#42"),
    "ISSUE_URL": _("link to the issue"),
    "ISSUE_DESCRIPTION": _("the issue's description"),
    "NOTE_TEXT": _("the comment (new note only)"),
    "AUTHOR_NAME": _(
        "who wrote the comment (new note only): the agent's name if replies are "
        "signed, else the email display name; a customer's name for their email reply"
    ),
    "UNSUBSCRIBE_URL": _("the recipient's unsubscribe link"),
    "SYSTEM_HEADER": _("instance-wide header"),
    "SYSTEM_FOOTER": _("instance-wide footer"),
    "ADDITIONAL_TEXT": _("instance-wide additional text"),
}


def unknown_placeholders(text: str, known: Mapping[str, Any] = EMAIL_PLACEHOLDERS) -> list[str]:
    """The placeholders in ``text`` that are not ``known``, as written, each once, in order."""
    found: dict[str, None] = {}
    for match in PLACEHOLDER.finditer(text):
        name = match.group(1).strip()
        if name and name not in known:
            found.setdefault(match.group(0), None)
    return list(found)


def suggestion(written: str, known: Mapping[str, Any] = EMAIL_PLACEHOLDERS) -> str | None:
    """The placeholder a mistyped one was probably meant to be, as "%{NAME}"."""
    name = re.sub(r"[\s-]+", "_", written[2:-1].strip()).upper()
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"%{{{close[0]}}}" if close else None


def describe_unknown(written: str, known: Mapping[str, Any] = EMAIL_PLACEHOLDERS) -> str:
    hint = suggestion(written, known)
    return f"{written} (did you mean {hint}?)" if hint else written


def validate_email_template(text: str, known: Mapping[str, Any] = EMAIL_PLACEHOLDERS) -> None:
    """Refuse a template with a placeholder we do not know: a mistyped one would reach
    customers as nothing (issues.emails leaves it out), which they cannot tell from a bug."""
    unknown = unknown_placeholders(text, known)
    if unknown:
        names = ", ".join(describe_unknown(u, known) for u in unknown)
        listed = ", ".join(f"%{{{name}}}" for name in known)
        raise ValidationError(
            f"Unknown placeholder{'s' if len(unknown) > 1 else ''}: {names}. "
            f"The placeholders are {listed}.",
            code="unknown_placeholder",
        )
