import re

from django.db import migrations, models
from django.db.models import F

import issues.models

# How the mailroom used to keep an email reply's quoted history: inside the note's text.
QUOTED = re.compile(
    r'\n*<details markdown="1">\n<summary>Quoted text</summary>\n\n(?P<quoted>.*)\n\n</details>\Z',
    re.DOTALL,
)


def keep_sent_links_working(apps, schema_editor):
    """Emails already sent carry their reply key in the unsubscribe link: it stays their token.
    Every email from now on gets a token of its own."""
    apps.get_model("issues", "SentNotification").objects.update(unsubscribe_token=F("reply_key"))


def move_quoted_history_out_of_notes(apps, schema_editor):
    Note = apps.get_model("issues", "Note")
    changed = []
    notes = Note.objects.filter(body__contains='<details markdown="1">').exclude(external_author="")
    for note in notes.only("pk", "body").iterator(chunk_size=500):
        match = QUOTED.search(note.body)
        if match is None:
            continue
        note.quoted = match["quoted"]
        note.body = note.body[: match.start()]
        changed.append(note)
    Note.objects.bulk_update(changed, ["body", "quoted"], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [("issues", "0005_thread_token_and_held_replies")]

    operations = [
        migrations.AddField(
            model_name="sentnotification",
            name="unsubscribe_token",
            field=models.CharField(default="", editable=False, max_length=32),
            preserve_default=False,
        ),
        migrations.RunPython(keep_sent_links_working, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="sentnotification",
            name="unsubscribe_token",
            field=models.CharField(
                default=issues.models.new_reply_key, editable=False, max_length=32, unique=True
            ),
        ),
        migrations.AddField(
            model_name="note",
            name="quoted",
            field=models.TextField(blank=True),
        ),
        migrations.RunPython(move_quoted_history_out_of_notes, migrations.RunPython.noop),
    ]
