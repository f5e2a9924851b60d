from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from issues.emails import agent_signature, email_preview, sender_address
from servicedesk.http import anonymous_404_to_login

from . import permissions
from .custom_email import (
    ERROR_ADVICE,
    custom_email_create,
    custom_email_enable,
    custom_email_reset,
    custom_email_verification_restart,
)
from .forms import (
    CustomEmailForm,
    DescriptionTemplateForm,
    EmailTemplateForm,
    GroupForm,
    MemberAddForm,
    MemberInviteForm,
    MemberRoleForm,
    ProjectCreateForm,
    ServiceDeskSettingsForm,
)
from .models import CustomEmail, Group, Membership, Project, Role, ServiceDeskSetting
from .placeholders import EMAIL_PLACEHOLDERS, describe_unknown, unknown_placeholders
from .selectors import (
    ProjectMember,
    description_template_get,
    description_templates_for_project,
    email_template_default,
    email_template_text,
    groups_to_create_in,
    project_get_for_user,
    project_list_for_user,
    project_member_list,
    project_membership_get,
    service_desk_address_list,
    service_desk_previous_address,
)
from .services import (
    EMAIL_TEMPLATE_MAX_LENGTH,
    description_template_create,
    description_template_delete,
    description_template_update,
    group_create,
    project_create,
    project_member_add,
    project_member_invite,
    project_member_remove,
    project_member_role_change,
    service_desk_address_regenerate,
    service_desk_email_template_set,
    service_desk_settings_update,
)


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


# --- Settings (Maintainer+) -------------------------------------------------------------------


def _project_to_administer(request: HttpRequest, full_path: str) -> Project:
    """The project if the user may administer it; 403 for members who know the settings exist
    but lack the role, 404 for everyone else (and so a login redirect for anonymous users)."""
    project = project_get_for_user(user=request.user, full_path=full_path)
    if permissions.can_administer_project(request.user, project):
        return project
    if permissions.admin_denial_is_visible(request.user, project):
        raise PermissionDenied
    raise Http404("No such project")


@dataclass(frozen=True)
class EmailKind:
    kind: str
    label: str  # lazy: translated where shown
    when: str


EMAIL_KINDS = {
    k.kind: k
    for k in [
        EmailKind(
            "thank_you", _lazy("Thank you"), _lazy("to the customer whose email became an issue")
        ),
        EmailKind(
            "new_participant",
            _lazy("New participant"),
            _lazy("to each person added from Cc of a new email"),
        ),
        EmailKind(
            "new_note", _lazy("New note"), _lazy("to the participants for each public comment")
        ),
        EmailKind(
            "issue_closed",
            _lazy("Issue closed"),
            _lazy("to the participants when the issue is closed (if turned on)"),
        ),
        EmailKind(
            "merged",
            _lazy("Ticket merged"),
            _lazy("to a merged ticket's participants, saying where it continues (if turned on)"),
        ),
    ]
}
PLACEHOLDERS = [(f"%{{{name}}}", meaning) for name, meaning in EMAIL_PLACEHOLDERS.items()]


@anonymous_404_to_login
@require_http_methods(["GET", "POST"])
def service_desk_settings(request: HttpRequest, full_path: str) -> HttpResponse:
    project = _project_to_administer(request, full_path)
    setting = project.service_desk
    templates = description_templates_for_project(project=project)
    status = 200
    if request.method == "POST":
        form = ServiceDeskSettingsForm(request.POST, project=project, templates=templates)
        if form.is_valid():
            try:
                service_desk_settings_update(project=project, **form.cleaned_data)
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(request, _("Service Desk settings saved."))
                return redirect("service_desk_settings", full_path=project.full_path)
        status = 400
    else:
        initial = ServiceDeskSettingsForm.initial_from(setting)
        form = ServiceDeskSettingsForm(initial=initial, project=project, templates=templates)
    emails = [_email_summary(setting, k) for k in EMAIL_KINDS.values()]
    context = {
        "project": project,
        "setting": setting,
        "form": form,
        "addresses": service_desk_address_list(project=project),
        "previous_address": service_desk_previous_address(project=project),
        "emails": emails,
        "custom_email": CustomEmail.objects.filter(project=project).first(),
    }
    return render(request, "projects/settings_service_desk.html", context, status=status)


