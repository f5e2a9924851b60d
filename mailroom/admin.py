from django.contrib import admin

from servicedesk.retention import retention_removed

from .models import InboundMessage, MailboxState, WorkerHeartbeat


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("hostname", "seen_at", "beats")
    readonly_fields = ("hostname", "seen_at", "beats")


@admin.register(InboundMessage)
class InboundMessageAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "received_at",
        "transport",
        "status",
        "outcome",
        "from_address",
        "subject",
    )
    list_filter = ("status", "outcome", "transport")
    search_fields = ("message_id", "from_address", "subject")
    exclude = ("raw",)
    readonly_fields = [
        *(f.name for f in InboundMessage._meta.fields if f.name != "raw"),
        "raw_email",
    ]

    @admin.display(description="Raw email")
    def raw_email(self, row: InboundMessage) -> str:
        if row.retention_days:
            return retention_removed(row.retention_days)
        return f"{row.size} bytes (download it from the ledger page)"


@admin.register(MailboxState)
class MailboxStateAdmin(admin.ModelAdmin):
    list_display = ("name", "last_success_at", "consecutive_errors", "messages_fetched")
    readonly_fields = [f.name for f in MailboxState._meta.fields]
