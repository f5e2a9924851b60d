from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from accounts.services import invited_user_for_email

from . import permissions
from .models import (
    DescriptionTemplate,
    Group,
    Membership,
    Project,
    RedirectRoute,
    Role,
    ServiceDeskSetting,
    Visibility,
    path_validator,
    project_key_validator,
)
from .placeholders import validate_email_template
from .selectors import description_templates_for_project, group_role_of

if TYPE_CHECKING:
    from .permissions import AnyUser


def _path_errors(
    *, path: str, full_path: str, exclude: Group | Project | None = None
) -> dict[str, str]:
    """A group and a project may not share a full path (their pages live under it), nor two
    of either; checked case-insensitively, as the legacy email keys are."""
    groups = Group.objects.filter(full_path__iexact=full_path)
    projects = Project.objects.filter(full_path__iexact=full_path)
    if isinstance(exclude, Group):
        groups = groups.exclude(pk=exclude.pk)
    elif isinstance(exclude, Project):
        projects = projects.exclude(pk=exclude.pk)
    try:
        path_validator(path)
    except ValidationError as error:
        return {"path": error.messages[0]}
    if "/" not in full_path and path.lower() in RESERVED_PATHS:
        return {"path": f"{path!r} is reserved; choose another path."}
    if groups.exists() or projects.exists():
        return {"path": f"{full_path} is already taken."}
    return {}


# Top-level paths our own pages use (servicedesk/urls.py): a group there would be unreachable.
RESERVED_PATHS = {"admin", "login", "logout", "static", "media", "api"}


def _path_taken(full_paths: list[str]) -> None:
    """Paths now in use no longer redirect anywhere else."""
    RedirectRoute.objects.filter(path__in=full_paths).delete()


@transaction.atomic
def group_create(
    *, path: str, name: str = "", parent: Group | None = None, creator: User | None = None
) -> Group:
    """Create a group (full_path is the model's rule); the creator becomes its Owner."""
    path = path.strip()
    group = Group(path=path, name=(name or path).strip(), parent=parent)
    full_path = f"{parent.full_path}/{path}" if parent else path
    errors = _path_errors(path=path, full_path=full_path)
    if errors:
        raise ValidationError(errors)
    group.full_clean(exclude=["full_path"])
    group.save()
    _path_taken([group.full_path])
    if creator is not None:
        membership_set(user=creator, group=group, role=Role.OWNER)
    return group


@transaction.atomic
def project_create(
    *,
    group: Group,
    path: str,
    name: str = "",
    visibility: str = Visibility.PRIVATE,
    description: str = "",
    creator: User | None = None,
    service_desk_enabled: bool = False,
) -> Project:
    """Create a project with its Service Desk settings; the creator becomes its Owner."""
    path = path.strip()
    project = Project(
        group=group,
        path=path,
        name=(name or path).strip(),
        visibility=visibility,
        description=description,
    )
    errors = _path_errors(path=path, full_path=f"{group.full_path}/{path}")
    if errors:
        raise ValidationError(errors)
    project.full_clean(exclude=["full_path"])
    project.save()
    _path_taken([project.full_path])
    ServiceDeskSetting.objects.create(project=project, service_desk_enabled=service_desk_enabled)
    if creator is not None:
        membership_set(user=creator, project=project, role=Role.OWNER)
    return project


def _remember_old_paths(moved: list[tuple[str, Group | Project]]) -> None:
    """Each (old full path, group or project) becomes a redirect route; new paths are taken."""
    _path_taken([thing.full_path for _, thing in moved])
    for old, thing in moved:
        if old == thing.full_path:
            continue
        target = {"group": thing, "project": None} if isinstance(thing, Group) else {
            "group": None, "project": thing}  # fmt: skip
        RedirectRoute.objects.update_or_create(path=old, defaults=target)


