from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Q, QuerySet
from django.http import Http404

from projects import permissions
from projects.models import Project, Role

from .models import SavedReply

if TYPE_CHECKING:
    from projects.permissions import AnyUser


def saved_replies_usable(*, user: AnyUser, project: Project) -> QuerySet[SavedReply]:
    """The replies someone may insert on the project's issues: their own and the project's,
    for Reporter+ (the team; a Guest who may comment gets none)."""
    if not permissions.has_role(user, project, Role.REPORTER):
        return SavedReply.objects.none()
    return SavedReply.objects.filter(Q(user=user) | Q(project=project)).order_by(
        "project_id", "name"
    )


def saved_reply_own(*, user: AnyUser, reply_id: int) -> SavedReply:
    found = SavedReply.objects.filter(pk=reply_id, user_id=user.pk or 0).first()
    if found is None:
        raise Http404("No such saved reply")
    return found


def saved_reply_of_project(*, project: Project, reply_id: int) -> SavedReply:
    found = SavedReply.objects.filter(pk=reply_id, project=project).first()
    if found is None:
        raise Http404("No such saved reply")
    return found
