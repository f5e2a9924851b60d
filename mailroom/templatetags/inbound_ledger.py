"""Presenting ledger rows: the decision as a readable list, links that fit the page."""

from __future__ import annotations

from typing import Any

from django import template
from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from mailroom.handlers import redact
from mailroom.models import InboundMessage

register = template.Library()

# The decision's keys (mailroom.handlers' trace), in the order a reader asks about them.
DECISION_LABELS = {
    "rule": "Rule",
    "header": "Key found in header",
    "key_kind": "Key kind",
    "key": "Key",
    "mailbox": "Mailbox",
    "akismet": "Akismet verdict",
    "template_actions": "Description template quick actions",
    "reply_keys": "Reply keys named by the report",
    "size": "Size",
}
KEY_KINDS = {
    "default": "project address key (<project>-<id>-issue-)",
    "legacy": "legacy group/project path",
    "custom": "custom suffix (Service Desk alias)",
    "reply": "reply key (a reply to one of our emails)",
    "unsubscribe": "unsubscribe key",
}


def _text(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_text(v)}" for k, v in value.items())
    return str(value)


@register.filter
def decision_items(decision: Any) -> list[tuple[str, str]]:
    """``{% for label, value in email.decision|decision_items %}`` — (label, text) pairs.

    Keys are redacted again on the way out: the ledger stores them redacted, and a page is no
    place to find out that one was not.
    """
    if not isinstance(decision, dict):
        return []
    order = list(DECISION_LABELS)
    items = []
    for key in sorted(decision, key=lambda k: (order.index(k) if k in order else len(order), k)):
        value = decision[key]
        if key == "key" and isinstance(value, str):
            value = redact(value)
        elif key == "reply_keys" and isinstance(value, list):
            value = [redact(str(v)) for v in value]
        elif key == "key_kind":
            value = KEY_KINDS.get(str(value), value)
        elif key == "size" and isinstance(value, int):
            value = filesizeformat(value)
        label = DECISION_LABELS.get(key, key.replace("_", " ").capitalize())
        items.append((label, _text(value)))
    return items


@register.simple_tag
def inbound_url(email: InboundMessage, project: Any, action: str = "detail") -> str:
    """The email's page (or ``raw``, ``reprocess``) in the ledger being shown: the project's
    when ``project`` is set, else the instance-wide one."""
    if project:
        return reverse(f"project_inbound_{action}", args=[project.full_path, email.pk])
    return reverse(f"instance_inbound_{action}", args=[email.pk])


@register.simple_tag
def produced_url(email: InboundMessage) -> str:
    """The issue (or the note in it) the email produced; empty if none (or deleted)."""
    if email.issue_id is None or email.issue is None:
        return ""
    url = reverse("issue_detail", args=[email.issue.project.full_path, email.issue.iid])
    return f"{url}#note-{email.note_id}" if email.note_id else url