@transaction.atomic
def group_path_change(
    *, group: Group, path: str, name: str | None = None, parent: Group | bool | None = False
) -> Group:
    """Rename a group (its path, and so its full path), or move it under another ``parent``
    (None: to the top; False: where it is). Every group and project below follows; the old
    full paths become redirect routes, so old web addresses redirect and the projects' old
    Service Desk addresses keep routing (mailroom.handlers._project_for)."""
    group = Group.objects.select_for_update().get(pk=group.pk)
    new_parent = group.parent if parent is False else parent
    assert new_parent is None or isinstance(new_parent, Group)
    path = path.strip()
    old = group.full_path
    new = f"{new_parent.full_path}/{path}" if new_parent else path
    if new_parent is not None and (new_parent.pk == group.pk or
                                   new_parent.full_path.startswith(f"{old}/")):  # fmt: skip
        raise ValidationError({"parent": _("A group cannot move into itself or a subgroup.")})
    errors = _path_errors(path=path, full_path=new, exclude=group) if new != old else {}
    if errors:
        raise ValidationError(errors)
    group.path, group.parent = path, new_parent
    if name is not None:
        group.name = name.strip() or path
    group.full_clean(exclude=["full_path"])
    group.save()
    group_renamed(group=group, old_full_path=old)
    return group


@transaction.atomic
def group_renamed(*, group: Group, old_full_path: str) -> None:
    """After a group was saved with a new path or parent (here, or by the Django admin):
    every group and project below follows, and the old paths become redirect routes."""
    old, new = old_full_path, group.full_path
    if new == old:
        _path_taken([new])
        return
    moved: list[tuple[str, Group | Project]] = [(old, group)]
    below = list(Group.objects.filter(full_path__startswith=f"{old}/"))
    projects = list(Project.objects.filter(full_path__startswith=f"{old}/"))
    things: list[Group | Project] = [*below, *projects]
    for thing in things:
        moved.append((thing.full_path, thing))
        thing.full_path = new + thing.full_path[len(old) :]
    Group.objects.bulk_update(below, ["full_path"])
    Project.objects.bulk_update(projects, ["full_path"])
    _remember_old_paths(moved)


@transaction.atomic
def project_path_change(
    *, project: Project, path: str, name: str | None = None, group: Group | None = None
) -> Project:
    """Rename a project's path, or move it to another ``group``; its full path follows, and
    the old one becomes a redirect route (old web addresses redirect, old Service Desk
    addresses keep routing)."""
    project = Project.objects.select_for_update().select_related("group").get(pk=project.pk)
    group = group or project.group
    path = path.strip()
    old = project.full_path
    new = f"{group.full_path}/{path}"
    errors = _path_errors(path=path, full_path=new, exclude=project) if new != old else {}
    if errors:
        raise ValidationError(errors)
    project.path, project.group = path, group
    if name is not None:
        project.name = name.strip() or path
    project.full_clean(exclude=["full_path"])
    project.save()
    project_renamed(project=project, old_full_path=old)
    return project


@transaction.atomic
def project_renamed(*, project: Project, old_full_path: str) -> None:
    """After a project was saved with a new path or group: its old path redirects."""
    _remember_old_paths([(old_full_path, project)])


@transaction.atomic
def membership_set(
    *, user: User, role: Role, project: Project | None = None, group: Group | None = None
) -> Membership:
    """Give ``user`` ``role`` in a project or a group; an existing membership gets the new role."""
    if (project is None) == (group is None):
        raise ValueError("Give exactly one of project or group.")
    if getattr(user, "is_bot", False):
        raise ValueError("Bots cannot be members.")
    membership, _created = Membership.objects.update_or_create(
        user=user, project=project, group=group, defaults={"role": role}
    )
    user.__dict__.pop("_project_roles", None)
    return membership


# The Service Desk emails a project may word itself (SPEC §7); blank means the instance default
# file templates/emails/<kind>.md.
EMAIL_TEMPLATE_KINDS = ("thank_you", "new_note", "new_participant", "issue_closed")
EMAIL_TEMPLATE_MAX_LENGTH = 20_000


@transaction.atomic
def service_desk_email_template_set(*, project: Project, kind: str, text: str) -> None:
    """Store the project's own text for one email (Markdown with %{PLACEHOLDERS}); an empty
    text goes back to the default. Emails recorded from now on use it. A placeholder we do not
    know is refused, naming it (ValidationError)."""
    if kind not in EMAIL_TEMPLATE_KINDS:
        raise ValidationError(_("Unknown email template %(kind)s.") % {"kind": repr(kind)})
    text = text.replace("\r\n", "\n").replace("\x00", "").strip()  # PostgreSQL stores no NUL
    if len(text) > EMAIL_TEMPLATE_MAX_LENGTH:
        raise ValidationError(
            f"An email template may be at most {EMAIL_TEMPLATE_MAX_LENGTH} characters."
        )
    validate_email_template(text)
    setting, _created = ServiceDeskSetting.objects.select_for_update().get_or_create(
        project=project
    )
    setattr(setting, f"{kind}_template", text)
    setting.save(update_fields=[f"{kind}_template", "updated_at"])


