"""Re-install the stock functions from stock/sql/: ``stock_reserve`` inserts its reservation before its level locks,
and ``stock_reserve_many`` writes the reservation side of a group before them (no deadlock between the two)."""

from django.db import migrations

from stock.migrations import _reserve_function


class Migration(migrations.Migration):
    dependencies = [("stock", "0010_stock_reserve_many_function")]
    operations = [migrations.RunPython(_reserve_function.install, migrations.RunPython.noop)]