@anonymous_404_to_login
@require_http_methods(["GET", "POST"])
def service_desk_regenerate(request: HttpRequest, full_path: str) -> HttpResponse:
    """GET asks for confirmation; POST gives the default address a new random token."""
    project = _project_to_administer(request, full_path)
    if request.method == "POST":
        setting = service_desk_address_regenerate(project=project)
        if setting.previous_address_expires_at is not None:
            hours = settings.SERVICEDESK_ADDRESS_GRACE_HOURS
            messages.success(
                request,
                ngettext(
                    "New address generated. The old one keeps working for %(hours)s hour.",
                    "New address generated. The old one keeps working for %(hours)s hours.",
                    hours,
                )
                % {"hours": hours},
            )
        else:
            messages.success(request, _("New address generated. The old one no longer works."))
        return redirect("service_desk_settings", full_path=project.full_path)
    context = {
        "project": project,
        "addresses": service_desk_address_list(project=project),
        "previous_address": service_desk_previous_address(project=project),
        "grace_hours": settings.SERVICEDESK_ADDRESS_GRACE_HOURS,
    }
    return render(request, "projects/settings_regenerate.html", context)


@dataclass(frozen=True)
class EmailSummary:
    kind: EmailKind
    is_custom: bool
    unknown_placeholders: list[str]


def _email_summary(setting: ServiceDeskSetting, kind: EmailKind) -> EmailSummary:
    # A template saved before unknown placeholders were refused may still hold one.
    text, is_custom = email_template_text(setting=setting, kind=kind.kind)
    return EmailSummary(kind, is_custom, unknown_placeholders(text))


def _email_kind(kind: str) -> EmailKind:
    if kind not in EMAIL_KINDS:
        raise Http404("No such email")
    return EMAIL_KINDS[kind]


def _same_text(a: str, b: str) -> bool:
    return a.replace("\r\n", "\n").strip() == b.replace("\r\n", "\n").strip()


def _render_email_editor(
    request: HttpRequest,
    project: Project,
    kind: EmailKind,
    form: EmailTemplateForm,
    text: str,
    status: int = 200,
) -> HttpResponse:
    is_custom = bool(getattr(project.service_desk, f"{kind.kind}_template"))
    context = {
        "project": project,
        "kind": kind,
        "kinds": EMAIL_KINDS.values(),
        "form": form,
        "is_custom": is_custom,
        "placeholders": PLACEHOLDERS,
        **_preview_context(request, project, kind, text),
    }
    return render(request, "projects/settings_email_template.html", context, status=status)


def _preview_context(
    request: HttpRequest, project: Project, kind: EmailKind, text: str
) -> dict[str, Any]:
    if len(text) > EMAIL_TEMPLATE_MAX_LENGTH:
        return {"preview_error": _("At most %(n)s characters.") % {"n": EMAIL_TEMPLATE_MAX_LENGTH}}
    # The sample comment is the editor's own: signed replies show their name.
    agent = request.user.display_name
    subject, html = email_preview(project=project, kind=kind.kind, text=text, agent_name=agent)
    name = project.service_desk.display_name
    if kind.kind == "new_note":
        name = agent_signature(project.service_desk, agent)[0]
    sender = f"{name} <{sender_address(project.service_desk)}>"
    written = text.strip() or email_template_default(kind.kind)
    return {
        "preview_subject": subject,
        "preview_html": html,
        "preview_from": sender,
        "unknown_placeholders": [describe_unknown(u) for u in unknown_placeholders(written)],
    }


@anonymous_404_to_login
@require_http_methods(["GET", "POST"])
def service_desk_email_template(request: HttpRequest, full_path: str, kind: str) -> HttpResponse:
    """Edit one email's text. The default text is shown when the project has none, and saving
    it unchanged keeps following the default."""
    project = _project_to_administer(request, full_path)
    email = _email_kind(kind)
    if request.method == "POST":
        if "reset" in request.POST:
            service_desk_email_template_set(project=project, kind=kind, text="")
            messages.success(
                request,
                _("The “%(label)s” email uses the default text again.") % {"label": email.label},
            )
            return redirect("service_desk_email_template", full_path=project.full_path, kind=kind)
        form = EmailTemplateForm(request.POST)
        if form.is_valid():
            text = form.cleaned_data["text"]
            if _same_text(text, email_template_default(kind)):
                text = ""
            try:
                service_desk_email_template_set(project=project, kind=kind, text=text)
            except ValidationError as error:
                form.add_error("text", error)
            else:
                messages.success(
                    request, _("The “%(label)s” email template is saved.") % {"label": email.label}
                )
                return redirect(
                    "service_desk_email_template", full_path=project.full_path, kind=kind
                )
        return _render_email_editor(
            request, project, email, form, request.POST.get("text", ""), status=400
        )
    text, _custom = email_template_text(setting=project.service_desk, kind=kind)
    form = EmailTemplateForm(initial={"text": text})
    return _render_email_editor(request, project, email, form, text)