_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


@transaction.atomic
def service_desk_settings_update(
    *,
    project: Project,
    service_desk_enabled: bool,
    project_key: str,
    outgoing_name: str,
    description_template: DescriptionTemplate | None,
    reopen_issue_on_external_participant_note: bool,
    add_external_participants_from_cc: bool,
    tickets_confidential_by_default: bool,
    send_issue_closed_email: bool,
    sign_replies_with_agent_name: bool,
    language: str | None = None,
    send_merged_email: bool | None = None,
    satisfaction_survey: bool | None = None,
) -> ServiceDeskSetting:
    """Save the Service Desk settings form (SPEC §6). Raises ValidationError naming the field.

    In a public project every email issue is confidential (SPEC §4): the setting stays on
    whatever is asked."""
    errors: dict[str, str] = {}
    project_key = project_key.strip()
    if project_key:
        try:
            project_key_validator(project_key)
        except ValidationError as error:
            errors["project_key"] = error.messages[0]
    if len(project_key) > 255:
        errors["project_key"] = _("The suffix may be at most 255 characters.")
    outgoing_name = outgoing_name.strip()
    if _CONTROL_CHARS.search(outgoing_name):
        errors["outgoing_name"] = _("The display name must be one line of text.")
    elif len(outgoing_name) > 255:
        errors["outgoing_name"] = _("The display name may be at most 255 characters.")
    if (
        description_template is not None
        and not description_templates_for_project(project=project)
        .filter(pk=description_template.pk)
        .exists()
    ):
        errors["description_template"] = _("This template is not available to the project.")
    if language and language not in dict(settings.LANGUAGES):
        errors["language"] = _("Choose one of the languages offered.")
    if errors:
        raise ValidationError(errors)
    setting, _created = ServiceDeskSetting.objects.select_for_update().get_or_create(
        project=project
    )
    if language:  # None or "": unchanged
        setting.language = language
    setting.service_desk_enabled = service_desk_enabled
    setting.project_key = project_key
    setting.outgoing_name = outgoing_name
    setting.description_template = description_template
    setting.reopen_issue_on_external_participant_note = reopen_issue_on_external_participant_note
    setting.add_external_participants_from_cc = add_external_participants_from_cc
    setting.tickets_confidential_by_default = tickets_confidential_by_default or project.is_public
    setting.send_issue_closed_email = send_issue_closed_email
    setting.sign_replies_with_agent_name = sign_replies_with_agent_name
    if send_merged_email is not None:  # None: unchanged
        setting.send_merged_email = send_merged_email
    if satisfaction_survey is not None:
        setting.satisfaction_survey = satisfaction_survey
    setting.save()
    project.service_desk = setting
    return setting


# 16 hex characters (64 random bits) in "<slug>-<id>-<token>-issue-": the routing accepts
# [a-z0-9]{8,32} (mailroom.routing._ADDRESS_TOKEN).
ADDRESS_TOKEN_BYTES = 8


@transaction.atomic
def service_desk_address_regenerate(*, project: Project) -> ServiceDeskSetting:
    """Give the default address a new random token, so that the old one (which may have
    leaked, or been guessed from the project's path and id) stops working.

    The old token keeps routing for SERVICEDESK_ADDRESS_GRACE_HOURS (mail already on its way);
    regenerating again within that time ends the older one's grace at once. The custom-suffix
    alias address is not changed."""
    setting = ServiceDeskSetting.objects.select_for_update().get(project=project)
    setting.project = project
    grace = settings.SERVICEDESK_ADDRESS_GRACE_HOURS
    if grace > 0:
        setting.previous_address_token = setting.address_token
        setting.previous_address_expires_at = timezone.now() + timedelta(hours=grace)
    else:
        setting.previous_address_token = ""
        setting.previous_address_expires_at = None
    token = setting.address_token
    while token in (setting.address_token, setting.previous_address_token):
        token = secrets.token_hex(ADDRESS_TOKEN_BYTES)
    setting.address_token = token
    setting.save(
        update_fields=[
            "address_token",
            "previous_address_token",
            "previous_address_expires_at",
            "updated_at",
        ]
    )
    project.service_desk = setting
    return setting


