from django.contrib import admin

from .models import PersonalAccessToken


@admin.register(PersonalAccessToken)
class PersonalAccessTokenAdmin(admin.ModelAdmin):
    """Staff can see and revoke (set "revoked at") tokens; only their owners create them, on
    their profile, where the secret is shown once. The digest is not shown."""

    list_display = ["name", "user", "scopes", "expires_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "user__username"]
    fields = ["user", "name", "scopes", "expires_at", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["user", "name", "scopes", "expires_at", "created_at", "last_used_at"]

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
