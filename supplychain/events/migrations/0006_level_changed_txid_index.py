"""An index for the live stock stream: level changes by the transaction that wrote them (PostgreSQL only).

The stream asks, every half second, which ``stock.level_changed`` rows committed since its last
snapshot: those written by transactions not yet finished then (``txid`` at or above its xmin). The
``txid`` column (0004) and this index belong to the outbox, so to this app. Built CONCURRENTLY so a deploy
does not block publishing while it builds. ``IF NOT EXISTS``: databases migrated before this index moved
here got it from stock 0006 (now a no-op), under the same name, and keep it; nothing is built twice.
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

    dependencies = [("events", "0005_events_publish_function")]

    operations = [migrations.RunPython(on_postgresql(CREATE), on_postgresql(DROP))]
