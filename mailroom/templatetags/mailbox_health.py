"""The "mailbox is not fetching" banner, shown on project pages through base.html."""

from __future__ import annotations

from typing import Any

from django import template

from mailroom.selectors import mailbox_alerts
from projects import permissions
from projects.models import Project

register = template.Library()


@register.inclusion_tag("mailroom/_mailbox_alert.html", takes_context=True)
def mailbox_alert(context: template.Context) -> dict[str, Any]:
    """``{% mailbox_alert %}`` — on a page with a ``project``, for its Reporter+ members.

    Costs no query without a polled IMAP mailbox or for anyone who may not see it, and at most
    one otherwise (the role is already cached by the page's own permission checks).
    """
    project = context.get("project")
    request = context.get("request")
    user = getattr(request, "user", None)
    if not isinstance(project, Project) or user is None or not user.is_authenticated:
        return {"alerts": []}
    alerts = mailbox_alerts()
    if not alerts or not permissions.can_see_mailbox_alerts(user, project):
        return {"alerts": []}
    return {
        "alerts": alerts,
        "can_see_health": permissions.can_view_instance_inbound(user),
    }


@register.filter
def can_view_instance_inbound(user: Any) -> bool:
    """``{% if user|can_view_instance_inbound %}`` — the top bar's link to the instance ledger."""
    return bool(getattr(user, "is_authenticated", False)) and permissions.can_view_instance_inbound(
        user
    )
