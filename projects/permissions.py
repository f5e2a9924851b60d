"""Who may do what: the one place that answers it. Every view asks here.

Rules (SPEC §1, §8):
- A project is readable by its members (direct, or through any ancestor group), by any
  signed-in user when it is internal, and by anyone when it is public. Superusers read all.
- A confidential issue is readable only by Reporter and up.
- Internal notes and every customer email address are for Reporter and up.
- Commenting needs a signed-in human who can read the issue; internal notes need Reporter+.
- Closing/reopening needs Reporter+ (or being the issue's author).
- Administering a project (settings, Service Desk) needs Maintainer+.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeGuard

from django.db.models import Max, Q

from .models import Membership, Project, Role, Visibility

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from accounts.models import User
    from issues.models import Issue

    AnyUser = User | AnonymousUser


def _is_human(user: AnyUser) -> TypeGuard[User]:
    return bool(user.is_authenticated and user.is_active and not getattr(user, "is_bot", False))


def project_role(user: AnyUser, project: Project) -> Role | None:
    """The user's effective role: the highest of the project's and its groups' memberships.

    Cached on the user object for the request, so a page asks the database once per project.
    """
    if not _is_human(user):
        return None
    if user.is_superuser:
        return Role.OWNER
    cache: dict[int, Role | None] = user.__dict__.setdefault("_project_roles", {})
    if project.pk not in cache:
        best = (
            Membership.objects.filter(user=user)
            .filter(Q(project=project) | Q(group__full_path__in=project.ancestor_group_paths))
            .aggregate(role=Max("role"))["role"]
        )
        cache[project.pk] = Role(best) if best is not None else None
    return cache[project.pk]


def remember_project_role(user: AnyUser, project: Project, role: Role | None) -> None:
    """Seed the cache when a selector already computed roles in bulk (the project list)."""
    if _is_human(user) and not user.is_superuser:
        user.__dict__.setdefault("_project_roles", {})[project.pk] = role


def has_role(user: AnyUser, project: Project, minimum: Role) -> bool:
    role = project_role(user, project)
    return role is not None and role >= minimum


def can_read_project(user: AnyUser, project: Project) -> bool:
    if project.visibility == Visibility.PUBLIC:
        return True
    if project.visibility == Visibility.INTERNAL and _is_human(user):
        return True
    return project_role(user, project) is not None


def can_read_issue(user: AnyUser, issue: Issue) -> bool:
    if not can_read_project(user, issue.project):
        return False
    return not issue.confidential or has_role(user, issue.project, Role.REPORTER)


def can_read_internal_notes(user: AnyUser, project: Project) -> bool:
    return has_role(user, project, Role.REPORTER)


def can_see_customer_emails(user: AnyUser, project: Project) -> bool:
    """Requester and participant addresses, the Service Desk address: Reporter+ only."""
    return has_role(user, project, Role.REPORTER)


def can_create_issue(user: AnyUser, project: Project) -> bool:
    return _is_human(user) and can_read_project(user, project)


def can_comment_on_issue(user: AnyUser, issue: Issue) -> bool:
    return _is_human(user) and can_read_issue(user, issue)


def can_add_internal_note(user: AnyUser, issue: Issue) -> bool:
    return can_comment_on_issue(user, issue) and has_role(user, issue.project, Role.REPORTER)


def can_update_issue(user: AnyUser, issue: Issue) -> bool:
    """Close, reopen, label, assign."""
    if not can_read_issue(user, issue):
        return False
    return has_role(user, issue.project, Role.REPORTER) or (
        _is_human(user) and issue.author_id == user.pk
    )


def can_administer_project(user: AnyUser, project: Project) -> bool:
    return has_role(user, project, Role.MAINTAINER)


def can_manage_members(user: AnyUser, project: Project) -> bool:
    return has_role(user, project, Role.MAINTAINER)
