"""Saved replies: writing them, and filling one in for an issue."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from accounts.models import User
from issues.emails import render_placeholders
from issues.models import Issue
from projects.models import Project
from projects.placeholders import validate_email_template

from .models import MAX_CONTENT, SavedReply

# What a saved reply may say, filled in when it is inserted (shown next to the editor).
PLACEHOLDERS = {
    "CUSTOMER_NAME": "the customer's name (empty when they gave none)",
    "ISSUE_ID": "#<number> of the issue",
    "ISSUE_TITLE": "the issue's title",
    "AUTHOR_NAME": "your name (whoever inserts it)",
    "PROJECT_NAME": "the project's name",
}


def _clean(name: str, content: str) -> tuple[str, str]:
    name, content = " ".join(name.split())[:100], content.replace("\x00", "").strip()
    if not name:
        raise ValidationError({"name": _("Give it a name.")})
    if not content:
        raise ValidationError({"content": _("Write what it says.")})
    if len(content) > MAX_CONTENT:
        raise ValidationError(
            {"content": _("At most %(MAX_CONTENT)s characters.") % {"MAX_CONTENT": MAX_CONTENT}}
        )
    try:
        validate_email_template(content, PLACEHOLDERS)
    except ValidationError as error:
        raise ValidationError({"content": error.messages}) from error
    return name, content


def saved_reply_save(
    *,
    name: str,
    content: str,
    user: User | None = None,
    project: Project | None = None,
    reply: SavedReply | None = None,
) -> SavedReply:
    """Create one (a person's own with ``user``, a project's with ``project``) or change
    ``reply``. Names are unique per owner."""
    name, content = _clean(name, content)
    if reply is None:
        reply = SavedReply(user=user, project=project)
    reply.name, reply.content = name, content
    try:
        with transaction.atomic():
            reply.save()
    except IntegrityError as error:
        raise ValidationError(
            {"name": _("There is already a saved reply with this name.")}
        ) from error
    return reply


def saved_reply_delete(*, reply: SavedReply) -> None:
    reply.delete()


def saved_reply_fill(*, reply: SavedReply, issue: Issue, user: User) -> str:
    """The reply's text for this issue, its placeholders filled in."""
    values = {
        "CUSTOMER_NAME": issue.external_author_name,
        "ISSUE_ID": f"#{issue.iid}",
        "ISSUE_TITLE": issue.title,
        "AUTHOR_NAME": user.display_name,
        "PROJECT_NAME": issue.project.name,
    }
    return render_placeholders(reply.content, values, unknown="")
