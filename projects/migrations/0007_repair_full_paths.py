"""Groups and projects saved by the Django admin before the models derived full_path kept
full_path = '' (and the home page answered 500). Derive every full path again, parents
first (the unique full_path let only one such row of each kind exist)."""

from django.db import migrations


def repair(apps, schema_editor):  # type: ignore[no-untyped-def]
    Group = apps.get_model("projects", "Group")
    Project = apps.get_model("projects", "Project")
    groups = {g.pk: g for g in Group.objects.all()}

    def full_path(group):  # type: ignore[no-untyped-def]
        parts, seen = [], set()
        while group is not None and group.pk not in seen:
            seen.add(group.pk)
            parts.append(group.path)
            group = groups.get(group.parent_id)
        return "/".join(reversed(parts))

    wanted = {pk: full_path(g) for pk, g in groups.items()}
    for group in groups.values():
        if group.full_path != wanted[group.pk]:
            Group.objects.filter(pk=group.pk).update(full_path=wanted[group.pk])
    for project in Project.objects.all():
        path = f"{wanted[project.group_id]}/{project.path}"
        if project.full_path != path:
            Project.objects.filter(pk=project.pk).update(full_path=path)


class Migration(migrations.Migration):
    dependencies = [("projects", "0006_redirect_routes")]

    operations = [migrations.RunPython(repair, migrations.RunPython.noop)]
