"""Push: wake the open event streams (the widget's, the agent pages') when something they show is stored.

A wake-up names a topic and nothing else: ``conversation:<id>`` (a message, a status change) or ``queue``
(a ticket opened, claimed, released or closed). A woken stream reads what is new from the database once,
sends it and sleeps again, so an idle stream costs no queries, and a lost or repeated wake-up costs a delay
or one read, never a wrong or duplicated event (streams resume from ids).

Wake-ups cross processes: the web process, the Celery worker and management commands each publish after
their transaction commits, and every web process listens.

- ``PUSH_URL=redis://…`` (production): Redis pub/sub. Each web process holds one subscription (a pattern
  over every topic) and hands each wake-up to its own streams.
- otherwise (the embedded default: every process on one machine): each listening process binds a Unix
  datagram socket in ``PUSH_SOCKET_DIR``; a publisher sends the topic to every socket there and removes
  those whose process is gone.

Publishing never fails the caller. While the bus is unreachable the streams re-read every few seconds
(``watch``'s ``poll_s``), and once it is back every stream re-reads once, so nothing published meanwhile is
missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import secrets
import socket
import tempfile
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.db.models.signals import post_save

from chat.outage import Outage

logger = logging.getLogger(__name__)

QUEUE = "queue"
CHANNEL_PREFIX = "support:push:"  # Redis channels; the pattern subscription is CHANNEL_PREFIX + "*"
READY_TIMEOUT_S = 2.0  # a new stream waits this long at most for its process's first bus connection
RETRY_AFTER_S = 5.0  # after a failed publish, the next ones skip the bus for this long (no stall per message)
SEND_TIMEOUT_S = 0.05  # a listener whose socket queue stays full this long loses that wake-up
_SUN_PATH_MAX = 100  # AF_UNIX paths are limited to 107 bytes on Linux (103 on macOS)

T = TypeVar("T")


def conversation_topic(conversation_id: object) -> str:
    return f"conversation:{conversation_id}"


# --- publishing (any process, sync code) ---------------------------------------------------------
def conversation_changed(conversation_id: object) -> None:
    """Wake the streams of this conversation once the current transaction commits (at once outside one)."""
    _after_commit(conversation_topic(conversation_id))


def queue_changed() -> None:
    """Wake the queue's streams (agents' queue pages, waiting customers) once the transaction commits."""
    _after_commit(QUEUE)


def tickets_changed(conversation_id: object) -> None:
    """A ticket of this conversation was claimed, released or closed (a queryset update: no signal)."""
    conversation_changed(conversation_id)
    queue_changed()


def _after_commit(topic: str) -> None:
    transaction.on_commit(lambda: publish(topic), robust=True)


def publish(topic: str) -> None:
    """Send one wake-up now. Never raises: a bus that is down is logged, and the streams poll meanwhile."""
    try:
        _publisher().send(topic)
    except Exception as exc:
        _publish_outage.failed(exc)
    else:
        _publish_outage.succeeded()


def message_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """Every stored message (customer, bot, agent, system, note) wakes its conversation's streams."""
    conversation_changed(instance.conversation_id)


def ticket_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    """A ticket created or saved changes the queue and its conversation's place in it."""
    tickets_changed(instance.conversation_id)


def connect_signals() -> None:
    """Called from ChatConfig.ready: saves through the ORM publish; queryset updates call the functions above."""
    from chat.models import Message, Ticket

    post_save.connect(message_saved, sender=Message, dispatch_uid="push.message_saved")
    post_save.connect(ticket_saved, sender=Ticket, dispatch_uid="push.ticket_saved")


_publish_outage = Outage(
    logger,
    "push: cannot publish (%s: %s); open streams poll until it works",
    "push: publishing again after %.0f s",
    RETRY_AFTER_S,
)


class _Publisher(Protocol):
    def send(self, topic: str) -> None: ...


