"""Who may do what: the one place that answers it. Every view asks here.

Rules (SPEC §1, §8):
- A project is readable by its members (direct, or through any ancestor group), by any
  signed-in user when it is internal, and by anyone when it is public. Superusers read all.
- A confidential issue is readable only by Reporter and up.
- Internal notes and every customer email address are for Reporter and up.
- Commenting needs a signed-in human who can read the issue; internal notes need Reporter+.
- Closing/reopening needs Reporter+ (or being the issue's author).
- Labels, assignees, confidentiality, email participants, moving (Reporter+ in both
  projects) and converting to Service Desk need Reporter+; only Reporter+ can be assigned.
- Administering a project (settings, Service Desk) needs Maintainer+.
- Members: anyone signed in who can read the project sees the list; Maintainer+ manage it
  (by username, or by inviting an email address), but only Owners grant, change or remove the
  Owner role.
- Groups: Maintainer+ of a group (directly or through a group above) create projects and
  subgroups in it; top-level groups are created by instance admins, or by anyone signed in
  when SERVICEDESK_TOP_LEVEL_GROUPS = "everyone".
- The admin area (users, groups, projects, instance templates): instance admins — staff and
  superusers. Only superusers make or unmake admins, or change another superuser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeGuard

from django.conf import settings
from django.db.models import Max, Q

from .models import Group, Membership, Project, Role, Visibility

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


def can_read_confidential_issues(user: AnyUser, project: Project) -> bool:
    """Lists (the tracker, its counts and filter choices) include confidential issues: Reporter+.
    The same rule as ``can_read_issue``, asked once for a whole project."""
    return has_role(user, project, Role.REPORTER)


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


# Who can be assigned to issues: members who can read every issue of the project, including the
# confidential Service Desk ones (Reporter+). Guests could be handed an issue they cannot open.
ASSIGNABLE_ROLE = Role.REPORTER


def can_be_assigned(user: AnyUser, project: Project) -> bool:
    return _is_human(user) and has_role(user, project, ASSIGNABLE_ROLE)


def can_triage_issue(user: AnyUser, issue: Issue) -> bool:
    """The issue page's sidebar: labels, assignees, confidentiality, email participants, and
    converting an issue into a Service Desk issue. Reporter+ (authors below Reporter may still
    close and reopen their own issues, ``can_update_issue``)."""
    return can_read_issue(user, issue) and has_role(user, issue.project, Role.REPORTER)


def can_bulk_edit_issues(user: AnyUser, project: Project) -> bool:
    """The tracker's bulk edit (labels, assignees, state, confidentiality of many issues):
    Reporter+. Each issue is still asked ``can_triage_issue``."""
    return has_role(user, project, Role.REPORTER)


def can_move_issue(user: AnyUser, issue: Issue, target: Project | None = None) -> bool:
    """Move an issue to another project (SPEC §10): Reporter+ in its project and, when a
    target is given, in the target too."""
    if not can_triage_issue(user, issue):
        return False
    return target is None or has_role(user, target, Role.REPORTER)


def can_administer_project(user: AnyUser, project: Project) -> bool:
    return has_role(user, project, Role.MAINTAINER)


def can_manage_members(user: AnyUser, project: Project) -> bool:
    return has_role(user, project, Role.MAINTAINER)


def can_see_members(user: AnyUser, project: Project) -> bool:
    """The members page: any signed-in person who can read the project (read-only below
    Maintainer). Anonymous visitors of a public project do not get the team's names."""
    return _is_human(user) and can_read_project(user, project)


def can_grant_role(user: AnyUser, project: Project, role: int) -> bool:
    """Give someone ``role`` (add or change): Maintainers up to Maintainer, Owners any."""
    return can_manage_members(user, project) and (
        role < Role.OWNER or has_role(user, project, Role.OWNER)
    )


def can_change_member(user: AnyUser, project: Project, membership: Membership) -> bool:
    """Change the role of, or remove, a direct member of the project: a Maintainer may not
    touch an Owner. Memberships inherited from a group are changed in the group."""
    return membership.project_id == project.pk and can_grant_role(user, project, membership.role)


