"""Nothing, now: the live stream's index of level changes by transaction moved to the events app (events 0006).

This migration once built ``outbox_level_changed_txid_idx`` on the events app's outbox table. Databases
that applied it keep the index; events 0006 builds it with ``IF NOT EXISTS`` under the same name, so
on those it changes nothing and on new databases it is built once, by the app that owns the table.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("stock", "0005_stock_close_function"),
        ("events", "0004_outbox_writer_transaction"),
    ]

    operations = []
