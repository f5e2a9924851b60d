"""The REST API, /api/v4, shaped like GitLab's v4 (field names, filters, pagination headers).

Every endpoint asks ``projects.permissions`` exactly as the browser's views do, and writes only
through the services the browser's views call. What a caller may not read is a 404 (a private
project, a confidential issue below Reporter: its existence is not told); what they may read
but not do is a 403; a request that needs a sign-in and has none is a 401.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any, NoReturn

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from accounts.models import User
from issues.filters import NO_ASSIGNEE, NO_LABEL, IssueFilters
from issues.models import EmailParticipant, Issue, Label
from issues.selectors import (
    issue_get_for_user,
    issue_list_for_user,
    label_list_for_project,
    move_notes_for_user,
    note_list_for_issue,
)
from issues.services import (
    issue_create,
    issue_move,
    issue_participant_add,
    issue_participant_remove,
    note_post,
    service_desk_ticket_create,
)
from mailroom.models import InboundMessage
from mailroom.selectors import LedgerFilters, inbound_get, inbound_list
from projects import permissions
from projects.models import Project
from projects.selectors import (
    description_templates_for_project,
    service_desk_addresses,
    service_desk_previous_address,
)
from projects.services import service_desk_settings_update

from . import serializers as s
from .pagination import GitLabPagination
from .selectors import project_list_visible
from .services import IssueChanges, issue_update

# --- Errors, GitLab's way: {"message": ...} -------------------------------------------------------


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with the services' Django ValidationError as a 400, and every error body
    as GitLab writes it: ``{"message": "404 Not found"}``, ``{"message": {"field": [...]}}``."""
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.NotFound):
        response.data = {"message": "404 Not found"}
    elif isinstance(exc, exceptions.ValidationError):
        response.data = {"message": response.data}
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"message": f"{response.status_code} {response.data['detail']}"}
    return response


def _deny(request: Request, *, visible: bool) -> NoReturn:
    """Refuse: 401 to an anonymous caller (signing in may help), 403 to one who knows the
    thing exists (``visible``), 404 to anyone else."""
    if not request.user.is_authenticated:
        raise exceptions.NotAuthenticated()
    if visible:
        raise exceptions.PermissionDenied()
    raise exceptions.NotFound()


def _project(request: Request, project_id: str) -> Project:
    """The project by id or full path (URL-encoded: ``acme%2Fgame``), if the caller may read
    it; 404 otherwise, whether it exists or not."""
    projects = Project.objects.select_related("group", "service_desk")
    if project_id.isdigit():
        project = projects.filter(pk=int(project_id)).first()
    else:
        project = projects.filter(full_path=project_id).first()
    if project is None or not permissions.can_read_project(request.user, project):
        raise exceptions.NotFound()
    return project


def _issue(request: Request, project_id: str, iid: int) -> Issue:
    project = _project(request, project_id)
    return issue_get_for_user(user=request.user, project=project, iid=iid)


def _context(request: Request, project: Project, **extra: Any) -> dict[str, Any]:
    return {
        "request": request,
        "can_see_emails": permissions.can_see_customer_emails(request.user, project),
        **extra,
    }


