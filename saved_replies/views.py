"""Saved replies: a person's own (profile), a project's (Maintainer+), and filling one in for
the comment box."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from issues.selectors import issue_get_for_user
from projects import permissions
from projects.models import Project
from projects.selectors import project_get_for_user

from .forms import SavedReplyForm
from .models import SavedReply
from .selectors import saved_replies_usable, saved_reply_of_project, saved_reply_own
from .services import PLACEHOLDERS, saved_reply_delete, saved_reply_fill, saved_reply_save


def _save_from(request: HttpRequest, form: SavedReplyForm, **owner: object) -> bool:
    """Validate and save; errors go back onto the form."""
    if not form.is_valid():
        return False
    try:
        saved_reply_save(**form.cleaned_data, **owner)  # type: ignore[arg-type]
    except ValidationError as error:
        for field, errors in error.message_dict.items():
            for message in errors:
                form.add_error(field if field in form.fields else None, message)
        return False
    messages.success(request, _("Saved reply saved."))
    return True


def _listing(
    request: HttpRequest,
    replies: QuerySet[SavedReply],
    here: str,
    edit_url: Callable[[SavedReply], str],
    context: dict[str, object],
    **owner: object,
) -> HttpResponse:
    form = SavedReplyForm(request.POST or None)
    if request.method == "POST" and _save_from(request, form, **owner):
        return redirect(here)
    rows = [(reply, edit_url(reply)) for reply in replies]
    status = 400 if request.method == "POST" else 200
    context = {**context, "rows": rows, "form": form, "placeholders": PLACEHOLDERS}
    return render(request, "saved_replies/list.html", context, status=status)


def _editing(
    request: HttpRequest, reply: SavedReply, back: str, context: dict[str, object]
) -> HttpResponse:
    initial = {"name": reply.name, "content": reply.content}
    form = SavedReplyForm(request.POST or None, initial=initial)
    if request.method == "POST":
        if request.POST.get("delete"):
            saved_reply_delete(reply=reply)
            messages.success(request, _("Saved reply deleted."))
            return redirect(back)
        if _save_from(request, form, reply=reply):
            return redirect(back)
    status = 400 if request.method == "POST" else 200
    context = {**context, "form": form, "reply": reply, "back": back, "placeholders": PLACEHOLDERS}
    return render(request, "saved_replies/edit.html", context, status=status)


# --- Yours ------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def saved_replies(request: HttpRequest) -> HttpResponse:
    user = request.user
    return _listing(
        request,
        SavedReply.objects.filter(user_id=user.pk),
        reverse("saved_replies"),
        lambda reply: reverse("saved_reply_edit", args=[reply.pk]),
        {
            "heading": "Your saved replies",
            "who": "you, in every project where you are Reporter or more",
        },
        user=user,
    )


@login_required
@require_http_methods(["GET", "POST"])
def saved_reply_edit(request: HttpRequest, reply_id: int) -> HttpResponse:
    reply = saved_reply_own(user=request.user, reply_id=reply_id)
    return _editing(request, reply, reverse("saved_replies"), {"heading": "Your saved reply"})


# --- A project's ------------------------------------------------------------------------------


def _project_to_manage(request: HttpRequest, full_path: str) -> Project:
    project = project_get_for_user(user=request.user, full_path=full_path)
    if not permissions.can_administer_project(request.user, project):
        if permissions.admin_denial_is_visible(request.user, project):
            raise PermissionDenied
        raise Http404("No such project")
    return project


@login_required
@require_http_methods(["GET", "POST"])
def project_saved_replies(request: HttpRequest, full_path: str) -> HttpResponse:
    project = _project_to_manage(request, full_path)
    return _listing(
        request,
        SavedReply.objects.filter(project=project),
        reverse("project_saved_replies", args=[project.full_path]),
        lambda reply: reverse("project_saved_reply_edit", args=[project.full_path, reply.pk]),
        {"heading": "Saved replies", "who": "everyone Reporter or more in this project",
         "project": project},
        project=project,
    )  # fmt: skip


@login_required
@require_http_methods(["GET", "POST"])
def project_saved_reply_edit(request: HttpRequest, full_path: str, reply_id: int) -> HttpResponse:
    project = _project_to_manage(request, full_path)
    reply = saved_reply_of_project(project=project, reply_id=reply_id)
    back = reverse("project_saved_replies", args=[project.full_path])
    return _editing(request, reply, back, {"heading": "Saved reply", "project": project})


# --- Inserting one ----------------------------------------------------------------------------


@login_required
@require_GET
def saved_reply_insert(
    request: HttpRequest, full_path: str, iid: int, reply_id: int
) -> HttpResponse:
    """The reply's text for this issue, placeholders filled (the comment box inserts it)."""
    project = project_get_for_user(user=request.user, full_path=full_path)
    issue = issue_get_for_user(user=request.user, project=project, iid=iid)
    if not permissions.can_comment_on_issue(request.user, issue):
        raise Http404("No such saved reply")
    reply = saved_replies_usable(user=request.user, project=project).filter(pk=reply_id).first()
    if reply is None:
        raise Http404("No such saved reply")
    text = saved_reply_fill(reply=reply, issue=issue, user=request.user)  # type: ignore[arg-type]
    return HttpResponse(text, content_type="text/plain; charset=utf-8")
