from django import forms
from django.conf import settings
from django.contrib import admin

from .models import (
    DescriptionTemplate,
    Group,
    Membership,
    Project,
    RedirectRoute,
    ServiceDeskSetting,
)
from .placeholders import validate_email_template
from .services import EMAIL_TEMPLATE_KINDS, group_renamed, project_renamed


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

    def save_model(self, request, obj, form, change):  # type: ignore[no-untyped-def]
        """The model derives full_path; for a renamed or moved group the service makes
        everything below follow and keeps old addresses working."""
        old = Group.objects.get(pk=obj.pk).full_path if change else ""
        super().save_model(request, obj, form, change)
        group_renamed(group=obj, old_full_path=old or obj.full_path)


class _LanguageField(forms.ChoiceField):
    """Not sent (a form from before languages): unchanged, as on the settings page."""

    def has_changed(self, initial: object, data: object) -> bool:
        return bool(data) and super().has_changed(initial, data)


class ServiceDeskSettingForm(forms.ModelForm):  # type: ignore[type-arg]
    """The email templates are checked here as on the settings page: no unknown placeholder.
    (No Meta: the admin builds the form's fields on this base.)"""

    language = _LanguageField(choices=settings.LANGUAGES, required=False)

    def clean_language(self) -> str:
        return self.cleaned_data.get("language") or self.instance.language

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

    def save_model(self, request, obj, form, change):  # type: ignore[no-untyped-def]
        """As GroupAdmin.save_model; moving a project to another group is a rename too."""
        old = Project.objects.get(pk=obj.pk).full_path if change else ""
        super().save_model(request, obj, form, change)
        project_renamed(project=obj, old_full_path=old or obj.full_path)

    def save_related(self, request, form, formsets, change):  # type: ignore[no-untyped-def]
        # Every project has its Service Desk settings (projects.services.project_create);
        # the inline saves them only when someone changed a field in it.
        super().save_related(request, form, formsets, change)
        ServiceDeskSetting.objects.get_or_create(project=form.instance)


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


@admin.register(RedirectRoute)
class RedirectRouteAdmin(admin.ModelAdmin):
    list_display = ("path", "group", "project", "created_at")
    search_fields = ("path",)
    autocomplete_fields = ("group", "project")
