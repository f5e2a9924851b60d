"""The spam quarantine page: emails Akismet held back, for a Reporter+ to release ("not spam":
it becomes an issue) or delete ("spam": Akismet is told, the case is closed)."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from accounts.models import User
from projects import permissions
from projects.models import Project
from projects.selectors import project_get_for_user
from servicedesk.http import anonymous_404_to_login

from .parsing import MalformedEmail, parse_email
from .selectors import quarantine_list
from .services import NotInQuarantine, spam_confirm, spam_release

PER_PAGE = 25
PREVIEW_CHARS = 2000


def _project(request: HttpRequest, full_path: str) -> Project:
    project = project_get_for_user(user=request.user, full_path=full_path)
    if not permissions.can_review_spam(request.user, project):
        raise Http404("No such page")
    return project


@anonymous_404_to_login
@require_GET
def spam_list(request: HttpRequest, full_path: str) -> HttpResponse:
    project = _project(request, full_path)
    page = Paginator(quarantine_list(project=project), PER_PAGE).get_page(request.GET.get("page"))
    rows = []
    for row in page.object_list:
        try:  # what the sender wrote, as text (never rendered as Markdown or HTML here)
            preview = parse_email(bytes(row.raw)).body_text[:PREVIEW_CHARS]
        except MalformedEmail:
            preview = ""
        rows.append((row, preview))
    return render(
        request, "mailroom/spam_list.html", {"project": project, "page": page, "rows": rows}
    )


def _decide(request: HttpRequest, full_path: str, message_id: int, *, spam: bool) -> HttpResponse:
    project = _project(request, full_path)
    user = request.user
    if (
        not isinstance(user, User)
        or not quarantine_list(project=project).filter(pk=message_id).exists()
    ):
        raise Http404("Not in this project's quarantine")
    try:
        if spam:
            spam_confirm(message_id=message_id, user=user)
            messages.success(request, _("Deleted as spam; Akismet was told."))
        else:
            spam_release(message_id=message_id, user=user)
            messages.success(request, _("Released: it becomes an issue in a moment."))
    except NotInQuarantine:
        messages.info(request, _("Somebody already decided on that email."))
    return redirect("spam_list", full_path=project.full_path)


@anonymous_404_to_login
@require_POST
def spam_not_spam(request: HttpRequest, full_path: str, message_id: int) -> HttpResponse:
    return _decide(request, full_path, message_id, spam=False)


@anonymous_404_to_login
@require_POST
def spam_delete(request: HttpRequest, full_path: str, message_id: int) -> HttpResponse:
    return _decide(request, full_path, message_id, spam=True)
