from django.contrib import admin

from .models import DescriptionTemplate, Group, Membership, Project, ServiceDeskSetting


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


class ServiceDeskSettingInline(admin.StackedInline):
    model = ServiceDeskSetting
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
    list_display = ("project", "service_desk_enabled", "project_key", "outgoing_name")
    list_filter = ("service_desk_enabled",)
    search_fields = ("project__full_path",)


@admin.register(DescriptionTemplate)
class DescriptionTemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "group")
    search_fields = ("name",)
