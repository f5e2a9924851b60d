"""The API's JSON, in GitLab v4's field names. Customer addresses (``external_author``,
``service_desk_reply_to``, participants, the Service Desk address) are filled only when the
view says the caller may see them (``can_see_emails`` in the context): null otherwise, never
left out, so a client's parsing does not depend on the caller's role."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from issues.models import EmailParticipant, Issue, Note
from mailroom.models import InboundMessage
from projects.models import Project
from projects.permissions import can_read_issue


def _url(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    name = serializers.CharField(source="display_name")
    state = serializers.SerializerMethodField()
    bot = serializers.BooleanField(source="is_bot")

    def get_state(self, user: Any) -> str:
        return "active" if user.is_active else "blocked"


class CurrentUserSerializer(UserSerializer):
    email = serializers.EmailField()
    is_admin = serializers.BooleanField(source="is_superuser")


class NamespaceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    path = serializers.CharField()
    full_path = serializers.CharField()
    kind = serializers.SerializerMethodField()

    def get_kind(self, group: Any) -> str:
        return "group"


class ProjectSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    path = serializers.CharField()
    path_with_namespace = serializers.CharField(source="full_path")
    name_with_namespace = serializers.SerializerMethodField()
    description = serializers.CharField()
    visibility = serializers.CharField()
    web_url = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    namespace = NamespaceSerializer(source="group")
    service_desk_enabled = serializers.SerializerMethodField()

    def get_name_with_namespace(self, project: Project) -> str:
        return f"{project.group.name or project.group.path} / {project.name or project.path}"

    def get_web_url(self, project: Project) -> str:
        return _url(f"/{project.full_path}")

    def get_service_desk_enabled(self, project: Project) -> bool:
        setting = getattr(project, "service_desk", None)
        return bool(setting and setting.service_desk_enabled)


class ReferencesSerializer(serializers.Serializer):
    short = serializers.CharField()
    relative = serializers.CharField()
    full = serializers.CharField()


class IssueSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    iid = serializers.IntegerField()
    project_id = serializers.IntegerField()
    title = serializers.CharField()
    description = serializers.CharField()
    state = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)
    closed_by = UserSerializer(allow_null=True)
    labels = serializers.SerializerMethodField()
    author = UserSerializer()
    assignees = serializers.SerializerMethodField()
    assignee = serializers.SerializerMethodField()
    confidential = serializers.BooleanField()
    user_notes_count = serializers.SerializerMethodField()
    moved_to_id = serializers.SerializerMethodField()
    web_url = serializers.SerializerMethodField()
    references = serializers.SerializerMethodField()
    issue_type = serializers.SerializerMethodField()
    service_desk = serializers.BooleanField(source="is_service_desk")
    external_author_name = serializers.CharField()
    external_author = serializers.SerializerMethodField()
    service_desk_reply_to = serializers.SerializerMethodField()

    def _emails(self) -> bool:
        return bool(self.context.get("can_see_emails"))

    def get_labels(self, issue: Issue) -> list[str]:
        return sorted((label.title for label in issue.labels.all()), key=str.lower)

    @extend_schema_field(UserSerializer(many=True))
    def get_assignees(self, issue: Issue) -> list[dict[str, Any]]:
        people = sorted(issue.assignees.all(), key=lambda user: user.username)
        return UserSerializer(people, many=True).data  # type: ignore[return-value]

    @extend_schema_field(UserSerializer(allow_null=True))
    def get_assignee(self, issue: Issue) -> dict[str, Any] | None:
        people = sorted(issue.assignees.all(), key=lambda user: user.username)
        return UserSerializer(people[0]).data if people else None

    def get_moved_to_id(self, issue: Issue) -> int | None:
        """The copy's id, for those who may read the copy (it may be in a private project)."""
        if issue.moved_to_id is None:
            return None
        readable = can_read_issue(self.context["request"].user, issue.moved_to)
        return issue.moved_to_id if readable else None

    def get_user_notes_count(self, issue: Issue) -> int:
        return int(getattr(issue, "note_count", 0))

    def get_web_url(self, issue: Issue) -> str:
        return _url(issue.get_absolute_url())

    @extend_schema_field(ReferencesSerializer)
    def get_references(self, issue: Issue) -> dict[str, str]:
        return {"short": f"#{issue.iid}", "relative": f"#{issue.iid}", "full": issue.reference}

    def get_issue_type(self, issue: Issue) -> str:
        return "issue"

    def get_external_author(self, issue: Issue) -> str | None:
        return (issue.external_author or None) if self._emails() else None

    def get_service_desk_reply_to(self, issue: Issue) -> str | None:
        if not self._emails():
            return None
        return issue.service_desk_reply_to or issue.external_author or None


@extend_schema_field(
    {
        "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
        "description": "Label titles: comma-separated, or a list (as GitLab takes them).",
    }
)
class LabelTitlesField(serializers.Field):
    """GitLab takes labels as ``"bug,billing"`` or ``["bug", "billing"]``: both become the
    comma-separated text the views read."""

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, str):
            return data
        if isinstance(data, list) and all(isinstance(title, str) for title in data):
            return ",".join(data)
        raise serializers.ValidationError("Give label titles, comma-separated or as a list.")

    def to_representation(self, value: Any) -> Any:
        return value


class IssueCreateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=255)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    confidential = serializers.BooleanField(required=False, default=False)
    labels = LabelTitlesField(required=False, default="")
    assignee_ids = serializers.ListField(
        child=serializers.IntegerField(), required=False, default=list
    )
    service_desk_email = serializers.EmailField(
        required=False,
        allow_blank=True,
        default="",
        max_length=320,
        help_text="Open a Service Desk ticket on behalf of this customer (Reporter+): the "
        "Support Bot is its author and the customer its requester, who gets the project's "
        "emails from then on.",
    )
    send_thank_you = serializers.BooleanField(
        required=False,
        default=False,
        help_text="With service_desk_email: send the customer the thank-you email now.",
    )


