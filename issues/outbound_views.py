"""The outbound ledger pages: every email sent or to be sent, to whom, its state and the
server's words when it failed, "Retry" for a failed one. Per project under
``<project>/-/outbound/`` (Maintainer+: Reporter+ members and Guests of a public project get
403, everyone else 404), instance-wide under ``/-/admin/outbound/`` (staff; 404 for everyone
else). Reply keys and unsubscribe tokens are never shown (``outbound_redacted``).
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

from .models import OutboundEmail
from .outbox import RetryRefused, outbound_retry
from .selectors import OutboxFilters, outbound_get, outbound_list, outbound_redacted

EMAILS_PER_PAGE = 50


def _project_outbox(request: HttpRequest, full_path: str) -> Project:
    project = project_get_for_user(user=request.user, full_path=full_path)
    if not permissions.can_view_outbound_ledger(request.user, project):
        if permissions.admin_denial_is_visible(request.user, project):
            raise PermissionDenied
        raise Http404("No such page")
    return project


def _instance_outbox(request: HttpRequest) -> None:
    if not permissions.can_view_instance_outbound(request.user):
        raise Http404("No such page")


def _render_list(request: HttpRequest, project: Project | None) -> HttpResponse:
    filters = OutboxFilters.from_query(request.GET)
    emails = outbound_list(project=project, filters=filters)
    context = {
        "project": project,
        "filters": filters,
        "page": Paginator(emails, EMAILS_PER_PAGE).get_page(request.GET.get("page")),
        "kinds": OutboundEmail.Kind.choices,
        "statuses": OutboundEmail.Status.choices,
    }
    template = "issues/_outbound_results.html" if wants_results_only(request) else None
    response = render(request, template or "issues/outbound_list.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _render_detail(request: HttpRequest, project: Project | None, email_id: int) -> HttpResponse:
    email = outbound_get(email_id=email_id, project=project)
    context = {"project": project, "email": email, "shown": outbound_redacted(email)}
    return render(request, "issues/outbound_detail.html", context)


def _retry(request: HttpRequest, project: Project | None, email_id: int) -> HttpResponse:
    email = outbound_get(email_id=email_id, project=project)
    try:
        outbound_retry(email_id=email.pk)
    except RetryRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, _("Email #%(email_pk)s is queued to be sent again.") % {"email_pk": email.pk}
        )
    if project is not None:
        return redirect("project_outbound_detail", full_path=project.full_path, email_id=email.pk)
    return redirect("instance_outbound_detail", email_id=email.pk)


@anonymous_404_to_login
@require_GET
def project_outbound_list(request: HttpRequest, full_path: str) -> HttpResponse:
    return _render_list(request, _project_outbox(request, full_path))


@anonymous_404_to_login
@require_GET
def project_outbound_detail(request: HttpRequest, full_path: str, email_id: int) -> HttpResponse:
    return _render_detail(request, _project_outbox(request, full_path), email_id)


@anonymous_404_to_login
@require_POST
def project_outbound_retry(request: HttpRequest, full_path: str, email_id: int) -> HttpResponse:
    return _retry(request, _project_outbox(request, full_path), email_id)


@anonymous_404_to_login
@require_GET
def instance_outbound_list(request: HttpRequest) -> HttpResponse:
    _instance_outbox(request)
    return _render_list(request, None)


@anonymous_404_to_login
@require_GET
def instance_outbound_detail(request: HttpRequest, email_id: int) -> HttpResponse:
    _instance_outbox(request)
    return _render_detail(request, None, email_id)


@anonymous_404_to_login
@require_POST
def instance_outbound_retry(request: HttpRequest, email_id: int) -> HttpResponse:
    _instance_outbox(request)
    return _retry(request, None, email_id)
