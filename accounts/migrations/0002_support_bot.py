"""Create the Support Bot: the author of every issue and note that came by email (SPEC §1)."""

from django.contrib.auth.hashers import make_password
from django.db import migrations

USERNAME = "support-bot"


def create_support_bot(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    User.objects.update_or_create(
        username=USERNAME,
        defaults={
            "name": "Support Bot",
            "email": "",
            "is_bot": True,
            "is_active": True,
            "is_staff": False,
            "is_superuser": False,
            # An unusable password: no password can ever match it.
            "password": make_password(None),
        },
    )


def remove_support_bot(apps, schema_editor):
    apps.get_model("accounts", "User").objects.filter(username=USERNAME, is_bot=True).delete()


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunPython(create_support_bot, remove_support_bot)]
