"""Outbox indexes: plain (type, id) and correlation_id instead of db_index's four (two were LIKE copies).

On PostgreSQL the new indexes are built with CREATE INDEX CONCURRENTLY, so a deploy onto a large
outbox does not block publishing (and ``stock_reserve``) while they build.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexWithoutBlocking(AddIndexConcurrently):
    """CONCURRENTLY on PostgreSQL; a plain CREATE INDEX elsewhere (SQLite, the embedded default)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            migrations.AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            migrations.AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("events", "0002_audit_immutable"),
    ]

    operations = [
        AddIndexWithoutBlocking(
            model_name="outboxevent",
            index=models.Index(fields=["type", "id"], name="outbox_type_id_idx"),
        ),
        AddIndexWithoutBlocking(
            model_name="outboxevent",
            index=models.Index(fields=["correlation_id"], name="outbox_correlation_idx"),
        ),
        migrations.AlterField(
            model_name="outboxevent",
            name="correlation_id",
            field=models.CharField(blank=True, max_length=100),
        ),
        migrations.AlterField(
            model_name="outboxevent",
            name="type",
            field=models.CharField(max_length=100),
        ),
    ]