@anonymous_404_to_login
@require_POST
def service_desk_email_preview(request: HttpRequest, full_path: str, kind: str) -> HttpResponse:
    """The live preview: htmx posts the text on each pause in typing and swaps in the partial.
    Without JavaScript the editor's "Preview" button lands here and gets the whole page."""
    project = _project_to_administer(request, full_path)
    email = _email_kind(kind)
    text = request.POST.get("text", "")
    if request.headers.get("HX-Request"):
        context = {"project": project, **_preview_context(request, project, email, text)}
        return render(request, "projects/_email_preview.html", context)
    form = EmailTemplateForm(initial={"text": text})
    return _render_email_editor(request, project, email, form, text)


# --- A project's own email address -------------------------------------------------------------


def _render_custom_email(
    request: HttpRequest, project: Project, form: CustomEmailForm | None = None, status: int = 200
) -> HttpResponse:
    custom = CustomEmail.objects.filter(project=project).first()
    context = {
        "project": project,
        "custom": custom,
        "form": form or CustomEmailForm(),
        "advice": ERROR_ADVICE.get(custom.error, "") if custom is not None else "",
        "addresses": service_desk_address_list(project=project),
        "display_name": project.service_desk.display_name,
        "verification_minutes": settings.SERVICEDESK_CUSTOM_EMAIL_VERIFICATION_MINUTES,
    }
    # htmx polls the verifying state's section; the rest of the page stays as it is.
    if request.headers.get("HX-Request") and not request.headers.get("HX-History-Restore-Request"):
        return render(request, "projects/_custom_email_state.html", context, status=status)
    return render(request, "projects/settings_custom_email.html", context, status=status)


@anonymous_404_to_login
@require_http_methods(["GET", "POST"])
def service_desk_custom_email(request: HttpRequest, full_path: str) -> HttpResponse:
    """The custom address in its four states (form, verifying, failed, verified); POST saves
    the address and credentials and starts the verification."""
    project = _project_to_administer(request, full_path)
    if request.method == "GET":
        return _render_custom_email(request, project)
    form = CustomEmailForm(request.POST)
    if form.is_valid():
        try:
            custom_email_create(project=project, actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, _("Saved. The verification email is on its way."))
            return redirect("service_desk_custom_email", full_path=project.full_path)
    return _render_custom_email(request, project, form, status=400)


def _custom_email_action(request: HttpRequest, full_path: str) -> Project:
    project = _project_to_administer(request, full_path)
    if not CustomEmail.objects.filter(project=project).exists():
        raise Http404("No custom email address")
    return project


@anonymous_404_to_login
@require_POST
def service_desk_custom_email_retry(request: HttpRequest, full_path: str) -> HttpResponse:
    project = _custom_email_action(request, full_path)
    custom_email_verification_restart(project=project, actor=request.user)
    messages.success(request, _("A new verification email is on its way."))
    return redirect("service_desk_custom_email", full_path=project.full_path)


@anonymous_404_to_login
@require_POST
def service_desk_custom_email_enable(request: HttpRequest, full_path: str) -> HttpResponse:
    project = _custom_email_action(request, full_path)
    enabled = request.POST.get("enabled") == "on"
    try:
        custom_email_enable(project=project, enabled=enabled)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(
            request,
            _("Service Desk emails now go from the custom address.")
            if enabled
            else _("Service Desk emails go from the instance's address again."),
        )
    return redirect("service_desk_custom_email", full_path=project.full_path)


@anonymous_404_to_login
@require_POST
def service_desk_custom_email_reset(request: HttpRequest, full_path: str) -> HttpResponse:
    project = _custom_email_action(request, full_path)
    custom_email_reset(project=project)
    messages.success(request, _("The custom email address and its credentials are deleted."))
    return redirect("service_desk_custom_email", full_path=project.full_path)


# --- Description templates ----------------------------------------------------------------------


@anonymous_404_to_login
@require_GET
def description_template_list(request: HttpRequest, full_path: str) -> HttpResponse:
    project = _project_to_administer(request, full_path)
    templates = list(description_templates_for_project(project=project))
    context = {
        "project": project,
        "own": [t for t in templates if t.project_id == project.pk],
        "inherited": [t for t in templates if t.project_id is None],
        "selected_id": project.service_desk.description_template_id,
    }
    return render(request, "projects/description_templates.html", context)


@anonymous_404_to_login
@require_http_methods(["GET", "POST"])
def description_template_new(request: HttpRequest, full_path: str) -> HttpResponse:
    project = _project_to_administer(request, full_path)
    form = DescriptionTemplateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            template = description_template_create(project=project, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, _("Template “%(name)s” created.") % {"name": template.name})
            return redirect("description_template_list", full_path=project.full_path)
    status = 400 if request.method == "POST" else 200
    context = {"project": project, "form": form, "template": None}
    return render(request, "projects/description_template_form.html", context, status=status)


