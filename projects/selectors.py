from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.http import Http404
from django.template.loader import select_template
from django.utils import timezone

from .models import DescriptionTemplate, Group, Membership, Project, Role, ServiceDeskSetting
from .permissions import can_read_project, remember_project_role

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from accounts.models import User

    from .permissions import AnyUser


@dataclass(frozen=True)
class ProjectWithRole:
    project: Project
    role: Role
    open_issues: int


def project_list_for_user(*, user: AnyUser) -> list[ProjectWithRole]:
    """The projects the user is a member of (directly or through a group), with the role.

    Two queries whatever the number of projects: memberships, then projects; a third counts
    the open issues of the projects whose issues changed since their count was cached
    (``_open_issue_counts``), so the page does not read every issue of every project.
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

    found = list(
        projects.select_related("group", "service_desk")
        .annotate(**_issues_fingerprint())
        .order_by("full_path")
    )
    open_issues = _open_issue_counts(found)
    result = []
    for project in found:
        role = Role.OWNER if user.is_superuser else _role_from(memberships, project)
        remember_project_role(user, project, role)
        result.append(ProjectWithRole(project, role, open_issues.get(project.pk, 0)))
    return result


def _issues_fingerprint() -> dict[str, Subquery]:
    """Per project: what changes when its number of open issues may (a new issue: the last iid
    handed out; a closed or reopened one: the latest ``updated_at``). Two index lookups."""
    from issues.models import Issue, IssueCounter

    newest = Issue.objects.filter(project=OuterRef("pk")).order_by("-updated_at")
    counter = IssueCounter.objects.filter(project=OuterRef("pk"))
    return {
        "issues_newest": Subquery(newest.values("updated_at")[:1]),
        "issues_last_iid": Subquery(counter.values("last_iid")[:1]),
    }


def _open_issue_counts(projects: list[Project]) -> dict[int, int]:
    """Open issues per project, from the cache while the project's fingerprint is the same;
    the others counted in one query (from the (project, state) index), then cached."""
    from issues.models import Issue

    keys = {project.pk: f"open-issues:{project.pk}" for project in projects}
    try:
        cached = cache.get_many(list(keys.values()))
    except Exception:  # the cache is down: count, the page still works
        log.warning("open issue counts cache unavailable", exc_info=True)
        cached = {}
    counts, stale = {}, []
    for project in projects:
        fingerprint = (project.issues_newest, project.issues_last_iid)  # type: ignore[attr-defined]
        entry = cached.get(keys[project.pk])
        if entry is not None and entry[0] == fingerprint:
            counts[project.pk] = entry[1]
        else:
            stale.append((project, fingerprint))
    if stale:
        counted = dict(
            Issue.objects.filter(project__in=[p for p, _ in stale], state=Issue.State.OPENED)
            .order_by()
            .values("project")
            .annotate(n=Count("pk"))
            .values_list("project", "n")
        )
        fresh = {keys[p.pk]: (fingerprint, counted.get(p.pk, 0)) for p, fingerprint in stale}
        try:
            cache.set_many(fresh, settings.SERVICEDESK_TRACKER_COUNTS_CACHE_SECONDS)
        except Exception:
            log.warning("open issue counts cache unavailable", exc_info=True)
        counts.update({p.pk: counted.get(p.pk, 0) for p, _ in stale})
    return counts


def _role_from(memberships: list[Membership], project: Project) -> Role:
    roles = [
        m.role
        for m in memberships
        if m.project_id == project.pk
        or (m.group is not None and project.full_path.startswith(f"{m.group.full_path}/"))
    ]
    return Role(max(roles))


def projects_with_role(*, user: AnyUser, minimum: Role) -> QuerySet[Project]:
    """The projects where the user's role is ``minimum`` or more (directly or through a group;
    superusers: all). One query for the memberships, none for the projects until the caller
    asks: a group membership covers every project below the group."""
    if not user.is_authenticated or not user.is_active or getattr(user, "is_bot", False):
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    memberships = list(
        Membership.objects.filter(user=user, role__gte=minimum).select_related("group")
    )
    if not memberships:
        return Project.objects.none()
    scope = Q(pk__in=[m.project_id for m in memberships if m.project_id])
    for m in memberships:
        if m.group is not None:
            scope |= Q(full_path__startswith=f"{m.group.full_path}/")
    return Project.objects.filter(scope)


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


@dataclass(frozen=True)
class ServiceDeskAddress:
    label: str
    address: str


def service_desk_address_list(*, project: Project) -> list[ServiceDeskAddress]:
    """The settings page's view of :func:`service_desk_addresses`, each with what it is."""
    setting = project.service_desk
    mailboxes = settings.SERVICEDESK_MAILBOXES
    result = []
    incoming = mailboxes.get("incoming_email")
    if incoming is not None and incoming.enabled:
        result.append(ServiceDeskAddress("Address", incoming.address_for(setting.default_key)))
    alias = mailboxes.get("service_desk_email")
    if alias is not None and alias.enabled:
        label = "Alias address (custom suffix)" if setting.custom_key else "Alias address"
        key = setting.custom_key or setting.default_key
        result.append(ServiceDeskAddress(label, alias.address_for(key)))
    return result


