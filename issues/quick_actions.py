"""Quick actions (``/label ~bug``) in text the project wrote itself: description templates.

Text from email never reaches here as commands: ``neutralise`` turns such lines into inline
code before they are stored (SPEC §4).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .models import Issue, Label
from .selectors import assignable_users

if TYPE_CHECKING:
    from accounts.models import User

_COMMAND_LINE = re.compile(r"^/([a-z_]+)(?:[ \t]+(.*))?$")
_LOOKS_LIKE_COMMAND = re.compile(r"^([ \t]*)(/[A-Za-z_]+\b.*)$", re.MULTILINE)


def neutralise(text: str) -> str:
    """Make every line that looks like a slash command inert by wrapping it in inline code."""

    def wrap(match: re.Match[str]) -> str:
        command = match.group(2).rstrip()
        fence = "``" if "`" in command else "`"
        return f"{match.group(1)}{fence}{command}{fence}"

    return _LOOKS_LIKE_COMMAND.sub(wrap, text)


@dataclass
class QuickActionResult:
    text: str
    applied: list[str] = field(default_factory=list)


def _names(argument: str, sigil: str) -> list[str]:
    try:
        words = shlex.split(argument.replace(sigil, " "))
    except ValueError:
        words = argument.replace(sigil, " ").split()
    return [w for w in words if w]


def apply_quick_actions(*, issue: Issue, text: str, user: User) -> QuickActionResult:
    """Run /label, /assign, /confidential and /close lines; return the text without them.

    Unknown commands stay in the text as they are. Labels must exist in the project and
    assignees must be able to be assigned there (``assignable_users``: Reporter+); others are
    ignored.
    """
    # Quick actions are carried out by the services, which also run them (a description
    # template's actions when an issue is created): the one import cycle left, broken here.
    from .services import issue_close

    kept: list[str] = []
    result = QuickActionResult(text="")
    close = False
    for line in text.splitlines():
        match = _COMMAND_LINE.match(line.strip())
        if not match:
            kept.append(line)
            continue
        command, argument = match.group(1), match.group(2) or ""
        if command == "label":
            labels = Label.objects.filter(project=issue.project, title__in=_names(argument, "~"))
            issue.labels.add(*labels)
            result.applied.append(f"label {' '.join(sorted(label.title for label in labels))}")
        elif command == "assign":
            # The sidebar's rule: only who can read every issue of the project (Reporter+).
            names = _names(argument, "@")
            for candidate in assignable_users(project=issue.project).filter(username__in=names):
                issue.assignees.add(candidate)
                result.applied.append(f"assign {candidate.username}")
        elif command == "confidential":
            Issue.objects.filter(pk=issue.pk).update(confidential=True)
            issue.confidential = True
            result.applied.append("confidential")
        elif command == "close":
            close = True
        else:
            kept.append(line)
    if close:
        issue_close(issue=issue, user=user)
        result.applied.append("close")
    result.text = "\n".join(kept).strip("\n")
    return result
