"""On PostgreSQL, the reservation in one round trip: the ``stock_reserve`` function (stock/sql/stock_reserve.sql)."""

from pathlib import Path

from django.db import migrations

SQL = Path(__file__).resolve().parent.parent / "sql" / "stock_reserve.sql"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(SQL.read_text(), params=None)  # no parameters: the body's % signs stay as they are


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "DROP FUNCTION IF EXISTS stock_reserve(text, jsonb, text, text[], numeric[], date, date, text, text, text,"
            " jsonb)",
            params=None,
        )


class Migration(migrations.Migration):
    dependencies = [("stock", "0001_initial"), ("events", "0002_audit_immutable")]
    operations = [migrations.RunPython(forwards, backwards)]
