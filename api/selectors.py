from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Q, QuerySet

from projects.models import Project, Role, Visibility
from projects.selectors import projects_with_role

from .models import PersonalAccessToken, token_digest

if TYPE_CHECKING:
    from accounts.models import User
    from projects.permissions import AnyUser


def token_for_secret(secret: str) -> PersonalAccessToken | None:
    """The token whose secret this is (with its user), whatever its state; one query."""
    digest = token_digest(secret)
    return PersonalAccessToken.objects.select_related("user").filter(digest=digest).first()


def token_list_for_user(*, user: User) -> QuerySet[PersonalAccessToken]:
    return PersonalAccessToken.objects.filter(user=user).order_by("-created_at", "-id")


def token_get_for_user(*, user: User, token_id: int) -> PersonalAccessToken | None:
    return PersonalAccessToken.objects.filter(user=user, pk=token_id).first()


def project_list_visible(*, user: AnyUser, membership: bool = False) -> QuerySet[Project]:
    """Every project the user may read (``permissions.can_read_project`` as one query): public
    ones, internal ones for signed-in people, and those they are members of (directly or
    through a group); with ``membership``, only the latter. Two queries with the page: the
    memberships, then the projects."""
    mine = projects_with_role(user=user, minimum=Role.GUEST)
    if getattr(user, "is_superuser", False) and user.is_active:
        scope = Q()
    else:
        scope = Q(pk__in=mine.values("pk"))
        if not membership:
            scope |= Q(visibility=Visibility.PUBLIC)
            human = user.is_authenticated and user.is_active and not getattr(user, "is_bot", False)
            if human:
                scope |= Q(visibility=Visibility.INTERNAL)
    return (
        Project.objects.filter(scope)
        .select_related("group", "service_desk")
        .order_by("-created_at", "-id")
    )
