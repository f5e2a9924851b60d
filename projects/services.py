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

from accounts.models import User

from . import permissions
from .models import (
    DescriptionTemplate,
    Group,
    Membership,
    Project,
    Role,
    ServiceDeskSetting,
    Visibility,
    project_key_validator,
)
from .placeholders import validate_email_template
from .selectors import description_templates_for_project, group_role_of

if TYPE_CHECKING:
    from .permissions import AnyUser


@transaction.atomic
def group_create(*, path: str, name: str = "", parent: Group | None = None) -> Group:
    full_path = f"{parent.full_path}/{path}" if parent else path
    group = Group(path=path, name=name or path, parent=parent, full_path=full_path)
    group.full_clean()
    group.save()
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
    project = Project(
        group=group,
        path=path,
        name=name or path,
        visibility=visibility,
        description=description,
        full_path=f"{group.full_path}/{path}",
    )
    project.full_clean()
    project.save()
    ServiceDeskSetting.objects.create(project=project, service_desk_enabled=service_desk_enabled)
    if creator is not None:
        membership_set(user=creator, project=project, role=Role.OWNER)
    return project


@transaction.atomic
def membership_set(
    *, user: User, role: Role, project: Project | None = None, group: Group | None = None
) -> Membership:
    """Give ``user`` ``role`` in a project or a group; an existing membership gets the new role."""
    if (project is None) == (group is None):
        raise ValueError("Give exactly one of project or group.")
    if getattr(user, "is_bot", False):
        raise ValueError("Bots cannot be members.")
    membership, _ = Membership.objects.update_or_create(
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
        raise ValidationError(f"Unknown email template {kind!r}.")
    text = text.replace("\r\n", "\n").replace("\x00", "").strip()  # PostgreSQL stores no NUL
    if len(text) > EMAIL_TEMPLATE_MAX_LENGTH:
        raise ValidationError(
            f"An email template may be at most {EMAIL_TEMPLATE_MAX_LENGTH} characters."
        )
    validate_email_template(text)
    setting, _ = ServiceDeskSetting.objects.select_for_update().get_or_create(project=project)
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
        errors["project_key"] = "The suffix may be at most 255 characters."
    outgoing_name = outgoing_name.strip()
    if _CONTROL_CHARS.search(outgoing_name):
        errors["outgoing_name"] = "The display name must be one line of text."
    elif len(outgoing_name) > 255:
        errors["outgoing_name"] = "The display name may be at most 255 characters."
    if (
        description_template is not None
        and not description_templates_for_project(project=project)
        .filter(pk=description_template.pk)
        .exists()
    ):
        errors["description_template"] = "This template is not available to the project."
    if errors:
        raise ValidationError(errors)
    setting, _ = ServiceDeskSetting.objects.select_for_update().get_or_create(project=project)
    setting.service_desk_enabled = service_desk_enabled
    setting.project_key = project_key
    setting.outgoing_name = outgoing_name
    setting.description_template = description_template
    setting.reopen_issue_on_external_participant_note = reopen_issue_on_external_participant_note
    setting.add_external_participants_from_cc = add_external_participants_from_cc
    setting.tickets_confidential_by_default = tickets_confidential_by_default or project.is_public
    setting.send_issue_closed_email = send_issue_closed_email
    setting.sign_replies_with_agent_name = sign_replies_with_agent_name
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
    *, project: Project, name: str, content: str, exclude: int | None = None
) -> dict[str, str]:
    errors = {}
    same_name = DescriptionTemplate.objects.filter(project=project, name__iexact=name)
    if exclude is not None:
        same_name = same_name.exclude(pk=exclude)
    if not name:
        errors["name"] = "Give the template a name."
    elif len(name) > 100:
        errors["name"] = "The name may be at most 100 characters."
    elif same_name.exists():
        errors["name"] = "The project already has a template with this name."
    if not content:
        errors["content"] = "Write the text to append."
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
        raise ValidationError({"role": "Choose a role."})
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
        raise ValidationError("A project needs at least one Owner: make someone else Owner first.")


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
        raise ValidationError({"username": f"There is no user called {username!r}."})
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