DESCRIPTION_TEMPLATE_MAX_LENGTH = 20_000


def _description_template_errors(
    *, project: Project | None, name: str, content: str, exclude: int | None = None
) -> dict[str, str]:
    errors = {}
    same_name = DescriptionTemplate.objects.filter(project=project, name__iexact=name)
    if project is None:  # instance templates check their names themselves
        same_name = same_name.none()
    if exclude is not None:
        same_name = same_name.exclude(pk=exclude)
    if not name:
        errors["name"] = _("Give the template a name.")
    elif len(name) > 100:
        errors["name"] = _("The name may be at most 100 characters.")
    elif same_name.exists():
        errors["name"] = _("The project already has a template with this name.")
    if not content:
        errors["content"] = _("Write the text to append.")
    elif len(content) > DESCRIPTION_TEMPLATE_MAX_LENGTH:
        errors["content"] = (
            f"A template may be at most {DESCRIPTION_TEMPLATE_MAX_LENGTH} characters."
        )
    return errors


@transaction.atomic
def description_template_create(
    *, project: Project, name: str, content: str
) -> DescriptionTemplate:
    name, content = name.strip(), content.replace("\r\n", "\n").strip()
    errors = _description_template_errors(project=project, name=name, content=content)
    if errors:
        raise ValidationError(errors)
    return DescriptionTemplate.objects.create(project=project, name=name, content=content)


@transaction.atomic
def description_template_update(
    *, template: DescriptionTemplate, name: str, content: str
) -> DescriptionTemplate:
    if template.project is None:
        raise ValueError("Only a project's own templates are edited here.")
    name, content = name.strip(), content.replace("\r\n", "\n").strip()
    errors = _description_template_errors(
        project=template.project, name=name, content=content, exclude=template.pk
    )
    if errors:
        raise ValidationError(errors)
    template.name, template.content = name, content
    template.save(update_fields=["name", "content"])
    return template


@transaction.atomic
def description_template_delete(*, template: DescriptionTemplate) -> None:
    """Delete a project template; a Service Desk that appended it appends nothing from now on
    (the foreign key is SET_NULL)."""
    if template.project is None:
        raise ValueError("Only a project's own templates are deleted here.")
    template.delete()


def _check_role(role: int) -> Role:
    if role not in Role.values:
        raise ValidationError({"role": _("Choose a role.")})
    return Role(role)


def _check_not_below_inherited(*, user: User, project: Project, role: Role) -> None:
    """A direct role below the one inherited from a group would change nothing (the higher role
    wins) and mislead whoever reads the list: GitLab refuses it too."""
    inherited = group_role_of(user=user, project=project)
    if inherited is not None and role < inherited.role:
        label = Role(inherited.role).label
        raise ValidationError(
            {
                "role": f"{user.username} is already {label} through the group "
                f"{inherited.group}; choose {label} or higher."
            }
        )


def _check_other_owner_remains(*, project: Project, membership: Membership) -> None:
    """Refuse to remove or demote the project's last Owner (direct or through a group).

    The direct Owner rows are locked first, so two Owners demoting each other at the same
    moment cannot both succeed."""
    direct_owners = list(
        Membership.objects.select_for_update()
        .filter(project=project, role=Role.OWNER, user__is_active=True)
        .values_list("pk", flat=True)
    )
    if any(pk != membership.pk for pk in direct_owners):
        return
    group_owner = Membership.objects.filter(
        Q(group__full_path__in=project.ancestor_group_paths),
        role=Role.OWNER,
        user__is_active=True,
    ).exists()
    if not group_owner:
        raise ValidationError(
            _("A project needs at least one Owner: make someone else Owner first.")
        )


def _forget_cached_role(actor: AnyUser, user_id: int) -> None:
    if actor.pk == user_id:
        actor.__dict__.pop("_project_roles", None)