class _RedisPublisher:
    def __init__(self, url: str) -> None:
        import redis

        # A Redis that is down or hung costs one publish a second at most; the outage spares the next ones.
        self.client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)

    def send(self, topic: str) -> None:
        if _publish_outage.skip():
            return
        self.client.publish(CHANNEL_PREFIX + topic, b"")


class _SocketPublisher:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.settimeout(SEND_TIMEOUT_S)

    def send(self, topic: str) -> None:
        payload = topic.encode()
        try:
            listeners = [entry.path for entry in os.scandir(self.folder) if entry.name.endswith(".sock")]
        except FileNotFoundError:
            return  # no process has listened yet
        for path in listeners:
            try:
                self.sock.sendto(payload, path)
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    os.unlink(path)  # its process is gone
            except (TimeoutError, BlockingIOError):
                logger.warning("push: listener %s is not reading; it missed a wake-up for %s", path, topic)


_publishers: dict[tuple[int, str, str], _Publisher] = {}
_publishers_lock = threading.Lock()


def _publisher() -> _Publisher:
    url, folder = settings.PUSH_URL, socket_dir()
    key = (os.getpid(), url, str(folder))  # a forked worker process makes its own
    with _publishers_lock:
        if key not in _publishers:
            _publishers[key] = _RedisPublisher(url) if url else _SocketPublisher(folder)
        return _publishers[key]


def socket_dir() -> Path:
    """Where the embedded bus's listeners bind: PUSH_SOCKET_DIR, or a short folder named after it when its
    paths would be too long for a Unix socket."""
    folder = Path(settings.PUSH_SOCKET_DIR)
    if len(str(folder)) + 40 <= _SUN_PATH_MAX:
        return folder
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"support-push-{digest}"


# --- listening (web processes, async code) ---------------------------------------------------------
class Subscription:
    """One stream's interest in some topics; woken by any of them, or by the bus coming back."""

    def __init__(self, hub: Hub, topics: Iterable[str]) -> None:
        self.hub = hub
        self.topics: frozenset[str] = frozenset()
        self.woken = asyncio.Event()
        self.listen_to(topics)

    def listen_to(self, topics: Iterable[str]) -> None:
        self.hub.index(self, frozenset(topics))

    async def wait(self, timeout: float, poll_s: float) -> bool:
        """True when something may have changed (woken, or ``poll_s`` passed while the bus is down);
        False when ``timeout`` seconds passed in silence."""
        healthy = self.hub.healthy
        try:
            await asyncio.wait_for(self.woken.wait(), timeout if healthy else min(timeout, poll_s))
        except TimeoutError:
            return not healthy and poll_s <= timeout
        self.woken.clear()
        return True

    def close(self) -> None:
        self.hub.index(self, frozenset())


