from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.selectors import support_bot
from projects import permissions
from projects.selectors import project_get_for_user, service_desk_addresses
from servicedesk.http import anonymous_404_to_login

from .emails import note_added
from .forms import NoteForm
from .models import Issue, SentNotification, Upload
from .selectors import (
    ISSUE_STATES,
    issue_counts_for_user,
    issue_get_for_user,
    issue_list_for_user,
    note_list_for_issue,
    upload_get_by_token,
    upload_get_for_user,
)
from .services import issue_close, issue_reopen, note_create, participant_unsubscribe

ISSUES_PER_PAGE = 50
INLINE_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}


def _issue_for(request: HttpRequest, full_path: str, iid: int) -> Issue:
    project = project_get_for_user(user=request.user, full_path=full_path)
    return issue_get_for_user(user=request.user, project=project, iid=iid)


@anonymous_404_to_login
@require_GET
def issue_list(request: HttpRequest, full_path: str) -> HttpResponse:
    project = project_get_for_user(user=request.user, full_path=full_path)
    state = request.GET.get("state", "opened")
    if state not in ISSUE_STATES:
        state = "opened"
    issues = issue_list_for_user(user=request.user, project=project, state=state)
    page = Paginator(issues, ISSUES_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "project": project,
        "state": state,
        "page": page,
        "counts": issue_counts_for_user(user=request.user, project=project),
        "can_see_emails": permissions.can_see_customer_emails(request.user, project),
    }
    if context["can_see_emails"] and project.service_desk.service_desk_enabled:
        context["service_desk_addresses"] = service_desk_addresses(project=project)
    return render(request, "issues/issue_list.html", context)


def _render_issue(
    request: HttpRequest, issue: Issue, form: NoteForm | None = None, status: int = 200
) -> HttpResponse:
    user = request.user
    context = {
        "project": issue.project,
        "issue": issue,
        "notes": note_list_for_issue(user=user, issue=issue),
        "form": form or NoteForm(),
        "can_comment": permissions.can_comment_on_issue(user, issue),
        "can_add_internal_note": permissions.can_add_internal_note(user, issue),
        "can_update": permissions.can_update_issue(user, issue),
        "can_see_emails": permissions.can_see_customer_emails(user, issue.project),
    }
    return render(request, "issues/issue_detail.html", context, status=status)


@anonymous_404_to_login
@require_GET
def issue_detail(request: HttpRequest, full_path: str, iid: int) -> HttpResponse:
    return _render_issue(request, _issue_for(request, full_path, iid))


@login_required
@require_POST
def note_add(request: HttpRequest, full_path: str, iid: int) -> HttpResponse:
    issue = _issue_for(request, full_path, iid)
    if not permissions.can_comment_on_issue(request.user, issue):
        raise PermissionDenied
    form = NoteForm(request.POST, request.FILES)
    if not form.is_valid():
        return _render_issue(request, issue, form, status=400)
    internal = form.cleaned_data["internal"]
    if internal and not permissions.can_add_internal_note(request.user, issue):
        raise PermissionDenied
    with transaction.atomic():
        note = note_create(
            issue=issue,
            author=request.user,
            body=form.cleaned_data["body"],
            internal=internal,
            files=form.cleaned_data["files"],
        )
        note_added(note)  # emails the participants (public notes only), sent after commit
    url = reverse("issue_detail", kwargs={"full_path": issue.project.full_path, "iid": issue.iid})
    return redirect(f"{url}#note-{note.pk}")


def _change_state(request: HttpRequest, full_path: str, iid: int, *, close: bool) -> HttpResponse:
    issue = _issue_for(request, full_path, iid)
    if not permissions.can_update_issue(request.user, issue):
        raise PermissionDenied
    if close:
        issue_close(issue=issue, user=request.user)
        messages.success(request, f"Issue #{issue.iid} closed.")
    else:
        issue_reopen(issue=issue, user=request.user)
        messages.success(request, f"Issue #{issue.iid} reopened.")
    return redirect("issue_detail", full_path=issue.project.full_path, iid=issue.iid)


@login_required
@require_POST
def issue_close_view(request: HttpRequest, full_path: str, iid: int) -> HttpResponse:
    return _change_state(request, full_path, iid, close=True)


@login_required
@require_POST
def issue_reopen_view(request: HttpRequest, full_path: str, iid: int) -> HttpResponse:
    return _change_state(request, full_path, iid, close=False)


@anonymous_404_to_login
@require_GET
def upload_download(request: HttpRequest, upload_id: int, filename: str) -> HttpResponse:
    """Serve an upload to those who may read its issue; 404 for everyone else.

    Only raster images are shown inline; everything else (HTML, SVG, PDFs…) is a download, and
    nothing is sniffed, so an uploaded file can never run script on our origin.
    """
    upload = upload_get_for_user(user=request.user, upload_id=upload_id)
    if upload.filename != filename:
        raise Http404("No such file")
    return _file_response(upload)


@require_GET
def upload_by_token(request: HttpRequest, token: str, filename: str) -> HttpResponse:
    """A file linked from an email: the signed token stands in for a login."""
    return _file_response(upload_get_by_token(token=token, filename=filename))


def _file_response(upload: Upload) -> HttpResponse:
    inline = upload.content_type in INLINE_IMAGE_TYPES
    response = FileResponse(
        upload.file.open("rb"),
        as_attachment=not inline,
        filename=upload.filename,
        content_type=upload.content_type if inline else "application/octet-stream",
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response


@csrf_exempt  # RFC 8058 one-click POSTs come from mail providers; the key is the credential
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, reply_key: str) -> HttpResponse:
    """GET shows a confirmation (link scanners must not unsubscribe anyone); POST — the form's
    button or a one-click ``List-Unsubscribe=One-Click`` — unsubscribes. No login needed."""
    sent = (
        SentNotification.objects.select_related("participant", "issue", "issue__project")
        .filter(reply_key=reply_key.lower())
        .first()
    )
    if sent is None or sent.participant is None:
        raise Http404("Unknown or expired unsubscribe link")
    context = {"issue": sent.issue, "email": sent.participant.email, "done": False}
    if request.method == "POST":
        participant_unsubscribe(participant=sent.participant, actor=support_bot())
        context["done"] = True
    return render(request, "issues/unsubscribe.html", context)
