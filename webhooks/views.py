"""Settings > Webhooks (Maintainer+): the hooks, their delivery log, Test and Resend."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from projects import permissions
from projects.models import Project
from projects.selectors import project_get_for_user
from servicedesk.http import anonymous_404_to_login

from .forms import WebhookForm
from .models import Webhook
from .selectors import delivery_get, delivery_log, webhook_get, webhooks_of_project
from .services import delivery_resend, webhook_delete, webhook_save, webhook_test


def _project_to_administer(request: HttpRequest, full_path: str) -> Project:
    """403 for members who know the settings exist but lack the role, 404 for the others."""
    project = project_get_for_user(user=request.user, full_path=full_path)
    if permissions.can_administer_project(request.user, project):
        return project
    if permissions.admin_denial_is_visible(request.user, project):
        raise PermissionDenied
    raise Http404("No such project")


def _save(request: HttpRequest, form: WebhookForm, project: Project, hook: Webhook | None) -> bool:
    if not form.is_valid():
        return False
    data = form.cleaned_data
    secret = "" if data["clear_secret"] else (data["secret"] or None)
    events = {name: data[name] for name in WebhookForm.EVENT_FIELDS}
    try:
        webhook_save(project=project, hook=hook, url=data["url"], secret=secret,
                     enabled=data["enabled"], verify_ssl=data["verify_ssl"], **events)  # fmt: skip
    except ValidationError as error:
        form.add_error("url", error)
        return False
    return True


def _initial(hook: Webhook) -> dict[str, Any]:
    return {
        "url": hook.url,
        "enabled": hook.enabled,
        "verify_ssl": hook.verify_ssl,
        **{name: getattr(hook, name) for name in WebhookForm.EVENT_FIELDS},
    }


@anonymous_404_to_login
@require_http_methods(["GET", "POST"])
def webhook_list(request: HttpRequest, full_path: str) -> HttpResponse:
    project = _project_to_administer(request, full_path)
    form = WebhookForm(request.POST or None, initial={"issue_events": True})
    if request.method == "POST" and _save(request, form, project, None):
        messages.success(request, _("Webhook added."))
        return redirect("webhook_list", full_path=project.full_path)
    context = {"project": project, "form": form, "hooks": webhooks_of_project(project=project)}
    status = 400 if request.method == "POST" else 200
    return render(request, "webhooks/list.html", context, status=status)


@anonymous_404_to_login
@require_http_methods(["GET", "POST"])
def webhook_edit(request: HttpRequest, full_path: str, hook_id: int) -> HttpResponse:
    project = _project_to_administer(request, full_path)
    hook = webhook_get(project=project, hook_id=hook_id)
    form = WebhookForm(request.POST or None, initial=_initial(hook))
    if request.method == "POST" and _save(request, form, project, hook):
        messages.success(request, _("Webhook saved."))
        return redirect("webhook_edit", full_path=project.full_path, hook_id=hook.pk)
    deliveries = delivery_log(hook=hook)
    context = {"project": project, "hook": hook, "form": form, "deliveries": deliveries}
    status = 400 if request.method == "POST" else 200
    return render(request, "webhooks/edit.html", context, status=status)


@anonymous_404_to_login
@require_POST
def webhook_remove(request: HttpRequest, full_path: str, hook_id: int) -> HttpResponse:
    project = _project_to_administer(request, full_path)
    webhook_delete(hook=webhook_get(project=project, hook_id=hook_id))
    messages.success(request, _("Webhook deleted."))
    return redirect("webhook_list", full_path=project.full_path)


@anonymous_404_to_login
@require_POST
def webhook_send_test(request: HttpRequest, full_path: str, hook_id: int) -> HttpResponse:
    project = _project_to_administer(request, full_path)
    hook = webhook_get(project=project, hook_id=hook_id)
    webhook_test(hook=hook, user=request.user)  # type: ignore[arg-type]
    messages.success(request, _("A test issue event is on its way; its result shows in the log."))
    return redirect("webhook_edit", full_path=project.full_path, hook_id=hook.pk)


@anonymous_404_to_login
@require_GET
def webhook_delivery(
    request: HttpRequest, full_path: str, hook_id: int, delivery_id: int
) -> HttpResponse:
    project = _project_to_administer(request, full_path)
    hook = webhook_get(project=project, hook_id=hook_id)
    delivery = delivery_get(hook=hook, delivery_id=delivery_id)
    payload = json.dumps(delivery.payload, indent=2, ensure_ascii=False)
    context = {"project": project, "hook": hook, "delivery": delivery, "payload_json": payload}
    return render(request, "webhooks/delivery.html", context)


@anonymous_404_to_login
@require_POST
def webhook_delivery_resend(
    request: HttpRequest, full_path: str, hook_id: int, delivery_id: int
) -> HttpResponse:
    project = _project_to_administer(request, full_path)
    hook = webhook_get(project=project, hook_id=hook_id)
    delivery = delivery_get(hook=hook, delivery_id=delivery_id)
    if delivery.retention_days:
        messages.error(
            request,
            ngettext(
                "This request cannot be sent again: it was removed after %(days)s day (retention).",
                "This request cannot be sent again: it was removed after %(days)s days "
                "(retention).",
                delivery.retention_days,
            )
            % {"days": delivery.retention_days},
        )
        return redirect(
            "webhook_delivery", full_path=project.full_path, hook_id=hook.pk,
            delivery_id=delivery.pk,
        )  # fmt: skip
    delivery_resend(delivery=delivery)
    messages.success(request, _("The event is sent again; its result shows in the log."))
    return redirect("webhook_edit", full_path=project.full_path, hook_id=hook.pk)
