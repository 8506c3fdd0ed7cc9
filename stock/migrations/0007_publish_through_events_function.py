"""``stock_reserve`` and ``stock_close`` publish through the events app's ``events_publish``: re-install them
from stock/sql/ and drop ``stock_publish_events``, which wrote the events app's tables from stock's SQL."""

from django.db import migrations

from stock.migrations import _reserve_function


class Migration(migrations.Migration):
    dependencies = [
        ("stock", "0006_level_changes_by_transaction"),
        ("events", "0005_events_publish_function"),
    ]
    operations = [
        migrations.RunPython(_reserve_function.install, migrations.RunPython.noop),
        migrations.RunPython(_reserve_function.drop_retired, migrations.RunPython.noop),
    ]