@transaction.atomic
def project_member_add(*, actor: AnyUser, project: Project, username: str, role: int) -> Membership:
    """Add a user (by username) to the project with ``role`` (SPEC §1 roles).

    Maintainers may grant roles up to Maintainer, Owners any role."""
    role = _check_role(role)
    if not permissions.can_grant_role(actor, project, role):
        raise PermissionDenied("Only Owners can grant the Owner role.")
    username = username.strip().lstrip("@")
    user = User.objects.filter(username__iexact=username, is_active=True, is_bot=False).first()
    if user is None:
        raise ValidationError(
            {"username": _("There is no user called %(username)s.") % {"username": repr(username)}}
        )
    if Membership.objects.filter(user=user, project=project).exists():
        raise ValidationError(
            {"username": f"{user.username} is already a member; change their role in the list."}
        )
    _check_not_below_inherited(user=user, project=project, role=role)
    membership = membership_set(user=user, project=project, role=role)
    _forget_cached_role(actor, user.pk)
    return membership


@transaction.atomic
def project_member_role_change(*, actor: AnyUser, membership: Membership, role: int) -> Membership:
    """Change a direct member's role. A Maintainer may not touch an Owner or make one; the last
    Owner cannot be demoted."""
    role = _check_role(role)
    project = membership.project
    if project is None:
        raise ValueError("Group memberships are changed in the group.")
    if not (
        permissions.can_change_member(actor, project, membership)
        and permissions.can_grant_role(actor, project, role)
    ):
        raise PermissionDenied("Only Owners can grant or change the Owner role.")
    if role == membership.role:
        return membership
    if membership.role == Role.OWNER:
        _check_other_owner_remains(project=project, membership=membership)
    _check_not_below_inherited(user=membership.user, project=project, role=role)
    membership.role = role
    membership.save(update_fields=["role"])
    _forget_cached_role(actor, membership.user_id)
    return membership


@transaction.atomic
def project_member_remove(*, actor: AnyUser, membership: Membership) -> None:
    """Remove a direct member. A Maintainer may not remove an Owner; the last Owner stays.

    A role the person inherits from a group is not affected."""
    project = membership.project
    if project is None:
        raise ValueError("Group memberships are changed in the group.")
    if not permissions.can_change_member(actor, project, membership):
        raise PermissionDenied("Only Owners can remove an Owner.")
    if membership.role == Role.OWNER:
        _check_other_owner_remains(project=project, membership=membership)
    membership.delete()
    _forget_cached_role(actor, membership.user_id)


@transaction.atomic
def project_member_invite(
    *, actor: AnyUser, project: Project, email: str, role: int
) -> tuple[Membership, bool]:
    """Add someone by email address: the account with that address, or a new one whose
    owner gets an invitation to choose a password (accounts.services). Returns (membership,
    invited?)."""
    role = _check_role(role)
    if not permissions.can_grant_role(actor, project, role):
        raise PermissionDenied("Only Owners can grant the Owner role.")
    user, invited = invited_user_for_email(inviter=actor, email=email, where=project.full_path)
    if Membership.objects.filter(user=user, project=project).exists():
        raise ValidationError(
            {"email": f"{user.username} is already a member; change their role in the list."}
        )
    _check_not_below_inherited(user=user, project=project, role=role)
    membership = membership_set(user=user, project=project, role=role)
    _forget_cached_role(actor, user.pk)
    return membership, invited


def _instance_template_errors(
    *, name: str, content: str, exclude: int | None = None
) -> dict[str, str]:
    same_name = DescriptionTemplate.objects.filter(
        project__isnull=True, group__isnull=True, name__iexact=name
    ).exclude(pk=exclude or 0)
    errors = _description_template_errors(project=None, name=name, content=content)
    if "name" not in errors and same_name.exists():
        errors["name"] = _("There is already an instance template with this name.")
    return errors


@transaction.atomic
def instance_template_save(
    *, name: str, content: str, template: DescriptionTemplate | None = None
) -> DescriptionTemplate:
    """Create or change an instance-wide description template (every project may choose it
    in its Service Desk settings)."""
    if template is not None and (template.project_id or template.group_id):
        raise ValueError("Only instance templates are edited here.")
    name, content = name.strip(), content.replace("\r\n", "\n").strip()
    errors = _instance_template_errors(
        name=name, content=content, exclude=template.pk if template else None
    )
    if errors:
        raise ValidationError(errors)
    if template is None:
        return DescriptionTemplate.objects.create(name=name, content=content)
    template.name, template.content = name, content
    template.save(update_fields=["name", "content"])
    return template


@transaction.atomic
def instance_template_delete(*, template: DescriptionTemplate) -> None:
    """Projects that appended it append nothing from now on (SET_NULL)."""
    if template.project_id or template.group_id:
        raise ValueError("Only instance templates are deleted here.")
    template.delete()
