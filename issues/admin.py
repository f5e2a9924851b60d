from django.contrib import admin
from django.utils.html import format_html_join

from servicedesk.retention import retention_removed

from .models import (
    EmailParticipant,
    Issue,
    IssueCounter,
    IssueEmail,
    Label,
    Note,
    OutboundEmail,
    SentNotification,
    Upload,
)
from .selectors import outbound_redacted


class NoteInline(admin.TabularInline):
    model = Note
    fk_name = "issue"
    extra = 0
    fields = ("author", "body", "internal", "system", "external_author", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("author",)


class ParticipantInline(admin.TabularInline):
    model = EmailParticipant
    extra = 0
    fields = ("email", "unsubscribed_at", "bouncing_at")


@admin.register(Issue)
class IssueAdmin(admin.ModelAdmin):
    list_display = ("__str__", "state", "confidential", "external_author", "created_at")
    list_filter = ("state", "confidential")
    search_fields = ("title", "project__full_path", "external_author")
    readonly_fields = ("iid", "created_at", "updated_at")
    autocomplete_fields = ("author", "assignees", "labels", "closed_by", "moved_to")
    inlines = [ParticipantInline, NoteInline]


@admin.register(Note)
class NoteAdmin(admin.ModelAdmin):
    list_display = ("id", "issue", "author", "internal", "system", "external_author", "created_at")
    list_filter = ("internal", "system")
    search_fields = ("body", "external_author")
    autocomplete_fields = ("issue", "author")


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ("title", "project", "color")
    search_fields = ("title",)


@admin.register(EmailParticipant)
class EmailParticipantAdmin(admin.ModelAdmin):
    list_display = ("email", "issue", "unsubscribed_at", "bouncing_at")
    search_fields = ("email",)
    autocomplete_fields = ("issue",)


@admin.register(SentNotification)
class SentNotificationAdmin(admin.ModelAdmin):
    # The reply key is a credential that lets anyone post to the issue: never shown.
    list_display = ("__str__", "recipient", "issue", "created_at")
    exclude = ("reply_key", "unsubscribe_token")
    search_fields = ("recipient",)
    autocomplete_fields = ("issue", "participant", "note")


@admin.register(IssueEmail)
class IssueEmailAdmin(admin.ModelAdmin):
    list_display = ("message_id", "issue", "direction", "created_at")
    search_fields = ("message_id",)
    autocomplete_fields = ("issue",)


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = ("filename", "project", "issue", "content_type", "size", "created_at")
    search_fields = ("filename",)
    autocomplete_fields = ("project", "issue", "note", "uploaded_by")


@admin.register(IssueCounter)
class IssueCounterAdmin(admin.ModelAdmin):
    list_display = ("project", "last_iid")
    readonly_fields = ("project", "last_iid")


@admin.register(OutboundEmail)
class OutboundEmailAdmin(admin.ModelAdmin):
    """The outbox, read-only. Its reply key and unsubscribe token (in ``sent_notification``,
    the headers and the bodies) are never shown: the headers and text appear redacted, the
    HTML body not at all. Retrying is on the product's Outbound mail pages."""

    list_display = ("id", "kind", "recipient", "subject", "status", "attempts", "created_at")
    list_filter = ("status", "kind")
    search_fields = ("recipient", "subject")
    list_select_related = ("project",)
    fields = (
        "kind", "project", "issue", "note", "recipient", "from_email", "subject",
        "redacted_message_id", "status", "attempts", "next_attempt_at", "last_error",
        "created_at", "sent_at", "redacted_headers", "redacted_text",
    )  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    @admin.display(description="Message-ID")
    def redacted_message_id(self, email: OutboundEmail) -> str:
        return outbound_redacted(email).message_id

    @admin.display(description="Headers")
    def redacted_headers(self, email: OutboundEmail) -> str:
        rows = outbound_redacted(email).headers
        return format_html_join("", "<div><code>{}: {}</code></div>", rows) or "—"

    @admin.display(description="Text")
    def redacted_text(self, email: OutboundEmail) -> str:
        if email.retention_days:
            return retention_removed(email.retention_days)
        return outbound_redacted(email).body_text
