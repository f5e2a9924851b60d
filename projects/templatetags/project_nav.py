"""The project's navigation: one tab per page the user may open (never a link to a 404/403)."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from projects.models import Project

register = template.Library()


@register.inclusion_tag("projects/_nav.html", takes_context=True)
def project_nav(context: dict[str, Any], project: Project, active: str) -> dict[str, Any]:
    """``{% project_nav project "issues" %}`` — the tabs (key, label, url) this user may open.

    Further tabs are added with the page they link to, in this order: spam quarantine
    (Reporter+), members, inbound mail (Maintainer+), settings (Maintainer+); each guarded by the
    ``projects.permissions`` function its view uses (``context["request"].user``).
    """
    tabs = [("issues", "Issues", reverse("issue_list", args=[project.full_path]))]
    return {"project": project, "tabs": tabs, "active": active}
