"""``events_outbox_mark`` and ``events_unpublish`` (supplychain/events/sql/events_unpublish.sql): other apps'
database functions take back what they published in their own transaction without touching the backbone's
tables themselves."""

from django.db import migrations

from supplychain.events.migrations import _sql


class Migration(migrations.Migration):
    dependencies = [("events", "0008_subscription_bounds_webhook_secrets_publish_permission")]
    operations = [migrations.RunPython(_sql.UNPUBLISH.install, _sql.UNPUBLISH.drop)]
