"""Re-install the stock functions: ``stock_reserve_many`` takes back its stale events through the events app's
``events_unpublish`` instead of deleting from the backbone's tables itself."""

from django.db import migrations

from stock.migrations import _reserve_function


class Migration(migrations.Migration):
    dependencies = [("stock", "0011_reserve_before_the_locks"), ("events", "0009_events_unpublish_function")]
    operations = [migrations.RunPython(_reserve_function.install, migrations.RunPython.noop)]
