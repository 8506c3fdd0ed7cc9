"""On PostgreSQL, the reservation in one round trip: the ``stock_reserve`` function (stock/sql/stock_reserve.sql)."""

from django.db import migrations

from stock.migrations import _reserve_function


class Migration(migrations.Migration):
    dependencies = [("stock", "0001_initial"), ("events", "0002_audit_immutable")]
    operations = [migrations.RunPython(_reserve_function.install, _reserve_function.drop)]
