"""The patched Redis transport: a connection torn down with unacked messages does not raise (kills no worker)."""

import pytest
from django.conf import settings
from kombu import Connection

from supplychain.broker import Transport


@pytest.mark.integration
def test_unacked_messages_on_a_dropped_connection_are_left_to_the_visibility_timeout(real_services):
    with Connection(settings.CELERY_BROKER_URL) as connection:
        assert isinstance(connection.transport, Transport)  # every redis:// URL uses the patched transport
        channel = connection.channel()
        channel.basic_publish(channel.prepare_message("hello"), exchange="", routing_key="transport-test")
        message = channel.basic_get("transport-test", no_ack=False)
        assert message is not None
        assert channel.qos._delivered  # one unacked message
        connection.transport.client = None  # what kombu leaves behind when the broker drops mid-close
        channel._pool = None  # ...after the connection error reset the pool
        channel.qos.restore_unacked()  # stock kombu raises AttributeError here and Celery stops the worker
        channel.qos.ack(message.delivery_tag)
        assert not channel.qos._delivered


@pytest.mark.integration
def test_acking_a_message_of_a_channel_closed_by_a_reconnect_does_not_raise(real_services):
    with Connection(settings.CELERY_BROKER_URL) as connection:
        channel = connection.channel()
        channel.basic_publish(channel.prepare_message("hello"), exchange="", routing_key="transport-test-2")
        message = channel.basic_get("transport-test-2", no_ack=False)
        assert message is not None
        channel.connection = None  # what a closed channel keeps once the consumer has reconnected
        channel.qos.ack(message.delivery_tag)  # stopped the worker as "Unrecoverable" before
        channel.qos.restore_unacked()  # left to the visibility timeout: no client to reach, no error
        assert not channel.qos._delivered
