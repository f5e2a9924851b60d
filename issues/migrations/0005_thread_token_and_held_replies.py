import secrets

from django.db import migrations, models

import issues.models


def give_each_issue_a_token(apps, schema_editor):
    Issue = apps.get_model("issues", "Issue")
    batch = []
    for issue in Issue.objects.only("pk").iterator(chunk_size=2000):
        issue.thread_token = secrets.token_hex(16)
        batch.append(issue)
        if len(batch) == 2000:
            Issue.objects.bulk_update(batch, ["thread_token"])
            batch = []
    Issue.objects.bulk_update(batch, ["thread_token"])


class Migration(migrations.Migration):
    dependencies = [("issues", "0004_outbound_attachments")]

    operations = [
        # Added empty, then one random token per existing issue (a default would give them all
        # the same one), then the default for new issues.
        migrations.AddField(
            model_name="issue",
            name="thread_token",
            field=models.CharField(default="", editable=False, max_length=32),
            preserve_default=False,
        ),
        migrations.RunPython(give_each_issue_a_token, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="issue",
            name="thread_token",
            field=models.CharField(
                default=issues.models.new_thread_token, editable=False, max_length=32
            ),
        ),
        migrations.AddField(
            model_name="note",
            name="from_non_participant",
            field=models.BooleanField(default=False),
        ),
    ]
