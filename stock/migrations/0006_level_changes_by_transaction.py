"""An index for the live stream: level changes by the transaction that wrote them (PostgreSQL only).

The stream asks, every half second, which ``stock.level_changed`` rows committed since its last
snapshot: those written by transactions not yet finished then (``txid`` at or above its xmin). Built
CONCURRENTLY so a deploy does not block publishing while it builds.
"""

from django.db import migrations

from supplychain.core.db import on_postgresql

CREATE = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS outbox_level_changed_txid_idx ON events_outboxevent (txid)"
    " WHERE type = 'stock.level_changed'"
)
DROP = "DROP INDEX CONCURRENTLY IF EXISTS outbox_level_changed_txid_idx"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("stock", "0005_stock_close_function"),
        ("events", "0004_outbox_writer_transaction"),
    ]

    operations = [migrations.RunPython(on_postgresql(CREATE), on_postgresql(DROP))]
