"""Re-install ``stock_reserve`` from stock/sql/stock_reserve.sql: generic plans, ingredients looked up once by sku.

The function's text lives in one file, which migration 0002 reads too; ``CREATE OR REPLACE`` makes this
step a no-op on a database that 0002 has just installed it on.
"""

from django.db import migrations

from stock.migrations import _reserve_function


class Migration(migrations.Migration):
    dependencies = [("stock", "0003_batch_ingredient_index_covered_by_lot")]
    operations = [migrations.RunPython(_reserve_function.install, migrations.RunPython.noop)]