@anonymous_404_to_login
@require_http_methods(["GET", "POST"])
def description_template_edit(
    request: HttpRequest, full_path: str, template_id: int
) -> HttpResponse:
    project = _project_to_administer(request, full_path)
    template = description_template_get(project=project, template_id=template_id)
    initial = {"name": template.name, "content": template.content}
    form = DescriptionTemplateForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            description_template_update(template=template, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, _("Template “%(name)s” saved.") % {"name": template.name})
            return redirect("description_template_list", full_path=project.full_path)
    status = 400 if request.method == "POST" else 200
    context = {"project": project, "form": form, "template": template}
    return render(request, "projects/description_template_form.html", context, status=status)


@anonymous_404_to_login
@require_http_methods(["GET", "POST"])
def description_template_remove(
    request: HttpRequest, full_path: str, template_id: int
) -> HttpResponse:
    """GET asks for confirmation; POST deletes."""
    project = _project_to_administer(request, full_path)
    template = description_template_get(project=project, template_id=template_id)
    if request.method == "POST":
        description_template_delete(template=template)
        messages.success(request, _("Template “%(name)s” deleted.") % {"name": template.name})
        return redirect("description_template_list", full_path=project.full_path)
    in_use = project.service_desk.description_template_id == template.pk
    context = {"project": project, "template": template, "in_use": in_use}
    return render(request, "projects/description_template_delete.html", context)


# --- Members ------------------------------------------------------------------------------------


@dataclass
class MemberRow:
    member: ProjectMember
    editable: bool
    error: str = ""


def _project_members_for(request: HttpRequest, full_path: str, *, manage: bool) -> Project:
    """404 for those who may not see the members (and a login redirect for anonymous users);
    403 when ``manage`` and the user only may look."""
    project = project_get_for_user(user=request.user, full_path=full_path)
    if not permissions.can_see_members(request.user, project):
        raise Http404("No such project")
    if manage and not permissions.can_manage_members(request.user, project):
        raise PermissionDenied
    return project


