from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from servicedesk.http import anonymous_404_to_login

from .selectors import project_get_for_user, project_list_for_user


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """ "My projects": every project the user is a member of, with the role."""
    projects = project_list_for_user(user=request.user)
    return render(request, "projects/home.html", {"projects": projects})


@anonymous_404_to_login
@require_GET
def project_detail(request: HttpRequest, full_path: str) -> HttpResponse:
    project = project_get_for_user(user=request.user, full_path=full_path)
    return redirect("issue_list", full_path=project.full_path)