def service_desk_previous_key(setting: ServiceDeskSetting) -> str | None:
    """The default key from before the last "regenerate address", while its grace period
    lasts (SERVICEDESK_ADDRESS_GRACE_HOURS); None when there is none or it has expired.

    The previous token may be "" (the original ``<slug>-<id>-issue-`` key)."""
    expires = setting.previous_address_expires_at
    if expires is None or expires <= timezone.now():
        return None
    return setting.key_with_token(setting.previous_address_token)


def service_desk_previous_address(*, project: Project) -> str | None:
    """The incoming address of :func:`service_desk_previous_key`, for the settings page."""
    key = service_desk_previous_key(project.service_desk)
    incoming = settings.SERVICEDESK_MAILBOXES.get("incoming_email")
    if key is None or incoming is None or not incoming.enabled:
        return None
    return incoming.address_for(key)


def email_template_default(kind: str, language: str = "") -> str:
    """The instance default text of one email (templates/emails/<kind>.md, or its translation
    templates/emails/<language>/<kind>.md when there is one): our placeholders, not Django
    template syntax, so the raw source."""
    names = [f"emails/{kind}.md"]
    if language and language != settings.LANGUAGE_CODE:
        names.insert(0, f"emails/{language}/{kind}.md")
    return select_template(names).template.source  # type: ignore[attr-defined,no-any-return]


def email_template_text(*, setting: ServiceDeskSetting, kind: str) -> tuple[str, bool]:
    """The text of one email as it is sent now, and whether it is the project's own."""
    custom: str = getattr(setting, f"{kind}_template")
    if custom:
        return custom, True
    return email_template_default(kind, setting.language), False


def description_templates_for_project(*, project: Project) -> QuerySet[DescriptionTemplate]:
    """Templates the project may append to email issues: its own, its groups' (inherited) and
    the instance's."""
    return DescriptionTemplate.objects.filter(
        Q(project=project)
        | Q(group__full_path__in=project.ancestor_group_paths)
        | Q(project__isnull=True, group__isnull=True)
    ).select_related("group")


def description_template_get(*, project: Project, template_id: int) -> DescriptionTemplate:
    """One of the project's own templates (group and instance ones are not edited here)."""
    template = DescriptionTemplate.objects.filter(project=project, pk=template_id).first()
    if template is None:
        raise Http404("No such template")
    return template


@dataclass
class ProjectMember:
    """One person on the members page: their direct membership of the project and/or the
    highest membership they inherit from the project's groups; the effective role is the
    higher of the two."""

    user: User
    direct: Membership | None = None
    inherited: Membership | None = None

    @property
    def role(self) -> Role:
        roles = [m.role for m in (self.direct, self.inherited) if m is not None]
        return Role(max(roles))

    @property
    def inherited_role(self) -> Role | None:
        return Role(self.inherited.role) if self.inherited is not None else None


def project_member_list(*, project: Project) -> list[ProjectMember]:
    """Everyone with a role in the project, directly or through a group above it, highest role
    first, then by name. One query whatever the number of members."""
    memberships = (
        Membership.objects.filter(
            Q(project=project) | Q(group__full_path__in=project.ancestor_group_paths)
        )
        .select_related("user", "group")
        .filter(user__is_active=True)
    )
    members: dict[int, ProjectMember] = {}
    for m in memberships:
        member = members.setdefault(m.user_id, ProjectMember(user=m.user))
        if m.project_id is not None:
            member.direct = m
        elif member.inherited is None or m.role > member.inherited.role:
            member.inherited = m
    return sorted(members.values(), key=lambda p: (-p.role, p.user.display_name.lower(), p.user.pk))


def project_membership_get(*, project: Project, membership_id: int) -> Membership:
    """A direct membership of the project (inherited ones belong to their group)."""
    membership = (
        Membership.objects.select_related("user", "project")
        .filter(project=project, pk=membership_id)
        .first()
    )
    if membership is None:
        raise Http404("No such member")
    return membership


def group_role_of(*, user: User, project: Project) -> Membership | None:
    """The user's highest membership of a group above the project, if any."""
    return (
        Membership.objects.filter(user=user, group__full_path__in=project.ancestor_group_paths)
        .select_related("group")
        .order_by("-role")
        .first()
    )


def groups_to_create_in(*, user: AnyUser) -> QuerySet[Group]:
    """Groups where the user may create projects and subgroups: Maintainer+ of the group or of
    a group above it (superusers: all)."""
    if not user.is_authenticated or not user.is_active or getattr(user, "is_bot", False):
        return Group.objects.none()
    if user.is_superuser:
        return Group.objects.all()
    paths = list(
        Membership.objects.filter(user=user, group__isnull=False, role__gte=Role.MAINTAINER)
        .values_list("group__full_path", flat=True)
    )  # fmt: skip
    if not paths:
        return Group.objects.none()
    scope = Q(full_path__in=paths)
    for path in paths:
        scope |= Q(full_path__startswith=f"{path}/")
    return Group.objects.filter(scope)
