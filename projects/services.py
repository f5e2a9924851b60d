from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import transaction

from .models import Group, Membership, Project, Role, ServiceDeskSetting, Visibility

if TYPE_CHECKING:
    from accounts.models import User


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
        member_add(user=creator, project=project, role=Role.OWNER)
    return project


@transaction.atomic
def member_add(
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
    text goes back to the default. Emails recorded from now on use it."""
    if kind not in EMAIL_TEMPLATE_KINDS:
        raise ValidationError(f"Unknown email template {kind!r}.")
    text = text.replace("\r\n", "\n").replace("\x00", "").strip()  # PostgreSQL stores no NUL
    if len(text) > EMAIL_TEMPLATE_MAX_LENGTH:
        raise ValidationError(
            f"An email template may be at most {EMAIL_TEMPLATE_MAX_LENGTH} characters."
        )
    setting, _ = ServiceDeskSetting.objects.select_for_update().get_or_create(project=project)
    setattr(setting, f"{kind}_template", text)
    setting.save(update_fields=[f"{kind}_template", "updated_at"])
