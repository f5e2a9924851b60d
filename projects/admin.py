from django import forms
from django.contrib import admin

from .models import DescriptionTemplate, Group, Membership, Project, ServiceDeskSetting
from .placeholders import validate_email_template
from .services import EMAIL_TEMPLATE_KINDS


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)
    fields = ("user", "role")


@admin.register(Group)
class GroupAdmin(admin.ModelAdmin):
    list_display = ("full_path", "name", "parent", "created_at")
    search_fields = ("full_path", "name")
    readonly_fields = ("full_path",)
    inlines = [MembershipInline]


class ServiceDeskSettingForm(forms.ModelForm):  # type: ignore[type-arg]
    """The email templates are checked here as on the settings page: no unknown placeholder.
    (No Meta: the admin builds the form's fields on this base.)"""

    def clean(self):  # type: ignore[no-untyped-def]
        cleaned = super().clean()
        for kind in EMAIL_TEMPLATE_KINDS:
            field = f"{kind}_template"
            try:
                validate_email_template(cleaned.get(field) or "")
            except forms.ValidationError as error:
                self.add_error(field, error)
        return cleaned


class ServiceDeskSettingInline(admin.StackedInline):
    model = ServiceDeskSetting
    form = ServiceDeskSettingForm
    can_delete = False


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("full_path", "name", "visibility", "created_at")
    list_filter = ("visibility",)
    search_fields = ("full_path", "name")
    readonly_fields = ("full_path",)
    inlines = [ServiceDeskSettingInline, MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "project", "group", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__username", "project__full_path", "group__full_path")
    autocomplete_fields = ("user", "project", "group")


@admin.register(ServiceDeskSetting)
class ServiceDeskSettingAdmin(admin.ModelAdmin):
    form = ServiceDeskSettingForm
    list_display = ("project", "service_desk_enabled", "project_key", "outgoing_name")
    list_filter = ("service_desk_enabled",)
    search_fields = ("project__full_path",)


@admin.register(DescriptionTemplate)
class DescriptionTemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "group")
    search_fields = ("name",)
