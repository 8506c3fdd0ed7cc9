"""Fewer checks and index entries per reservation (measured with bench/stock.py's group part; README, Stock).

- The allocation and ledger rows' batch and ingredient lose their database foreign keys (``db_constraint``
  off; see ``stock.models.UNCHECKED``): each check took a key-share lock on a hot batch or ingredient row.
  The invariant audit reports a missing or mismatched batch or ingredient instead.
- ``stock_allocation.ingredient_id`` and ``stock_movement.ingredient_id`` lose their single-column indexes: no
  query reads allocations by ingredient, and the ledger's reads by ingredient use ``movement_ingredient_idx``
  (ingredient, id), which starts with the same column.
- The ``varchar_pattern_ops`` copy of the unique ``stock_reservation.transaction_id`` index, which Django adds
  for case-sensitive ``LIKE 'prefix%'``, goes: no query looks reservations up that way (the admin's search is
  case-insensitive, which neither index serves), and equality uses the unique index.
"""

import django.db.models.deletion
from django.db import migrations, models

LIKE_INDEX = "stock_reservation_transaction_id_5f5fd1ab_like"


def drop_like_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {LIKE_INDEX}")


def create_like_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {LIKE_INDEX} ON stock_reservation (transaction_id varchar_pattern_ops)"
        )


class Migration(migrations.Migration):
    dependencies = [("stock", "0012_reserve_many_unpublishes_through_events")]

    operations = [
        migrations.AlterField(
            model_name="allocation",
            name="batch",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="allocations",
                to="stock.batch",
            ),
        ),
        migrations.AlterField(
            model_name="allocation",
            name="ingredient",
            field=models.ForeignKey(
                db_constraint=False, db_index=False, on_delete=django.db.models.deletion.PROTECT, to="stock.ingredient"
            ),
        ),
        migrations.AlterField(
            model_name="movement",
            name="batch",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                to="stock.batch",
            ),
        ),
        migrations.AlterField(
            model_name="movement",
            name="ingredient",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="movements",
                to="stock.ingredient",
            ),
        ),
        migrations.RunPython(drop_like_index, create_like_index, elidable=False),
    ]
