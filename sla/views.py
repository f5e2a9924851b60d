"""A project's response targets and business hours (Settings, Response targets, Maintainer+)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from issues.models import Label
from projects import permissions
from projects.models import Project
from projects.selectors import project_get_for_user

from .forms import LabelTargetForm, ResponsePolicyForm, format_duration
from .models import ResponsePolicy
from .services import label_target_remove, label_target_set, policy_update


def _project_to_manage(request: HttpRequest, full_path: str) -> Project:
    project = project_get_for_user(user=request.user, full_path=full_path)
    if not permissions.can_administer_project(request.user, project):
        if permissions.admin_denial_is_visible(request.user, project):
            raise PermissionDenied
        raise Http404("No such project")
    return project


@login_required
@require_http_methods(["GET", "POST"])
def response_targets(request: HttpRequest, full_path: str) -> HttpResponse:
    project = _project_to_manage(request, full_path)
    policy = ResponsePolicy.objects.filter(project=project).first() or ResponsePolicy(
        project=project
    )
    labels = Label.objects.filter(project=project).order_by("title")
    action = request.POST.get("action", "")
    form = ResponsePolicyForm(request.POST if action == "save" else None, instance=policy)
    label_form = LabelTargetForm(request.POST if action == "label" else None, labels=labels)
    here = redirect("response_targets", full_path=project.full_path)
    if action == "save" and form.is_valid():
        policy_update(policy=form.save(commit=False), fields=form.changed_data or ["enabled"])
        messages.success(request, _("Response targets saved."))
        return here
    if action == "label" and label_form.is_valid():
        if policy.pk is None:
            policy.save()
        data = label_form.cleaned_data
        label_target_set(
            policy=policy,
            label_id=data["label"].pk,
            first_minutes=data["first_response_minutes"],
            next_minutes=data["next_response_minutes"],
        )
        messages.success(
            request, _("Target for ~%(label)s saved.") % {"label": data["label"].title}
        )
        return here
    if action == "remove" and policy.pk is not None:
        if label_target_remove(policy=policy, target_id=int(request.POST.get("target") or 0)):
            messages.success(request, _("Label target removed."))
        return here
    targets = [
        (target, format_duration(target.first_response_minutes),
         format_duration(target.next_response_minutes))
        for target in policy.labels.select_related("label").order_by("label__title")
    ] if policy.pk is not None else []  # fmt: skip
    context = {"project": project, "form": form, "label_form": label_form, "targets": targets}
    status = 400 if action in ("save", "label") else 200
    return render(request, "sla/settings.html", context, status=status)
