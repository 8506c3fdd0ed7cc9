"""Deliveries lose the single-column indexes of their two foreign keys: EXPLAIN and pg_stat_user_indexes on the
orders benchmark showed neither used (the unique (event, subscription) and (subscription, status) indexes serve
those lookups and the cascades), while every relayed delivery paid an entry in each."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('events', '0009_events_unpublish_function'),
    ]

    operations = [
        migrations.AlterField(
            model_name='delivery',
            name='event',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='events.outboxevent'),
        ),
        migrations.AlterField(
            model_name='delivery',
            name='subscription',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='events.subscription'),
        ),
    ]
