"""The To-Do list, one's notification settings, and a project's new-ticket rule."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from projects import permissions
from projects.selectors import project_get_for_user

from .models import Level
from .selectors import new_ticket_rule, notification_levels, todo_list
from .services import (
    new_ticket_rule_set,
    notification_level_set,
    todo_done,
    todos_all_done,
)


@login_required
def todos(request: HttpRequest) -> HttpResponse:
    return render(
        request, "notifications/todos.html", {"todos": list(todo_list(user=request.user))}
    )


@login_required
@require_POST
def todo_mark_done(request: HttpRequest, todo_id: int) -> HttpResponse:
    if not todo_done(user=request.user, todo_id=todo_id):
        raise Http404("No such To-Do")
    messages.success(request, _("Done."))
    return redirect("todos")


@login_required
@require_POST
def todos_mark_all_done(request: HttpRequest) -> HttpResponse:
    count = todos_all_done(user=request.user)
    messages.success(request, f"{count} To-Do{'s' if count != 1 else ''} done.")
    return redirect("todos")


@login_required
@require_http_methods(["GET", "POST"])
def notification_settings(request: HttpRequest) -> HttpResponse:
    default, projects = notification_levels(user=request.user)
    if request.method == "POST":
        chosen = {p.project.pk: request.POST.get(f"project-{p.project.pk}") for p in projects}
        wanted = request.POST.get("default", "")
        if (
            wanted not in Level.values
            or wanted == Level.GLOBAL
            or not all(level in Level.values for level in chosen.values() if level is not None)
        ):
            messages.error(request, _("Choose one of the levels."))
            return redirect("notification_settings")
        with transaction.atomic():
            notification_level_set(user=request.user, level=wanted)
            for row in projects:
                level = chosen[row.project.pk]
                if level is not None and level != row.level:
                    notification_level_set(user=request.user, level=level, project=row.project)
        messages.success(request, _("Notification settings saved."))
        return redirect("notification_settings")
    context = {
        "default": default,
        "projects": projects,
        "levels": [(v, label) for v, label in Level.choices if v != Level.GLOBAL],
        "project_levels": Level.choices,
    }
    return render(request, "notifications/settings.html", context)


class NewTicketRuleForm(forms.Form):
    chosen_only = forms.TypedChoiceField(
        label=gettext_lazy("Who hears about new and unassigned tickets"),
        choices=[
            (
                "false",
                gettext_lazy(
                    "Every Reporter and up (except those who chose On mention or Disabled)"
                ),
            ),
            ("true", gettext_lazy("Only the people chosen below")),
        ],
        coerce=lambda value: value == "true",
        widget=forms.RadioSelect,
    )
    people = forms.ModelMultipleChoiceField(
        queryset=None,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label=gettext_lazy("People"),
    )

    def __init__(self, *args, candidates, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.fields["people"].queryset = candidates
        self.fields["people"].label_from_instance = lambda u: f"{u.display_name} (@{u.username})"

    def clean(self):  # type: ignore[no-untyped-def]
        data = super().clean()
        if data.get("chosen_only") and not data.get("people"):
            self.add_error(
                "people", _("Choose at least one person: a new ticket must reach someone.")
            )
        return data


@login_required
@require_http_methods(["GET", "POST"])
def project_notifications(request: HttpRequest, full_path: str) -> HttpResponse:
    project = project_get_for_user(user=request.user, full_path=full_path)
    if not permissions.can_administer_project(request.user, project):
        if permissions.admin_denial_is_visible(request.user, project):
            raise PermissionDenied
        raise Http404("No such project")
    chosen_only, chosen, candidates = new_ticket_rule(project=project)
    status = 200
    if request.method == "POST":
        form = NewTicketRuleForm(request.POST, candidates=candidates)
        if form.is_valid():
            new_ticket_rule_set(project=project, chosen_only=form.cleaned_data["chosen_only"],
                                people=list(form.cleaned_data["people"]))  # fmt: skip
            messages.success(request, _("Notification settings saved."))
            return redirect("project_notifications", full_path=project.full_path)
        status = 400
    else:
        initial = {"chosen_only": "true" if chosen_only else "false", "people": chosen}
        form = NewTicketRuleForm(initial=initial, candidates=candidates)
    context = {"project": project, "form": form}
    return render(request, "notifications/project_settings.html", context, status=status)
