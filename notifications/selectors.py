"""Reads for To-Dos and notification settings: a fixed number of queries per page."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from accounts.models import User
from issues.selectors import assignable_users
from projects.models import Project
from projects.selectors import project_list_for_user

from .models import DEFAULT_LEVEL, Level, NewTicketRule, NotificationSetting, Todo


def todo_list(*, user: User) -> QuerySet[Todo]:
    """Pending To-Dos, newest first, with what a row shows (one query)."""
    return (
        Todo.objects.filter(user=user, done_at=None)
        .select_related("issue", "issue__project", "actor", "note")
        .order_by("-created_at", "-id")
    )


@dataclass(frozen=True)
class ProjectLevel:
    project: Project
    level: str


def notification_levels(*, user: User) -> tuple[str, list[ProjectLevel]]:
    """The person's default level and their level for each of their projects."""
    rows: dict[int, str] = {}
    default: str = DEFAULT_LEVEL
    for project_id, level in NotificationSetting.objects.filter(user=user).values_list(
        "project_id", "level"
    ):
        if project_id is None:
            default = level if level != Level.GLOBAL else DEFAULT_LEVEL
        else:
            rows[project_id] = level
    projects = [p.project for p in project_list_for_user(user=user)]
    return default, [ProjectLevel(p, rows.get(p.pk, Level.GLOBAL)) for p in projects]


def new_ticket_rule(*, project: Project) -> tuple[bool, list[int], QuerySet[User]]:
    """(chosen people only?, their ids, who can be chosen: Reporter+ members)."""
    rule = NewTicketRule.objects.filter(project=project).first()
    chosen = list(rule.people.values_list("pk", flat=True)) if rule is not None else []
    return bool(rule and rule.chosen_only), chosen, assignable_users(project=project)
