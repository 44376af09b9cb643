"""The Celery app: configured from Django settings (CELERY_*), tasks found in each app."""

from __future__ import annotations

import os

from celery import Celery
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")

app = Celery("support")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class RedisChannel(kombu_redis.Channel):
    """kombu 5.7.0's Redis channel, made safe to close after its connection was collected.

    When the broker goes away while a worker holds unacknowledged (late-acked) messages, Celery 5.7.0
    first ``collect()``s the connection, which detaches the transport (``transport.client = None``),
    and then ``close()``s it. That closes the default channel a second time; the channel tries to put
    its unacknowledged messages back, builds a new Redis pool from ``transport.client.hostname`` and
    raises ``AttributeError`` - not a connection error, so Celery does not ignore it and the worker
    exits with "Unrecoverable error". Raised as a connection error instead, the close is ignored like
    any other during an outage, the worker reconnects, and the messages are redelivered after the
    visibility timeout (CELERY_BROKER_TRANSPORT_OPTIONS).
    """

    def _connparams(self, asynchronous: bool = False) -> dict:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection of this channel is already closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]  # kombu internals, not in its stubs


class RedisTransport(kombu_redis.Transport):
    """The Redis transport with :class:`RedisChannel` (CELERY_BROKER_TRANSPORT names it for redis:// URLs)."""

    Channel = RedisChannel
