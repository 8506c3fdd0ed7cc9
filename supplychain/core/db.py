"""Database helpers for hot paths: bulk inserts through PostgreSQL's COPY.

``bulk_create`` on PostgreSQL turns each column into an array parameter that psycopg quotes in
Python; for JSON-heavy rows that is most of the cost of publishing. COPY streams the rows instead
(measured with bench/events.py). Other databases fall back to ``bulk_create``.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, models


def copy_insert(model: type[models.Model], rows: Sequence[models.Model], fields: Sequence[str]) -> None:
    """Insert ``rows`` (unsaved instances) writing only ``fields``; primary keys are not read back."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(rows, batch_size=1000)
        return
    columns = [model._meta.get_field(name) for name in fields]
    names = ", ".join(connection.ops.quote_name(column.column) for column in columns)
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([column.get_db_prep_save(getattr(row, column.attname), connection) for column in columns])
