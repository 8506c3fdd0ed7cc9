"""Each claim records the worker (Celery node name) holding the lease, so a restarted worker takes its leases back.

A constant database default (the relay inserts deliveries with raw SQL): PostgreSQL adds the column without
rewriting the table.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0006_level_changed_txid_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="leased_by",
            field=models.CharField(
                blank=True, default="", db_default="", help_text="The worker (Celery node name) that last claimed it.", max_length=200
            ),
        ),
    ]
