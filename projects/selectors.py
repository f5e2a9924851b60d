from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db.models import Count, Q
from django.http import Http404

from .models import Membership, Project, Role
from .permissions import can_read_project, remember_project_role

if TYPE_CHECKING:
    from .permissions import AnyUser


@dataclass(frozen=True)
class ProjectWithRole:
    project: Project
    role: Role
    open_issues: int


def project_list_for_user(*, user: AnyUser) -> list[ProjectWithRole]:
    """The projects the user is a member of (directly or through a group), with the role.

    Two queries whatever the number of projects: memberships, then projects.
    """
    if not user.is_authenticated:
        return []
    if user.is_superuser:
        projects = Project.objects.all()
        memberships: list[Membership] = []
    else:
        memberships = list(Membership.objects.filter(user=user).select_related("group"))
        if not memberships:
            return []
        scope = Q(pk__in=[m.project_id for m in memberships if m.project_id])
        for m in memberships:
            if m.group is not None:
                scope |= Q(full_path__startswith=f"{m.group.full_path}/")
        projects = Project.objects.filter(scope)

    projects = projects.select_related("group", "service_desk").annotate(
        open_issues=Count("issues", filter=Q(issues__state="opened"))
    )
    result = []
    for project in projects.order_by("full_path"):
        role = Role.OWNER if user.is_superuser else _role_from(memberships, project)
        remember_project_role(user, project, role)
        result.append(ProjectWithRole(project, role, project.open_issues))
    return result


def _role_from(memberships: list[Membership], project: Project) -> Role:
    roles = [
        m.role
        for m in memberships
        if m.project_id == project.pk
        or (m.group is not None and project.full_path.startswith(f"{m.group.full_path}/"))
    ]
    return Role(max(roles))


def project_get_for_user(*, user: AnyUser, full_path: str) -> Project:
    """The project at ``full_path`` if the user may read it; otherwise 404 (never 403).

    A 404 does not tell an outsider whether a private project exists.
    """
    try:
        project = Project.objects.select_related("group", "service_desk").get(full_path=full_path)
    except Project.DoesNotExist:
        raise Http404("No such project") from None
    if not can_read_project(user, project):
        raise Http404("No such project")
    return project


def service_desk_addresses(*, project: Project) -> list[str]:
    """The project's Service Desk addresses: the incoming one and, when configured, the alias
    (with the custom suffix if set). Show them to Reporter+ only (SPEC §2)."""
    from django.conf import settings

    setting = project.service_desk
    addresses = []
    mailboxes = settings.SERVICEDESK_MAILBOXES
    incoming = mailboxes.get("incoming_email")
    if incoming is not None and incoming.enabled:
        addresses.append(incoming.address_for(setting.default_key))
    alias = mailboxes.get("service_desk_email")
    if alias is not None and alias.enabled:
        addresses.append(alias.address_for(setting.custom_key or setting.default_key))
    return addresses
