from django.contrib import admin

from .models import (
    EmailParticipant,
    Issue,
    IssueCounter,
    IssueEmail,
    Label,
    Note,
    SentNotification,
    Upload,
)


class NoteInline(admin.TabularInline):
    model = Note
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
    exclude = ("reply_key",)
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
