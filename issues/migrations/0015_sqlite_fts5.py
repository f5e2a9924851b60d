"""SQLite only (PostgreSQL: migration 0014): FTS5 indexes of the issues' titles and
descriptions and of the notes' bodies, kept in step by triggers (issues/fts.py)."""

from django.db import migrations


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    from issues.fts import create_tables

    with schema_editor.connection.cursor() as cursor:
        create_tables(cursor)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    from issues.fts import drop_tables

    with schema_editor.connection.cursor() as cursor:
        drop_tables(cursor)


class Migration(migrations.Migration):
    dependencies = [
        ("issues", "0014_stored_search_vectors"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