def _valid(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _with_links(issues: QuerySet[Issue]) -> QuerySet[Issue]:
    """Labels and assignees in two queries for the whole page."""
    return issues.select_related("closed_by", "moved_to__project").prefetch_related(
        Prefetch("labels", queryset=Label.objects.order_by("title")), "assignees"
    )


def _issue_fresh(request: Request, issue: Issue) -> Issue:
    """The issue as the caller now sees it, with its comment count (the list's rule)."""
    project = issue.project
    fresh = issue_get_for_user(user=request.user, project=project, iid=issue.iid)
    notes = note_list_for_issue(user=request.user, issue=fresh).filter(system=False)
    fresh.note_count = notes.count()  # type: ignore[attr-defined]
    return fresh


def _labels_named(project: Project, text: str | None, field: str) -> list[Label] | None:
    """Comma-separated titles → the project's labels; an unknown title is a 400."""
    if text is None:
        return None
    titles = [title.strip() for title in text.split(",") if title.strip()]
    labels = {label.title: label for label in label_list_for_project(project=project)}
    unknown = [title for title in titles if title not in labels]
    if unknown:
        raise exceptions.ValidationError({field: [f"No such label: {', '.join(unknown)}."]})
    return [labels[title] for title in dict.fromkeys(titles)]


def _people(ids: list[int] | None) -> list[User] | None:
    """The users by id; whether each may be assigned is the service's check (a 400)."""
    if ids is None:
        return None
    people = list(User.objects.filter(pk__in=set(ids)))
    if len(people) != len(set(ids)):
        raise exceptions.ValidationError({"assignee_ids": ["No such user."]})
    return people


# --- The caller ---------------------------------------------------------------------------------


class CurrentUserView(GenericAPIView):
    @extend_schema(responses=s.CurrentUserSerializer, summary="The signed-in user")
    def get(self, request: Request) -> Response:
        if not request.user.is_authenticated:
            raise exceptions.NotAuthenticated()
        return Response(s.CurrentUserSerializer(request.user).data)


# --- Projects -----------------------------------------------------------------------------------


class ProjectListView(GenericAPIView):
    pagination_class = GitLabPagination

    @extend_schema(
        responses=s.ProjectSerializer(many=True),
        summary="Projects the caller can read",
        parameters=[
            OpenApiParameter(
                "membership", bool, description="Only projects the caller is a member of."
            ),
            OpenApiParameter("search", str, description="Part of the name or path."),
        ],
    )
    def get(self, request: Request) -> Response:
        membership = request.query_params.get("membership", "").lower() in ("1", "true")
        projects = project_list_visible(user=request.user, membership=membership)
        search = request.query_params.get("search", "").strip()
        if search:
            projects = projects.filter(Q(name__icontains=search) | Q(full_path__icontains=search))
        page = self.paginate_queryset(projects)
        return self.get_paginated_response(s.ProjectSerializer(page, many=True).data)


class ProjectDetailView(GenericAPIView):
    @extend_schema(responses=s.ProjectSerializer, summary="A project, by id or URL-encoded path")
    def get(self, request: Request, project_id: str) -> Response:
        return Response(s.ProjectSerializer(_project(request, project_id)).data)


# --- Issues -------------------------------------------------------------------------------------

_SORTS = {
    ("created_at", "desc"): "created_desc",
    ("created_at", "asc"): "created_asc",
    ("updated_at", "desc"): "updated_desc",
    ("updated_at", "asc"): "updated_asc",
}
_MAX_LABELS = 10


def _choice(params: Any, name: str, choices: tuple[str, ...], default: str) -> str:
    value = params.get(name, "") or default
    if value not in choices:
        raise exceptions.ValidationError({name: [f"Must be one of: {', '.join(choices)}."]})
    return str(value)


def _moment(params: Any, name: str) -> datetime | None:
    """An ISO 8601 time (or a date: its start, in the server's time zone)."""
    value = params.get(name, "")
    if not value:
        return None
    moment = parse_datetime(value)
    if moment is None and (day := parse_date(value)) is not None:
        moment = datetime.combine(day, time.min)
    if moment is None:
        raise exceptions.ValidationError({name: ["Must be an ISO 8601 date or time."]})
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _integer(params: Any, name: str) -> int | None:
    value = params.get(name, "")
    if value == "":
        return None
    if not value.isdigit():
        raise exceptions.ValidationError({name: ["Must be an integer."]})
    return int(value)


def _issue_filters(params: Any, user: Any) -> tuple[IssueFilters, Q]:
    """GitLab's list parameters → the tracker's filters (the same selector as the browser),
    and what the tracker does not have, as a condition on the issues."""
    extra = Q()
    scope = _choice(params, "scope", ("all", "created_by_me", "assigned_to_me"), "all")
    if scope == "created_by_me":
        extra &= Q(author_id=user.pk)  # an anonymous caller's pk is None: nothing
    state = _choice(params, "state", ("opened", "closed", "all"), "all")
    order_by = _choice(params, "order_by", ("created_at", "updated_at"), "created_at")
    sort = _choice(params, "sort", ("asc", "desc"), "desc")
    labels = [title.strip() for title in params.get("labels", "").split(",") if title.strip()]
    if len(labels) > _MAX_LABELS:
        raise exceptions.ValidationError({"labels": [f"At most {_MAX_LABELS} labels."]})
    label_links = Issue.labels.through.objects.filter(issue=OuterRef("pk"))
    if labels == ["Any"]:
        extra &= Q(Exists(label_links))
        labels = []
    labels = [NO_LABEL if title == "None" else title for title in labels]
    assignee = params.get("assignee_username", "")
    assignee_id = params.get("assignee_id", "")
    assignee_links = Issue.assignees.through.objects.filter(issue=OuterRef("pk"))
    if assignee_id == "None":
        assignee = NO_ASSIGNEE
    elif assignee_id == "Any":
        extra &= Q(Exists(assignee_links))
    elif assignee_id:
        extra &= Q(Exists(assignee_links.filter(user_id=_integer(params, "assignee_id"))))
    author_id = _integer(params, "author_id")
    if author_id is not None:
        extra &= Q(author_id=author_id)
    confidential = params.get("confidential", "")
    if confidential not in ("", "true", "false"):
        raise exceptions.ValidationError({"confidential": ["Must be true or false."]})
    for name, lookup in (
        ("created_after", "created_at__gte"),
        ("created_before", "created_at__lte"),
        ("updated_after", "updated_at__gte"),
        ("updated_before", "updated_at__lte"),
    ):
        moment = _moment(params, name)
        if moment is not None:
            extra &= Q(**{lookup: moment})
    iids = params.getlist("iids[]") or params.getlist("iids")
    if iids:
        if not all(iid.isdigit() for iid in iids):
            raise exceptions.ValidationError({"iids[]": ["Must be integers."]})
        extra &= Q(iid__in=[int(iid) for iid in iids])
    filters = IssueFilters(
        state=state,
        view="mine" if scope == "assigned_to_me" else "",
        search=params.get("search", "")[:200],
        labels=tuple(labels),
        author=params.get("author_username", ""),
        assignee=assignee,
        confidential={"true": True, "false": False}.get(confidential),
        sort=_SORTS[order_by, sort],
    )
    return filters, extra


_ISSUE_LIST_PARAMETERS = [
    OpenApiParameter("scope", str, enum=["all", "created_by_me", "assigned_to_me"]),
    OpenApiParameter("state", str, enum=["opened", "closed", "all"]),
    OpenApiParameter("labels", str, description="Comma-separated titles (all of them); None, Any."),
    OpenApiParameter("assignee_username", str),
    OpenApiParameter("assignee_id", str, description="A user id, None or Any."),
    OpenApiParameter("author_username", str),
    OpenApiParameter("author_id", int),
    OpenApiParameter("confidential", bool),
    OpenApiParameter("search", str, description="Words in the title, description or comments."),
    OpenApiParameter("order_by", str, enum=["created_at", "updated_at"]),
    OpenApiParameter("sort", str, enum=["asc", "desc"]),
    OpenApiParameter("created_after", OpenApiTypes.DATETIME),
    OpenApiParameter("created_before", OpenApiTypes.DATETIME),
    OpenApiParameter("updated_after", OpenApiTypes.DATETIME),
    OpenApiParameter("updated_before", OpenApiTypes.DATETIME),
    OpenApiParameter("iids[]", int, many=True),
]


class IssueListView(GenericAPIView):
    pagination_class = GitLabPagination

    @extend_schema(
        responses=s.IssueSerializer(many=True),
        parameters=_ISSUE_LIST_PARAMETERS,
        summary="A project's issues (confidential ones for Reporter+ only)",
    )
    def get(self, request: Request, project_id: str) -> Response:
        project = _project(request, project_id)
        filters, extra = _issue_filters(request.query_params, request.user)
        issues = issue_list_for_user(user=request.user, project=project, filters=filters)
        page = self.paginate_queryset(_with_links(issues.filter(extra)))
        for issue in page:
            issue.project = project
        data = s.IssueSerializer(page, many=True, context=_context(request, project)).data
        return self.get_paginated_response(data)

    @extend_schema(
        request=s.IssueCreateSerializer,
        responses={201: s.IssueSerializer},
        summary="Create an issue, or a Service Desk ticket on behalf of a customer",
    )
    def post(self, request: Request, project_id: str) -> Response:
        project = _project(request, project_id)
        user = request.user
        if not permissions.can_create_issue(user, project):
            _deny(request, visible=True)
        data = _valid(s.IssueCreateSerializer, request)
        # What only Reporter+ may choose: a confidential issue (below Reporter its author could
        # not read it), labels, assignees, a customer as requester.
        triage = (
            data["confidential"]
            or data["labels"]
            or data["assignee_ids"]
            or data["service_desk_email"]
        )
        if triage and not permissions.can_set_issue_metadata(user, project):
            _deny(request, visible=True)
        labels = _labels_named(project, data["labels"], "labels") or []
        assignees = _people(data["assignee_ids"]) or []
        if assignees:
            _check_assignable(project, assignees)
        if data["service_desk_email"]:
            issue = service_desk_ticket_create(
                project=project,
                user=user,  # type: ignore[arg-type]
                email=data["service_desk_email"],
                title=data["title"],
                description=data["description"],
                labels=labels,
                assignees=assignees,
                thank_you=data["send_thank_you"],
            )
        else:
            issue = issue_create(
                project=project,
                author=user,  # type: ignore[arg-type]
                title=data["title"],
                description=data["description"],
                confidential=data["confidential"],
                labels=labels,
                assignees=assignees,
            )
        issue.project = project
        fresh = _issue_fresh(request, issue)
        data = s.IssueSerializer(fresh, context=_context(request, project)).data
        return Response(data, status=status.HTTP_201_CREATED)


def _check_assignable(project: Project, people: list[User]) -> None:
    refused = [p.username for p in people if not permissions.can_be_assigned(p, project)]
    if refused:
        raise exceptions.ValidationError(
            {"assignee_ids": ["Only members with the Reporter role or higher can be assigned."]}
        )


class IssueDetailView(GenericAPIView):
    @extend_schema(responses=s.IssueSerializer, summary="An issue, by its number (iid)")
    def get(self, request: Request, project_id: str, iid: int) -> Response:
        issue = _issue_fresh(request, _issue(request, project_id, iid))
        return Response(s.IssueSerializer(issue, context=_context(request, issue.project)).data)

    @extend_schema(
        request=s.IssueUpdateSerializer,
        responses=s.IssueSerializer,
        summary="Close or reopen; labels, assignees, confidentiality",
    )
    def put(self, request: Request, project_id: str, iid: int) -> Response:
        issue = _issue(request, project_id, iid)
        user = request.user
        data = _valid(s.IssueUpdateSerializer, request)
        if not data:
            raise exceptions.ValidationError(["Give at least one of the parameters."])
        if "state_event" in data and not permissions.can_update_issue(user, issue):
            _deny(request, visible=True)
        if set(data) - {"state_event"} and not permissions.can_triage_issue(user, issue):
            _deny(request, visible=True)
        project = issue.project
        changes = IssueChanges(
            state_event=data.get("state_event"),
            labels=_labels_named(project, data.get("labels"), "labels"),
            add_labels=_labels_named(project, data.get("add_labels"), "add_labels"),
            remove_labels=_labels_named(project, data.get("remove_labels"), "remove_labels"),
            assignees=_people(data.get("assignee_ids")),
            confidential=data.get("confidential"),
        )
        issue_update(issue=issue, user=user, changes=changes)  # type: ignore[arg-type]
        fresh = _issue_fresh(request, issue)
        return Response(s.IssueSerializer(fresh, context=_context(request, project)).data)


class IssueMoveView(GenericAPIView):
    @extend_schema(
        request=s.IssueMoveSerializer,
        responses={201: s.IssueSerializer},
        summary="Move to another project (Reporter+ in both): the copy",
    )
    def post(self, request: Request, project_id: str, iid: int) -> Response:
        issue = _issue(request, project_id, iid)
        user = request.user
        if not permissions.can_move_issue(user, issue):
            _deny(request, visible=True)
        data = _valid(s.IssueMoveSerializer, request)
        target = _project(request, str(data["to_project_id"]))
        if not permissions.can_move_issue(user, issue, target):
            _deny(request, visible=True)
        copy = issue_move(issue=issue, user=user, target=target)  # type: ignore[arg-type]
        fresh = _issue_fresh(request, copy)
        data = s.IssueSerializer(fresh, context=_context(request, target)).data
        return Response(data, status=status.HTTP_201_CREATED)


# --- Notes --------------------------------------------------------------------------------------


class NoteListView(GenericAPIView):
    pagination_class = GitLabPagination

    @extend_schema(
        responses=s.NoteSerializer(many=True),
        summary="The issue's notes, oldest first (internal ones for Reporter+)",
    )
    def get(self, request: Request, project_id: str, iid: int) -> Response:
        issue = _issue(request, project_id, iid)
        page = self.paginate_queryset(note_list_for_issue(user=request.user, issue=issue))
        moves = move_notes_for_user(user=request.user, notes=page)
        context = _context(request, issue.project, issue=issue, move_notes=moves)
        return self.get_paginated_response(s.NoteSerializer(page, many=True, context=context).data)

    @extend_schema(
        request=s.NoteCreateSerializer,
        responses={201: s.NoteSerializer, 202: OpenApiTypes.OBJECT},
        summary="Comment: public comments on Service Desk issues are emailed to the "
        "participants; quick actions run for those who may update the issue",
    )
    def post(self, request: Request, project_id: str, iid: int) -> Response:
        issue = _issue(request, project_id, iid)
        user = request.user
        if not permissions.can_comment_on_issue(user, issue):
            _deny(request, visible=True)
        data = _valid(s.NoteCreateSerializer, request)
        internal = data["internal"] or data["confidential"]
        if internal and not permissions.can_add_internal_note(user, issue):
            _deny(request, visible=True)
        posted = note_post(
            issue=issue,
            author=user,  # type: ignore[arg-type]
            body=data["body"],
            internal=internal,
            quick_actions=permissions.can_update_issue(user, issue),
        )
        if posted.note is None:
            summary = posted.actions.summary() if posted.actions else ""
            refused = posted.actions.refused if posted.actions else []
            return Response(
                {"commands_changes": {"summary": summary, "refused": refused}},
                status=status.HTTP_202_ACCEPTED,
            )
        context = _context(request, issue.project, issue=issue)
        return Response(s.NoteSerializer(posted.note, context=context).data, status=201)


# --- Email participants (Reporter+) -------------------------------------------------------------


def _triaged(request: Request, project_id: str, iid: int) -> Issue:
    issue = _issue(request, project_id, iid)
    if not permissions.can_triage_issue(request.user, issue):
        _deny(request, visible=True)
    return issue


class ParticipantListView(GenericAPIView):
    pagination_class = GitLabPagination

    @extend_schema(
        responses=s.ParticipantSerializer(many=True),
        summary="The issue's email participants (Reporter+)",
    )
    def get(self, request: Request, project_id: str, iid: int) -> Response:
        issue = _triaged(request, project_id, iid)
        participants = EmailParticipant.objects.filter(issue=issue).order_by("created_at", "id")
        page = self.paginate_queryset(participants)
        return self.get_paginated_response(s.ParticipantSerializer(page, many=True).data)

    @extend_schema(
        request=s.ParticipantCreateSerializer,
        responses={201: s.ParticipantSerializer},
        summary="Add an email participant (GitLab's /add_email): they get the public "
        "comments from now on",
    )
    def post(self, request: Request, project_id: str, iid: int) -> Response:
        issue = _triaged(request, project_id, iid)
        data = _valid(s.ParticipantCreateSerializer, request)
        participant = issue_participant_add(
            issue=issue,
            user=request.user,  # type: ignore[arg-type]
            email=data["email"],
        )
        return Response(s.ParticipantSerializer(participant).data, status=201)


class ParticipantDetailView(GenericAPIView):
    @extend_schema(responses={204: None}, summary="Remove an email participant")
    def delete(self, request: Request, project_id: str, iid: int, participant_id: int) -> Response:
        issue = _triaged(request, project_id, iid)
        participant = EmailParticipant.objects.filter(issue=issue, pk=participant_id).first()
        if participant is None:
            raise exceptions.NotFound()
        participant.issue = issue
        issue_participant_remove(participant=participant, user=request.user)  # type: ignore[arg-type]
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Service Desk settings ----------------------------------------------------------------------


def _service_desk(project: Project) -> dict[str, Any]:
    setting = project.service_desk
    addresses = service_desk_addresses(project=project)
    return {
        "service_desk_enabled": setting.service_desk_enabled,
        "service_desk_address": addresses[0] if addresses else None,
        "addresses": addresses,
        "previous_address": service_desk_previous_address(project=project),
        "previous_address_expires_at": setting.previous_address_expires_at,
        "project_key": setting.project_key,
        "outgoing_name": setting.outgoing_name,
        "description_template_id": setting.description_template_id,
        "reopen_issue_on_external_participant_note": (
            setting.reopen_issue_on_external_participant_note
        ),
        "add_external_participants_from_cc": setting.add_external_participants_from_cc,
        "tickets_confidential_by_default": setting.tickets_confidential_by_default,
        "send_issue_closed_email": setting.send_issue_closed_email,
        "send_merged_email": setting.send_merged_email,
        "satisfaction_survey": setting.satisfaction_survey,
        "sign_replies_with_agent_name": setting.sign_replies_with_agent_name,
    }


_SETTING_FIELDS = (
    "service_desk_enabled",
    "project_key",
    "outgoing_name",
    "reopen_issue_on_external_participant_note",
    "add_external_participants_from_cc",
    "tickets_confidential_by_default",
    "send_issue_closed_email",
    "send_merged_email",
    "satisfaction_survey",
    "sign_replies_with_agent_name",
)


class ServiceDeskView(GenericAPIView):
    @extend_schema(
        responses=s.ServiceDeskSerializer,
        summary="Service Desk settings and address (Reporter+)",
    )
    def get(self, request: Request, project_id: str) -> Response:
        project = _project(request, project_id)
        if not permissions.can_see_customer_emails(request.user, project):
            _deny(request, visible=permissions.admin_denial_is_visible(request.user, project))
        return Response(s.ServiceDeskSerializer(_service_desk(project)).data)

    @extend_schema(
        request=s.ServiceDeskUpdateSerializer,
        responses=s.ServiceDeskSerializer,
        summary="Change Service Desk settings (Maintainer+); fields left out stay as they are",
    )
    def put(self, request: Request, project_id: str) -> Response:
        project = _project(request, project_id)
        if not permissions.can_administer_project(request.user, project):
            _deny(request, visible=permissions.admin_denial_is_visible(request.user, project))
        data = _valid(s.ServiceDeskUpdateSerializer, request)
        setting = project.service_desk
        values = {name: data.get(name, getattr(setting, name)) for name in _SETTING_FIELDS}
        template = setting.description_template
        if "description_template_id" in data:
            template = None
            if data["description_template_id"] is not None:
                available = description_templates_for_project(project=project)
                template = available.filter(pk=data["description_template_id"]).first()
                if template is None:
                    raise exceptions.ValidationError(
                        {"description_template_id": ["No such template for this project."]}
                    )
        service_desk_settings_update(project=project, description_template=template, **values)
        return Response(s.ServiceDeskSerializer(_service_desk(project)).data)


# --- The inbound ledger (Maintainer+) -----------------------------------------------------------


def _ledger(request: Request, project_id: str) -> Project:
    project = _project(request, project_id)
    if not permissions.can_view_inbound_ledger(request.user, project):
        _deny(request, visible=permissions.admin_denial_is_visible(request.user, project))
    return project


class InboundEmailListView(GenericAPIView):
    pagination_class = GitLabPagination

    @extend_schema(
        responses=s.InboundEmailSerializer(many=True),
        parameters=[
            OpenApiParameter("outcome", str, enum=list(InboundMessage.Outcome.values)),
            OpenApiParameter("status", str, enum=list(InboundMessage.Status.values)),
            OpenApiParameter("search", str, description="Part of the subject or sender."),
        ],
        summary="Every email received for the project, newest first (Maintainer+)",
    )
    def get(self, request: Request, project_id: str) -> Response:
        project = _ledger(request, project_id)
        params = request.query_params
        filters = LedgerFilters.from_query(
            {
                "outcome": params.get("outcome", ""),
                "status": params.get("status", ""),
                "q": params.get("search", ""),
            }
        )
        page = self.paginate_queryset(inbound_list(project=project, filters=filters))
        context = {"project": project}
        data = s.InboundEmailSerializer(page, many=True, context=context).data
        return self.get_paginated_response(data)


class InboundEmailDetailView(GenericAPIView):
    @extend_schema(
        responses=s.InboundEmailDetailSerializer,
        summary="One received email and how it was handled, without its raw bytes",
    )
    def get(self, request: Request, project_id: str, message_id: int) -> Response:
        project = _ledger(request, project_id)
        message = inbound_get(message_id=message_id, project=project)
        context = {"project": project}
        return Response(s.InboundEmailDetailSerializer(message, context=context).data)
