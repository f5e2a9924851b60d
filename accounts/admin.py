from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from .forms import AdminSignInForm
from .models import User

# The admin's sign-in form names the sign-in limit like ours (the limit itself is the backend's).
admin.site.login_form = AdminSignInForm


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "name", "email", "is_staff", "is_superuser", "is_bot", "is_active")
    list_filter = ("is_staff", "is_superuser", "is_bot", "is_active")
    search_fields = ("username", "name", "email")
    fieldsets = (
        *BaseUserAdmin.fieldsets,
        ("Service Desk", {"fields": ("name", "is_bot")}),
    )
