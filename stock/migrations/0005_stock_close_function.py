"""Commit and release in one round trip on PostgreSQL: ``stock_close`` (stock/sql/stock_close.sql), and the
level rule and event writes it shares with ``stock_reserve`` (stock/sql/stock_events.sql)."""

from django.db import migrations

from stock.migrations import _reserve_function


class Migration(migrations.Migration):
    dependencies = [("stock", "0004_stock_reserve_generic_plans")]
    operations = [migrations.RunPython(_reserve_function.install, migrations.RunPython.noop)]
