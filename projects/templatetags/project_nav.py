"""The project's navigation: one tab per page the user may open (never a link to a 404/403)."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse
from django.utils.translation import gettext as _

from projects import permissions
from projects.models import Project

register = template.Library()


@register.inclusion_tag("projects/_nav.html", takes_context=True)
def project_nav(context: dict[str, Any], project: Project, active: str) -> dict[str, Any]:
    """``{% project_nav project "issues" %}`` — the tabs (key, label, url) this user may open.

    Further tabs are added with the page they link to, in this order: dashboard (Reporter+),
    spam quarantine (Reporter+), members, inbound and outbound mail (Maintainer+), settings
    (Maintainer+);
    each guarded by the ``projects.permissions`` function its view uses
    (``context["request"].user``).
    """
    tabs = [("issues", _("Issues"), reverse("issue_list", args=[project.full_path]))]
    user = context["request"].user
    if permissions.can_view_dashboard(user, project):
        url = reverse("project_dashboard", args=[project.full_path])
        tabs.append(("dashboard", _("Dashboard"), url))
    if permissions.can_review_spam(user, project):
        tabs.append(("spam", _("Spam"), reverse("spam_list", args=[project.full_path])))
    if permissions.can_see_members(user, project):
        tabs.append(("members", _("Members"), reverse("project_members", args=[project.full_path])))
    if permissions.can_view_inbound_ledger(user, project):
        url = reverse("project_inbound_list", args=[project.full_path])
        tabs.append(("inbound", _("Inbound mail"), url))
    if permissions.can_view_outbound_ledger(user, project):
        url = reverse("project_outbound_list", args=[project.full_path])
        tabs.append(("outbound", _("Outbound mail"), url))
    if permissions.can_administer_project(user, project):
        url = reverse("service_desk_settings", args=[project.full_path])
        tabs.append(("settings", _("Settings"), url))
    return {"project": project, "tabs": tabs, "active": active}
