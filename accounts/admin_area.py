"""The admin area (/-/admin/): users, groups, projects and instance description templates,
for the instance's admins (projects.permissions.can_administer_instance); a 404 for everyone
else, the login page for anonymous visitors. Not the Django admin: this is the product's."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from projects import permissions
from projects.forms import GroupForm, InstanceTemplateForm, ProjectCreateForm, RenameForm
from projects.models import DescriptionTemplate, Group, Project
from projects.services import (
    group_create,
    group_path_change,
    instance_template_delete,
    instance_template_save,
    project_create,
    project_path_change,
)
from servicedesk.http import anonymous_404_to_login

from .forms import UserCreateForm
from .models import User
from .services import (
    invitation_resend,
    user_create,
    user_set_active,
    user_set_admin,
)

PAGE = 100


def admin_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    @anonymous_404_to_login
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not permissions.can_administer_instance(request.user):
            raise Http404("No such page")
        return view(request, *args, **kwargs)

    return wrapper


# --- Users --------------------------------------------------------------------------------------


def _render_users(request: HttpRequest, form: UserCreateForm, status: int = 200) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:100]
    users = User.objects.filter(is_bot=False)
    if query:
        users = users.filter(
            Q(username__icontains=query) | Q(name__icontains=query) | Q(email__icontains=query)
        )
    context = {
        "users": users.order_by("username")[:PAGE],
        "query": query,
        "form": form,
        "can_change_admins": permissions.can_change_admin(request.user),
        "page_size": PAGE,
    }
    return render(request, "admin_area/users.html", context, status=status)


@admin_only
@require_http_methods(["GET", "POST"])
def users(request: HttpRequest) -> HttpResponse:
    """The list (search by username, name, address); POST creates an account, invited by
    email to choose a password unless one is given."""
    if request.method == "GET":
        return _render_users(request, UserCreateForm())
    form = UserCreateForm(request.POST)
    if form.is_valid():
        try:
            user = user_create(actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            invited = not form.cleaned_data["password"]
            if invited:
                done = _("%(username)s created; an invitation is on its way to %(email)s.") % {
                    "username": user.username, "email": user.email}  # fmt: skip
            else:
                done = _("%(username)s created.") % {"username": user.username}
            messages.success(request, done)
            return redirect("admin_users")
    return _render_users(request, form, status=400)


USER_ACTIONS: dict[str, tuple[Callable[..., object], dict[str, bool], str]] = {
    "deactivate": (user_set_active, {"active": False}, "{} is deactivated."),
    "reactivate": (user_set_active, {"active": True}, "{} is active again."),
    "make-admin": (user_set_admin, {"admin": True}, "{} is an admin."),
    "unmake-admin": (user_set_admin, {"admin": False}, "{} is no longer an admin."),
    "resend-invitation": (invitation_resend, {}, "A new invitation is on its way to {}."),
}


@admin_only
@require_POST
def user_action(request: HttpRequest, user_id: int, action: str) -> HttpResponse:
    if action not in USER_ACTIONS:
        raise Http404("No such action")
    user = get_object_or_404(User, pk=user_id, is_bot=False)
    service, arguments, done = USER_ACTIONS[action]
    try:
        service(actor=request.user, user=user, **arguments)
    except PermissionDenied:
        messages.error(request, _("Only superusers change admins."))
        return redirect("admin_users")
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("admin_users")
    messages.success(request, done.format(user.email if action == "resend-invitation"
                                          else user.username))  # fmt: skip
    return redirect("admin_users")


# --- Groups and projects ------------------------------------------------------------------------


@admin_only
@require_http_methods(["GET", "POST"])
def groups(request: HttpRequest) -> HttpResponse:
    form = GroupForm(request.POST or None, parents=Group.objects.all())
    if request.method == "POST" and form.is_valid():
        try:
            group = group_create(**form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(
                request, _("Group %(full_path)s created.") % {"full_path": group.full_path}
            )
            return redirect("admin_groups")
    status = 400 if request.method == "POST" else 200
    context = {"groups": Group.objects.order_by("full_path")[:1000], "form": form}
    return render(request, "admin_area/groups.html", context, status=status)


def _rename(request: HttpRequest, thing: Group | Project, kind: str) -> HttpResponse:
    initial = {"path": thing.path, "name": thing.name}
    form = RenameForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            if isinstance(thing, Group):
                group_path_change(group=thing, **form.cleaned_data)
            else:
                project_path_change(project=thing, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            thing.refresh_from_db()
            messages.success(
                request,
                _("Saved: the %(kind)s is now at %(full_path)s.")
                % {"kind": kind, "full_path": thing.full_path},
            )
            return redirect(f"admin_{kind}s")
    status = 400 if request.method == "POST" else 200
    context = {"thing": thing, "kind": kind, "form": form,
               "redirects": thing.redirect_routes.order_by("path")}  # fmt: skip
    return render(request, "admin_area/rename.html", context, status=status)


@admin_only
@require_http_methods(["GET", "POST"])
def group_edit(request: HttpRequest, group_id: int) -> HttpResponse:
    return _rename(request, get_object_or_404(Group, pk=group_id), "group")


@admin_only
@require_http_methods(["GET", "POST"])
def projects(request: HttpRequest) -> HttpResponse:
    form = ProjectCreateForm(request.POST or None, groups=Group.objects.all())
    if request.method == "POST" and form.is_valid():
        try:
            project = project_create(creator=request.user, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(
                request, _("Project %(full_path)s created.") % {"full_path": project.full_path}
            )
            return redirect("admin_projects")
    status = 400 if request.method == "POST" else 200
    context = {"projects": Project.objects.order_by("full_path")[:1000], "form": form}
    return render(request, "admin_area/projects.html", context, status=status)


@admin_only
@require_http_methods(["GET", "POST"])
def project_edit(request: HttpRequest, project_id: int) -> HttpResponse:
    return _rename(request, get_object_or_404(Project, pk=project_id), "project")


# --- Instance description templates -------------------------------------------------------------


def _instance_templates() -> Q:
    return Q(project__isnull=True, group__isnull=True)


@admin_only
@require_http_methods(["GET", "POST"])
def templates(request: HttpRequest) -> HttpResponse:
    form = InstanceTemplateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            template = instance_template_save(**form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, _("Template “%(name)s” created.") % {"name": template.name})
            return redirect("admin_templates")
    status = 400 if request.method == "POST" else 200
    context = {"templates": DescriptionTemplate.objects.filter(_instance_templates()),
               "form": form}  # fmt: skip
    return render(request, "admin_area/templates.html", context, status=status)


@admin_only
@require_http_methods(["GET", "POST"])
def template_edit(request: HttpRequest, template_id: int) -> HttpResponse:
    """Edit; POST with ``delete`` deletes."""
    template = get_object_or_404(DescriptionTemplate, _instance_templates(), pk=template_id)
    if request.method == "POST" and "delete" in request.POST:
        instance_template_delete(template=template)
        messages.success(request, _("Template “%(name)s” deleted.") % {"name": template.name})
        return redirect("admin_templates")
    initial = {"name": template.name, "content": template.content}
    form = InstanceTemplateForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            instance_template_save(template=template, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, _("Template “%(name)s” saved.") % {"name": template.name})
            return redirect("admin_templates")
    status = 400 if request.method == "POST" else 200
    context = {"template": template, "form": form}
    return render(request, "admin_area/template_edit.html", context, status=status)
