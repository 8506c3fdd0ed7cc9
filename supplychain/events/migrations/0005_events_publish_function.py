"""The database-side publish, ``events_publish`` (supplychain/events/sql/events_publish.sql), for other apps'
database functions: the backbone's tables are written by the backbone's own SQL."""

from django.db import migrations

from supplychain.events.migrations import _sql


class Migration(migrations.Migration):
    dependencies = [("events", "0004_outbox_writer_transaction")]
    operations = [migrations.RunPython(_sql.install, _sql.drop)]
