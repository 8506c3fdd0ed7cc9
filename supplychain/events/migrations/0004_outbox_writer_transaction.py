"""Each outbox row records the top-level transaction that wrote it (PostgreSQL only).

Outbox ids are taken when a row is written, not when its transaction commits, so rows become visible
out of id order. ``txid`` (``pg_current_xact_id()``, the top-level xid even inside a savepoint) lets a
reader ask what committed between two snapshots (``pg_visible_in_snapshot``), as the live stock stream
does. It is not a model field: every insert (ORM, COPY, the stock database functions) leaves it to the
default. A stable default adds the column without rewriting the table.
"""

from django.db import migrations

from supplychain.core.db import on_postgresql

ADD = "ALTER TABLE events_outboxevent ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id()"
DROP = "ALTER TABLE events_outboxevent DROP COLUMN txid"


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0003_outbox_indexes_without_like_copies"),
    ]

    operations = [migrations.RunPython(on_postgresql(ADD), on_postgresql(DROP))]
