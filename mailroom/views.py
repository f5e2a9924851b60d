"""The inbound ledger pages: every email received, what became of it and why, its raw bytes,
"Reprocess"; the instance-wide page adds the emails no project claimed and mailbox health.

A project's ledger is for its Maintainers and up (Reporter+ members, and Guests of a public
project, get 403; everyone else 404); the instance-wide one for staff (404 for everyone else).
Anonymous visitors are sent to the sign-in page.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from projects import permissions
from projects.models import Project
from projects.selectors import project_get_for_user
from servicedesk.http import anonymous_404_to_login, wants_results_only
from servicedesk.retention import retention_removed

from .models import InboundMessage
from .selectors import (
    LedgerFilters,
    inbound_get,
    inbound_list,
    inbound_queue,
    inbound_raw,
    mailbox_health,
    worker_heartbeats,
)
from .services import ReprocessRefused, inbound_reprocess, inbound_reprocess_refusal

EMAILS_PER_PAGE = 50


def _project_ledger(request: HttpRequest, full_path: str) -> Project:
    project = project_get_for_user(user=request.user, full_path=full_path)
    if not permissions.can_view_inbound_ledger(request.user, project):
        if permissions.admin_denial_is_visible(request.user, project):
            raise PermissionDenied
        raise Http404("No such page")
    return project


def _instance_ledger(request: HttpRequest) -> None:
    if not permissions.can_view_instance_inbound(request.user):
        raise Http404("No such page")


def _render_list(
    request: HttpRequest, project: Project | None, extra: dict[str, object] | None = None
) -> HttpResponse:
    filters = LedgerFilters.from_query(request.GET)
    emails = inbound_list(project=project, filters=filters)
    context = {
        "project": project,
        "filters": filters,
        "page": Paginator(emails, EMAILS_PER_PAGE).get_page(request.GET.get("page")),
        "outcomes": InboundMessage.Outcome.choices,
        "statuses": InboundMessage.Status.choices,
        **(extra or {}),
    }
    if wants_results_only(request):
        response = render(request, "mailroom/_inbound_results.html", context)
    else:
        response = render(request, "mailroom/inbound_list.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _render_detail(request: HttpRequest, project: Project | None, message_id: int) -> HttpResponse:
    email = inbound_get(message_id=message_id, project=project)
    context = {
        "project": project,
        "email": email,
        "reprocess_refusal": inbound_reprocess_refusal(email),
    }
    return render(request, "mailroom/inbound_detail.html", context)


def _raw_response(project: Project | None, message_id: int) -> HttpResponse:
    """The .eml as a download: never rendered or sniffed by the browser (it is the sender's
    content, HTML included)."""
    email = inbound_get(message_id=message_id, project=project)
    if email.retention_days:
        gone = HttpResponse(retention_removed(email.retention_days), status=410)
        gone["Content-Type"] = "text/plain; charset=utf-8"
        return gone
    response = HttpResponse(inbound_raw(message=email), content_type="message/rfc822")
    response["Content-Disposition"] = f'attachment; filename="inbound-{email.pk}.eml"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-store"
    return response


def _reprocess(request: HttpRequest, project: Project | None, message_id: int) -> HttpResponse:
    email = inbound_get(message_id=message_id, project=project)
    try:
        inbound_reprocess(message_id=email.pk)
    except ReprocessRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            _("Email #%(email_pk)s is queued to be processed again.") % {"email_pk": email.pk},
        )
    if project is not None:
        return redirect("project_inbound_detail", full_path=project.full_path, message_id=email.pk)
    return redirect("instance_inbound_detail", message_id=email.pk)


# --- A project's ledger ------------------------------------------------------------------------


@anonymous_404_to_login
@require_GET
def project_inbound_list(request: HttpRequest, full_path: str) -> HttpResponse:
    return _render_list(request, _project_ledger(request, full_path))


@anonymous_404_to_login
@require_GET
def project_inbound_detail(request: HttpRequest, full_path: str, message_id: int) -> HttpResponse:
    return _render_detail(request, _project_ledger(request, full_path), message_id)


@anonymous_404_to_login
@require_GET
def project_inbound_raw(request: HttpRequest, full_path: str, message_id: int) -> HttpResponse:
    return _raw_response(_project_ledger(request, full_path), message_id)


@anonymous_404_to_login
@require_POST
def project_inbound_reprocess(
    request: HttpRequest, full_path: str, message_id: int
) -> HttpResponse:
    return _reprocess(request, _project_ledger(request, full_path), message_id)


# --- The instance-wide ledger and mailbox health -------------------------------------------------


@anonymous_404_to_login
@require_GET
def instance_inbound_list(request: HttpRequest) -> HttpResponse:
    _instance_ledger(request)
    health = {}
    if not wants_results_only(request):
        health = {
            "mailboxes": mailbox_health(),
            "heartbeats": worker_heartbeats(),
            "queue": inbound_queue(),
        }
    return _render_list(request, None, health)


@anonymous_404_to_login
@require_GET
def instance_inbound_detail(request: HttpRequest, message_id: int) -> HttpResponse:
    _instance_ledger(request)
    return _render_detail(request, None, message_id)


@anonymous_404_to_login
@require_GET
def instance_inbound_raw(request: HttpRequest, message_id: int) -> HttpResponse:
    _instance_ledger(request)
    return _raw_response(None, message_id)


@anonymous_404_to_login
@require_POST
def instance_inbound_reprocess(request: HttpRequest, message_id: int) -> HttpResponse:
    _instance_ledger(request)
    return _reprocess(request, None, message_id)