def admin_denial_is_visible(user: AnyUser, project: Project) -> bool:
    """For someone who may not administer the project: True → 403, False → 404.

    Reporter+ members know the settings exist; so do Guests of a public project. Anyone else
    (non-members, Guests of a private or internal project) must not learn even that."""
    role = project_role(user, project)
    if role is None:
        return False
    return role >= Role.REPORTER or project.visibility == Visibility.PUBLIC


def can_view_inbound_ledger(user: AnyUser, project: Project) -> bool:
    """The project's inbound ledger — every email received for it, with the senders' addresses,
    the raw .eml and "Reprocess": Maintainer+ (denied as ``admin_denial_is_visible`` says)."""
    return has_role(user, project, Role.MAINTAINER)


def can_view_outbound_ledger(user: AnyUser, project: Project) -> bool:
    """The project's outbound ledger — every email it sent or will send, to whom, and why one
    failed, with "Retry": Maintainer+, as the inbound one (denied as ``admin_denial_is_visible``
    says)."""
    return has_role(user, project, Role.MAINTAINER)


def can_view_instance_outbound(user: AnyUser) -> bool:
    """The instance-wide outbound ledger (also "[Rejected]" notices to unknown senders): staff
    and superusers; everyone else gets a 404."""
    return can_view_instance_inbound(user)


def can_view_instance_inbound(user: AnyUser) -> bool:
    """The instance-wide ledger (also emails no project claimed) and mailbox health: the
    instance's admins (``can_administer_instance``); everyone else gets a 404."""
    return can_administer_instance(user)


def can_see_mailbox_alerts(user: AnyUser, project: Project) -> bool:
    """The "mailbox is not fetching" banner on a project's pages: the people who answer its
    customers, Reporter+."""
    return has_role(user, project, Role.REPORTER)


def can_review_spam(user: AnyUser, project: Project) -> bool:
    """The spam quarantine (emails Akismet held back, with the senders' addresses): the people
    who answer the project's customers, Reporter+. Everyone else gets a 404."""
    return has_role(user, project, Role.REPORTER)


def can_view_dashboard(user: AnyUser, project: Project) -> bool:
    """The project dashboard (SPEC §11: Service Desk tickets opened, closed, first response,
    backlog): the people who answer the project's customers, Reporter+. Everyone else gets a
    404."""
    return has_role(user, project, Role.REPORTER)


def can_administer_instance(user: AnyUser) -> bool:
    """The admin area and the instance-wide ledger: staff and superusers; everyone else gets
    a 404 (anonymous visitors the login page)."""
    return _is_human(user) and (user.is_staff or user.is_superuser)


def can_change_admin(user: AnyUser, target: User | None = None) -> bool:
    """Make or unmake an admin, or change (deactivate, edit) a superuser: superusers only, so
    that staff cannot raise themselves."""
    if not can_administer_instance(user):
        return False
    return user.is_superuser or (target is not None and not target.is_superuser and
                                 not target.is_staff)  # fmt: skip


def group_role(user: AnyUser, group: Group) -> Role | None:
    """The user's role in a group: the highest of its and its ancestors' memberships."""
    if not _is_human(user):
        return None
    if user.is_superuser:
        return Role.OWNER
    parts = group.full_path.split("/")
    paths = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    best = Membership.objects.filter(user=user, group__full_path__in=paths).aggregate(
        role=Max("role")
    )["role"]
    return Role(best) if best is not None else None


def can_create_in_group(user: AnyUser, group: Group) -> bool:
    """New projects and subgroups in ``group``: its Maintainers and Owners."""
    role = group_role(user, group)
    return role is not None and role >= Role.MAINTAINER


def can_create_top_level_group(user: AnyUser) -> bool:
    if not _is_human(user):
        return False
    return settings.SERVICEDESK_TOP_LEVEL_GROUPS == "everyone" or can_administer_instance(user)


def can_set_issue_metadata(user: AnyUser, project: Project) -> bool:
    """Labels, assignees and a requester given when creating an issue (the API): Reporter+, as
    ``can_triage_issue`` for an existing one. Anyone who may create an issue may still create
    one without them."""
    return _is_human(user) and has_role(user, project, Role.REPORTER)