class Hub:
    """One event loop's listener: one bus connection for all of this process's streams."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url, self.folder = url, folder
        self.subscriptions: dict[str, set[Subscription]] = {}
        self.healthy = False
        self.ready = asyncio.Event()  # set after the first attempt to connect, whatever its outcome
        self.task: asyncio.Task[None] | None = None
        self.sock: socket.socket | None = None

    def index(self, subscription: Subscription, topics: frozenset[str]) -> None:
        for topic in subscription.topics - topics:
            group = self.subscriptions.get(topic)
            if group is not None:
                group.discard(subscription)
                if not group:
                    del self.subscriptions[topic]
        for topic in topics - subscription.topics:
            self.subscriptions.setdefault(topic, set()).add(subscription)
        subscription.topics = topics

    def dispatch(self, topic: str) -> None:
        for subscription in self.subscriptions.get(topic, ()):
            subscription.woken.set()

    def wake_all(self) -> None:
        for group in self.subscriptions.values():
            for subscription in group:
                subscription.woken.set()

    def set_healthy(self, healthy: bool) -> None:
        if healthy != self.healthy:
            self.healthy = healthy
            self.wake_all()  # back: re-read what was missed; down: start polling
        self.ready.set()

    async def start(self) -> None:
        if self.task is None and self.sock is None:
            if self.url:
                self.task = asyncio.get_running_loop().create_task(self._listen_redis())
            else:
                self._listen_socket()
        if not self.ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ready.wait(), READY_TIMEOUT_S)

    # The embedded bus: a datagram socket read by the event loop itself.
    def _listen_socket(self) -> None:
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = self.folder / f"{os.getpid()}-{secrets.token_hex(4)}.sock"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind(str(path))
        except OSError as exc:
            logger.warning("push: cannot listen in %s (%s); streams poll instead", self.folder, exc)
            self.set_healthy(False)
            return
        self.sock = sock
        weakref.finalize(self, _remove, str(path))
        asyncio.get_running_loop().add_reader(sock.fileno(), self._drain)
        self.set_healthy(True)

    def _drain(self) -> None:
        assert self.sock is not None
        while True:
            try:
                data = self.sock.recv(1024)
            except (BlockingIOError, InterruptedError):
                return
            self.dispatch(data.decode(errors="replace"))

    # Production: one Redis pattern subscription, reconnected with backoff.
    async def _listen_redis(self) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        backoff = 0.5
        while True:
            client = aioredis.Redis.from_url(
                self.url, socket_connect_timeout=2, socket_keepalive=True, health_check_interval=10
            )
            pubsub = client.pubsub()
            try:
                await pubsub.psubscribe(CHANNEL_PREFIX + "*")
                while True:  # deliveries count only once Redis confirms the subscription
                    message = await pubsub.get_message(timeout=READY_TIMEOUT_S)
                    if message is not None and message["type"] == "psubscribe":
                        break
                if not self.healthy and self.ready.is_set():
                    logger.info("push: Redis reachable again; streams re-read and stop polling")
                self.set_healthy(True)
                backoff = 0.5
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=10)
                    if message is not None and message["type"] == "pmessage":
                        self.dispatch(message["channel"].decode()[len(CHANNEL_PREFIX) :])
            except (RedisError, OSError) as exc:
                if self.healthy or not self.ready.is_set():
                    logger.warning(
                        "push: Redis unreachable (%s: %s); streams poll until it is back", type(exc).__name__, exc
                    )
                self.set_healthy(False)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 5.0)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], Hub]] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """This event loop's hub for the configured bus (tests run a loop per test; uvicorn one per process)."""
    loop = asyncio.get_running_loop()
    url, folder = settings.PUSH_URL, socket_dir()
    hubs = _hubs.setdefault(loop, {})
    key = (url, str(folder))
    if key not in hubs:
        hubs[key] = Hub(url, folder)
    return hubs[key]


async def watch(
    topics: Iterable[str], *, window_s: float, heartbeat_s: float, poll_s: float
) -> AsyncIterator[Subscription | None]:
    """Drive a stream: yields its subscription when it should read (once at once, then whenever one of the
    topics changed) and None when ``heartbeat_s`` passed without anything to send; ends after ``window_s``.

    The subscription exists before the first read, so nothing stored in between is missed. The stream
    may change its topics through the yielded subscription (``listen_to``).
    """
    current = hub()
    await current.start()
    subscription = Subscription(current, topics)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + window_s
    beat = loop.time() + heartbeat_s
    try:
        yield subscription
        while (now := loop.time()) < deadline:
            if await subscription.wait(min(deadline, beat) - now, poll_s):
                yield subscription
            if loop.time() >= beat:
                beat = loop.time() + heartbeat_s
                yield None
    finally:
        subscription.close()


async def read(function: Callable[..., T], *args: Any) -> T:
    """Run a stream's database read, then give its connection back: an idle stream holds no connection
    (with PostgreSQL a pool's worth of idle streams would otherwise starve every other request)."""

    def once() -> T:
        try:
            return function(*args)
        finally:
            if not connection.in_atomic_block:  # a test's transaction: leave it alone
                connection.close()

    return await sync_to_async(once)()