class IssueUpdateSerializer(serializers.Serializer):
    state_event = serializers.ChoiceField(choices=["close", "reopen"], required=False)
    labels = LabelTitlesField(required=False, help_text="Replaces all labels.")
    add_labels = LabelTitlesField(required=False)
    remove_labels = LabelTitlesField(required=False)
    assignee_ids = serializers.ListField(
        child=serializers.IntegerField(), required=False, allow_empty=True
    )
    confidential = serializers.BooleanField(required=False)


class IssueMoveSerializer(serializers.Serializer):
    to_project_id = serializers.IntegerField()


class NoteSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    body = serializers.SerializerMethodField()
    author = UserSerializer()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    system = serializers.BooleanField()
    internal = serializers.BooleanField()
    confidential = serializers.BooleanField(source="internal")
    noteable_id = serializers.IntegerField(source="issue_id")
    noteable_type = serializers.SerializerMethodField()
    noteable_iid = serializers.SerializerMethodField()
    external_name = serializers.CharField()
    external_author = serializers.SerializerMethodField()

    def get_body(self, note: Note) -> str:
        """A "moved this issue to …" note names the other project only to those who may
        read it there (``move_notes`` in the context: ``issues.selectors.move_notes_for_user``),
        as the issue page does: a private project's path is not told."""
        move = self.context.get("move_notes", {}).get(note.pk)
        if move is None:
            return note.body
        where = move.issue.reference if move.issue is not None else "another project"
        return f"moved this issue {move.direction} {where}"

    def get_noteable_type(self, note: Note) -> str:
        return "Issue"

    def get_noteable_iid(self, note: Note) -> int:
        return int(self.context["issue"].iid)

    def get_external_author(self, note: Note) -> str | None:
        return (note.external_author or None) if self.context.get("can_see_emails") else None


class NoteCreateSerializer(serializers.Serializer):
    body = serializers.CharField()
    internal = serializers.BooleanField(required=False, default=False)
    confidential = serializers.BooleanField(
        required=False, default=False, help_text="GitLab's older name for internal."
    )


class ParticipantSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    name = serializers.CharField()
    created_at = serializers.DateTimeField()
    unsubscribed_at = serializers.DateTimeField(allow_null=True)
    bouncing_at = serializers.DateTimeField(allow_null=True)
    state = serializers.SerializerMethodField()

    def get_state(self, participant: EmailParticipant) -> str:
        if participant.unsubscribed_at is not None:
            return "unsubscribed"
        return "bouncing" if participant.bouncing_at is not None else "subscribed"


class ParticipantCreateSerializer(serializers.Serializer):
    email = serializers.CharField(max_length=320)


class ServiceDeskSerializer(serializers.Serializer):
    service_desk_enabled = serializers.BooleanField()
    service_desk_address = serializers.CharField(allow_null=True)
    addresses = serializers.ListField(child=serializers.CharField())
    previous_address = serializers.CharField(allow_null=True)
    previous_address_expires_at = serializers.DateTimeField(allow_null=True)
    project_key = serializers.CharField()
    outgoing_name = serializers.CharField()
    description_template_id = serializers.IntegerField(allow_null=True)
    reopen_issue_on_external_participant_note = serializers.BooleanField()
    add_external_participants_from_cc = serializers.BooleanField()
    tickets_confidential_by_default = serializers.BooleanField()
    send_issue_closed_email = serializers.BooleanField()
    send_merged_email = serializers.BooleanField()
    satisfaction_survey = serializers.BooleanField()
    sign_replies_with_agent_name = serializers.BooleanField()


class ServiceDeskUpdateSerializer(serializers.Serializer):
    service_desk_enabled = serializers.BooleanField(required=False)
    project_key = serializers.CharField(required=False, allow_blank=True, max_length=255)
    outgoing_name = serializers.CharField(required=False, allow_blank=True, max_length=255)
    description_template_id = serializers.IntegerField(required=False, allow_null=True)
    reopen_issue_on_external_participant_note = serializers.BooleanField(required=False)
    add_external_participants_from_cc = serializers.BooleanField(required=False)
    tickets_confidential_by_default = serializers.BooleanField(required=False)
    send_issue_closed_email = serializers.BooleanField(required=False)
    send_merged_email = serializers.BooleanField(required=False)
    satisfaction_survey = serializers.BooleanField(required=False)
    sign_replies_with_agent_name = serializers.BooleanField(required=False)


class InboundEmailSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    received_at = serializers.DateTimeField()
    transport = serializers.CharField()
    mailbox = serializers.CharField()
    size = serializers.IntegerField()
    from_address = serializers.CharField()
    subject = serializers.CharField()
    status = serializers.CharField()
    outcome = serializers.CharField()
    reason = serializers.CharField()
    attempts = serializers.IntegerField()
    issue_iid = serializers.SerializerMethodField()
    note_id = serializers.IntegerField(allow_null=True)

    def get_issue_iid(self, message: InboundMessage) -> int | None:
        issue = message.issue
        if issue is None or issue.project_id != self.context["project"].pk:
            return None  # moved on to another project since: named there, not here
        return int(issue.iid)


class InboundEmailDetailSerializer(InboundEmailSerializer):
    message_id = serializers.CharField()
    processed_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField()
    decision = serializers.JSONField(help_text="How the outcome was reached (keys redacted).")
