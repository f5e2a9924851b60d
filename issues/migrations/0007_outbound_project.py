import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def project_of_each_issue_email(apps, schema_editor):
    OutboundEmail = apps.get_model("issues", "OutboundEmail")
    Issue = apps.get_model("issues", "Issue")
    OutboundEmail.objects.filter(issue__isnull=False).update(
        project_id=Subquery(Issue.objects.filter(pk=OuterRef("issue_id")).values("project_id")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("issues", "0006_unsubscribe_token_and_quoted_text"),
        ("projects", "0003_service_desk_previous_address"),
    ]

    operations = [
        migrations.AddField(
            model_name="outboundemail",
            name="project",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="projects.project",
            ),
        ),
        migrations.RunPython(project_of_each_issue_email, migrations.RunPython.noop),
    ]