def _render_members(
    request: HttpRequest,
    project: Project,
    *,
    form: MemberAddForm | None = None,
    invite_form: MemberInviteForm | None = None,
    errors: dict[int, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    user = request.user
    errors = errors or {}
    rows = []
    for m in project_member_list(project=project):
        if m.direct is None:
            rows.append(MemberRow(member=m, editable=False))
        else:
            editable = permissions.can_change_member(user, project, m.direct)
            rows.append(MemberRow(member=m, editable=editable, error=errors.get(m.direct.pk, "")))
    grantable = [r for r in Role if permissions.can_grant_role(user, project, r)]
    context = {
        "project": project,
        "rows": rows,
        "can_manage": permissions.can_manage_members(user, project),
        "grantable": grantable,
        "form": form or MemberAddForm(),
        "invite_form": invite_form or MemberInviteForm(),
    }
    return render(request, "projects/members.html", context, status=status)


@anonymous_404_to_login
@require_http_methods(["GET", "POST"])
def project_members(request: HttpRequest, full_path: str) -> HttpResponse:
    """The members list (read-only below Maintainer); POST adds a member."""
    project = _project_members_for(request, full_path, manage=request.method == "POST")
    if request.method == "GET":
        return _render_members(request, project)
    form = MemberAddForm(request.POST)
    if form.is_valid():
        try:
            membership = project_member_add(
                actor=request.user, project=project, **form.cleaned_data
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            role = Role(membership.role).label
            messages.success(
                request,
                _("%(display_name)s added as %(role)s.")
                % {"display_name": membership.user.display_name, "role": role},
            )
            return redirect("project_members", full_path=project.full_path)
    return _render_members(request, project, form=form, status=400)


def _membership_for(request: HttpRequest, full_path: str, membership_id: int) -> Membership:
    project = _project_members_for(request, full_path, manage=True)
    membership = project_membership_get(project=project, membership_id=membership_id)
    membership.project = project
    return membership


@anonymous_404_to_login
@require_POST
def project_member_update(request: HttpRequest, full_path: str, membership_id: int) -> HttpResponse:
    membership = _membership_for(request, full_path, membership_id)
    project = membership.project
    assert project is not None
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        errors = {membership.pk: _("Choose a role.")}
        return _render_members(request, project, errors=errors, status=400)
    try:
        project_member_role_change(actor=request.user, membership=membership, **form.cleaned_data)
    except ValidationError as error:
        errors = {membership.pk: " ".join(error.messages)}
        return _render_members(request, project, errors=errors, status=400)
    role = Role(membership.role).label
    messages.success(
        request,
        _("%(display_name)s is now %(role)s.")
        % {"display_name": membership.user.display_name, "role": role},
    )
    return _after_member_change(request, project)


@anonymous_404_to_login
@require_POST
def project_member_delete(request: HttpRequest, full_path: str, membership_id: int) -> HttpResponse:
    membership = _membership_for(request, full_path, membership_id)
    project = membership.project
    assert project is not None
    try:
        project_member_remove(actor=request.user, membership=membership)
    except ValidationError as error:
        errors = {membership.pk: " ".join(error.messages)}
        return _render_members(request, project, errors=errors, status=400)
    messages.success(
        request,
        _("%(display_name)s removed from %(full_path)s.")
        % {"display_name": membership.user.display_name, "full_path": project.full_path},
    )
    return _after_member_change(request, project)


def _after_member_change(request: HttpRequest, project: Project) -> HttpResponse:
    """Back to the list — unless the user just removed their own access to it."""
    if permissions.can_see_members(request.user, project):
        return redirect("project_members", full_path=project.full_path)
    return redirect("home")


@anonymous_404_to_login
@require_POST
def project_member_invite_view(request: HttpRequest, full_path: str) -> HttpResponse:
    """Add a member by email address: an account that has it, or a new one invited by email
    to choose a password."""
    project = _project_members_for(request, full_path, manage=True)
    form = MemberInviteForm(request.POST)
    if form.is_valid():
        try:
            membership, invited = project_member_invite(
                actor=request.user, project=project, **form.cleaned_data
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            role = Role(membership.role).label
            who = membership.user
            if invited:
                done = _("Invitation sent to %(email)s; %(username)s is %(role)s.") % {
                    "email": who.email, "username": who.username, "role": role}  # fmt: skip
            else:
                done = _("%(name)s added as %(role)s.") % {"name": who.display_name, "role": role}
            messages.success(request, done)
            return redirect("project_members", full_path=project.full_path)
    return _render_members(request, project, invite_form=form, status=400)


# --- New groups and projects --------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def group_new(request: HttpRequest) -> HttpResponse:
    """A subgroup of a group where one is Maintainer+, or a top-level group when allowed
    (SERVICEDESK_TOP_LEVEL_GROUPS); the creator becomes its Owner."""
    top_level = permissions.can_create_top_level_group(request.user)
    parents = groups_to_create_in(user=request.user)
    form = GroupForm(request.POST or None, parents=parents, top_level=top_level)
    if request.method == "POST":
        parent_id = request.POST.get("parent", "")
        if parent_id:
            parent = Group.objects.filter(pk=parent_id if parent_id.isdigit() else 0).first()
            if parent is None or permissions.group_role(request.user, parent) is None:
                raise Http404("No such group")
            if not permissions.can_create_in_group(request.user, parent):
                raise PermissionDenied
        elif not top_level:
            raise PermissionDenied
        if form.is_valid():
            try:
                group = group_create(creator=request.user, **form.cleaned_data)
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(
                    request, _("Group %(full_path)s created.") % {"full_path": group.full_path}
                )
                return redirect(f"{reverse('project_new')}?group={group.pk}")
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "can_create": top_level or parents.exists()}
    return render(request, "projects/group_new.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def project_new(request: HttpRequest) -> HttpResponse:
    """A project in a group where one is Maintainer+; the creator becomes its Owner."""
    groups = groups_to_create_in(user=request.user)
    initial = {"group": request.GET.get("group")} if request.GET.get("group", "").isdigit() else {}
    form = ProjectCreateForm(request.POST or None, groups=groups, initial=initial)
    if request.method == "POST":
        group_id = request.POST.get("group", "")
        group = Group.objects.filter(pk=group_id if group_id.isdigit() else 0).first()
        if group is None or permissions.group_role(request.user, group) is None:
            raise Http404("No such group")
        if not permissions.can_create_in_group(request.user, group):
            raise PermissionDenied
        if form.is_valid():
            try:
                project = project_create(creator=request.user, **form.cleaned_data)
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(
                    request, _("Project %(full_path)s created.") % {"full_path": project.full_path}
                )
                return redirect("service_desk_settings", full_path=project.full_path)
    status = 400 if request.method == "POST" else 200
    context = {
        "form": form,
        "can_create": groups.exists(),
        "can_create_group": permissions.can_create_top_level_group(request.user),
    }
    return render(request, "projects/project_new.html", context, status=status)
