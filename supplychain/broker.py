"""The Redis transport, with one fix: losing the broker while messages are unacknowledged must not kill a worker.

kombu 5.7's Redis channel, when its connection drops, tries to put unacknowledged messages back
through a client built from the connection that is already gone, raises AttributeError, and Celery
stops the worker as "Unrecoverable" (seen in tests/integration/test_events_worker.py's broker outage;
the same class of bug as celery/kombu#582). Here the put-back and acks are skipped when the connection
is gone: the messages stay in Redis' unacked hash and its visibility timeout restores them, and every
task of this project is safe to run twice.
"""

from __future__ import annotations

import logging

from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport import redis as kombu_redis

logger = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    def _connection_gone(self) -> bool:
        # After a reconnect, a message of the old channel can still be acked: by then that channel is closed
        # and has no connection at all (seen: the worker stopped on "'NoneType' object has no attribute 'client'").
        connection = getattr(self.channel, "connection", None)
        return connection is None or connection.client is None

    def restore_unacked(self, client=None):
        if client is None and self._connection_gone():
            logger.warning(
                "broker connection gone: %d unacked message(s) left to the visibility timeout", len(self._delivered)
            )
            self._delivered.clear()
            return None
        return super().restore_unacked(client)

    def ack(self, delivery_tag):
        if self._connection_gone():
            return virtual.QoS.ack(self, delivery_tag)
        return super().ack(delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        if self._connection_gone():
            return virtual.QoS.ack(self, delivery_tag)
        return super().reject(delivery_tag, requeue=requeue)


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Make ``redis://``, ``rediss://`` and ``redis+socket://`` URLs use this transport."""
    for scheme in ("redis", "rediss", "redis+socket"):
        TRANSPORT_ALIASES[scheme] = "supplychain.broker:Transport"
