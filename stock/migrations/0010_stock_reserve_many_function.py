"""Install ``stock_reserve_many`` (stock/sql/stock_reserve_many.sql): a group of reservations in one call."""

from django.db import migrations

from stock.migrations import _reserve_function


class Migration(migrations.Migration):
    dependencies = [("stock", "0009_supplier_terms")]
    operations = [migrations.RunPython(_reserve_function.install, migrations.RunPython.noop)]
