"""Push: stored messages and ticket changes wake the open streams at once; idle streams cost no queries.

The streams are read through the real ASGI application with a small ASGI client that sees each chunk as it
is sent (httpx's ASGITransport would wait for the end of the stream). The bus is the embedded one (Unix
datagram sockets) in the test's own folder; Redis and separate processes: tests/integration/test_push_processes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.db.backends.utils import CursorWrapper

from chat import actions, api, push
from chat.models import Conversation, Message, Ticket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def bus(settings: Any, tmp_path: Path) -> Path:
    """The embedded bus in this test's own folder (a short path: Unix socket paths are limited)."""
    settings.PUSH_URL = ""
    settings.PUSH_SOCKET_DIR = tmp_path / "push"
    settings.BUSINESS_HOURS = "always"
    return push.socket_dir()


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    topics: list[str] = []
    monkeypatch.setattr(push, "publish", topics.append)
    return topics


@pytest.fixture
def kb() -> Any:
    from knowledge.models import KnowledgeBase

    return KnowledgeBase.objects.create(slug="default", name="Rodamar")


@pytest.fixture
def conversation(kb: Any) -> tuple[Conversation, str]:
    row = Conversation(knowledge_base=kb, language="es")
    token = row.issue_token()
    row.save()
    return row, token


@contextlib.contextmanager
def counted_queries() -> Iterator[list[str]]:
    """Every SQL statement any thread runs (CaptureQueriesContext sees one connection only)."""
    statements: list[str] = []
    real_execute, real_executemany = CursorWrapper.execute, CursorWrapper.executemany

    def execute(self: CursorWrapper, sql: str, params: Any = None) -> Any:
        statements.append(sql)
        return real_execute(self, sql, params)

    def executemany(self: CursorWrapper, sql: str, param_list: Any) -> Any:
        statements.append(sql)
        return real_executemany(self, sql, param_list)

    CursorWrapper.execute = execute  # type: ignore[method-assign,assignment]
    CursorWrapper.executemany = executemany  # type: ignore[method-assign,assignment]
    try:
        yield statements
    finally:
        CursorWrapper.execute = real_execute  # type: ignore[method-assign]
        CursorWrapper.executemany = real_executemany  # type: ignore[method-assign]


class Stream:
    """A GET on the real ASGI app, read chunk by chunk as the server sends them; leaving it disconnects."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url, self.headers = url, headers
        self.status = 0
        self.buffer = ""
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self.gone = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Stream:
        from support.asgi import application

        parts = urlsplit(self.url)
        headers = [(b"host", b"127.0.0.1")] + [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": parts.path,
            "raw_path": parts.path.encode(),
            "query_string": parts.query.encode(),
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 80),
        }
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self.gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
            elif message["type"] == "http.response.body":
                await self.chunks.put(message.get("body", b""))
                if not message.get("more_body", False):
                    await self.chunks.put(b"")  # the end

        self.task = asyncio.create_task(application(scope, receive, send))  # type: ignore[arg-type]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.gone.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 5)

    async def blocks(self, seconds: float) -> list[str]:
        """The SSE blocks (events and comments) that arrive within ``seconds``."""
        out: list[str] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                chunk = await asyncio.wait_for(self.chunks.get(), left)
            except TimeoutError:
                break
            if chunk == b"":
                out.append("<end>")
                break
            self.buffer += chunk.decode()
            while "\n\n" in self.buffer:
                block, self.buffer = self.buffer.split("\n\n", 1)
                out.append(block)
        return out

    async def until(self, predicate: Any, seconds: float) -> tuple[list[str], float]:
        """Blocks up to the first one ``predicate`` accepts, and how long that took."""
        started = time.monotonic()
        seen: list[str] = []
        while time.monotonic() - started < seconds:
            got = await self.blocks(min(0.05, seconds))
            seen += got
            if any(predicate(block) for block in got):
                return seen, time.monotonic() - started
        raise AssertionError(f"not within {seconds}s; got {seen}")


def events(blocks: list[str]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in blocks:
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in lines:
            out.append((lines["event"], json.loads(lines.get("data", "{}"))))
    return out


def is_message(block: str) -> bool:
    return "event: message" in block


def widget_stream(conversation: Conversation, token: str, after: int = 0) -> Stream:
    return Stream(f"/api/conversations/{conversation.pk}/events?after={after}", {"Authorization": f"Bearer {token}"})


# --- the seam ------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_publish_wakes_the_subscribers_of_that_topic_only() -> None:
    hub = push.hub()
    await hub.start()
    mine = push.Subscription(hub, [push.conversation_topic("a")])
    other = push.Subscription(hub, [push.conversation_topic("b")])
    try:
        await asyncio.to_thread(push.publish, push.conversation_topic("a"))
        assert await mine.wait(2.0, poll_s=10)
        assert not await other.wait(0.2, poll_s=10)
        mine.listen_to([push.QUEUE])
        await asyncio.to_thread(push.publish, push.QUEUE)
        assert await mine.wait(2.0, poll_s=10)
    finally:
        mine.close()
        other.close()
    assert hub.subscriptions == {}


def test_a_dead_listeners_socket_is_cleared_by_the_next_publish(bus: Path) -> None:
    bus.mkdir(parents=True, exist_ok=True)
    dead = bus / "123-dead.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(dead))
    push.publish(push.QUEUE)
    assert not dead.exists()


def test_nothing_is_published_before_the_commit_or_after_a_rollback(published: list[str]) -> None:
    with transaction.atomic():
        push.conversation_changed("c1")
        assert published == []
    assert published == ["conversation:c1"]
    with contextlib.suppress(RuntimeError), transaction.atomic():
        push.queue_changed()
        raise RuntimeError("rolled back")
    assert published == ["conversation:c1"]


def test_every_stored_message_and_ticket_change_is_published(
    conversation: tuple[Conversation, str], agent: Any, published: list[str]
) -> None:
    row, _ = conversation
    topic = push.conversation_topic(row.pk)
    actions.add_customer_message(row, "Quiero hablar con una persona")
    assert published == [topic]
    published.clear()
    ticket, _ = actions.request_handoff(row)
    assert topic in published
    assert push.QUEUE in published
    for change in (
        lambda: actions.claim(ticket, agent),
        lambda: actions.agent_reply(row, agent, "Hola, soy Ana"),
        lambda: actions.add_note(row, agent, "internal"),
        lambda: actions.release(row, agent),
        lambda: actions.resolve(row, agent),
    ):
        published.clear()
        change()
        assert topic in published
    assert push.QUEUE in published  # resolving closed the ticket


@pytest.mark.asyncio
async def test_while_the_bus_is_unreachable_publishing_goes_on_and_streams_poll(settings: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.PUSH_URL = f"redis://127.0.0.1:{port}/0"  # nothing listens there
    await asyncio.to_thread(push.publish, push.QUEUE)  # logged, never raised
    hub = push.hub()
    await hub.start()
    assert not hub.healthy
    subscription = push.Subscription(hub, [push.QUEUE])
    started = time.monotonic()
    assert await subscription.wait(30, poll_s=0.1)  # nothing can wake it: it re-reads after poll_s
    assert time.monotonic() - started < 1
    assert not await subscription.wait(0.05, poll_s=0.1)  # a heartbeat due before the next poll
    subscription.close()
    assert hub.task is not None
    hub.task.cancel()


# --- the widget's stream -------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_an_idle_widget_stream_costs_no_queries_and_an_agent_reply_arrives_at_once(
    conversation: tuple[Conversation, str], agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "EVENTS_HEARTBEAT_S", 0.3)
    row, token = conversation
    await sync_to_async(actions.add_customer_message)(row, "Quiero hablar con una persona")
    ticket, _ = await sync_to_async(actions.request_handoff)(row)
    await sync_to_async(actions.claim)(ticket, agent)
    last = await Message.objects.filter(conversation=row).order_by("-id").values_list("id", flat=True).afirst()

    async with widget_stream(row, token, after=last or 0) as stream:
        opening = await stream.blocks(0.5)
        assert stream.status == 200
        assert opening[0] == ": connected"
        assert events(opening) == []  # nothing new after `last`; with an agent: no queue to report
        with counted_queries() as queries:
            idle = await stream.blocks(1.0)
        assert queries == []
        assert idle.count(": keepalive") >= 2

        sent = time.monotonic()
        await sync_to_async(actions.agent_reply)(row, agent, "Hola, soy Ana. ¿En qué te ayudo?")
        blocks, _ = await stream.until(is_message, 2.0)
        assert time.monotonic() - sent < 0.5
        [(_name, message)] = [e for e in events(blocks) if e[0] == "message"]
        assert (message["role"], message["author_name"]) == ("agent", "Ana")
        await sync_to_async(actions.add_note)(row, agent, "internal: never for the customer")
        assert [e for e in events(await stream.blocks(0.5)) if e[0] == "message"] == []

    await asyncio.sleep(0.05)
    assert push.hub().subscriptions == {}  # the customer left: the stream let go of its subscription


@pytest.mark.asyncio
async def test_a_reconnecting_widget_resumes_after_its_last_message_without_duplicates(
    conversation: tuple[Conversation, str],
) -> None:
    row, token = conversation
    first, _ = await sync_to_async(actions.add_customer_message)(row, "uno")
    second, _ = await sync_to_async(actions.add_customer_message)(row, "dos")
    async with widget_stream(row, token, after=first.pk) as stream:
        blocks = await stream.blocks(0.5)
    assert [data["id"] for name, data in events(blocks) if name == "message"] == [second.pk]
    async with widget_stream(row, token, after=second.pk) as stream:
        assert [name for name, _ in events(await stream.blocks(0.3))] == []


@pytest.mark.asyncio
async def test_a_message_stored_by_another_thread_reaches_the_stream_in_order_once(
    conversation: tuple[Conversation, str],
) -> None:
    row, token = conversation
    async with widget_stream(row, token) as stream:
        await stream.blocks(0.3)

        def burst() -> None:
            for n in range(5):
                actions.add_customer_message(row, f"mensaje {n}")

        await asyncio.to_thread(burst)
        blocks = await stream.blocks(1.0)
    texts = [data["text"] for name, data in events(blocks) if name == "message"]
    assert texts == [f"mensaje {n}" for n in range(5)]


@pytest.mark.asyncio
async def test_a_waiting_customer_hears_their_place_in_the_queue_move(
    kb: Any, agent: Any, conversation: tuple[Conversation, str]
) -> None:
    ahead = await Conversation.objects.acreate(knowledge_base=kb, language="es")
    ahead_ticket, _ = await sync_to_async(actions.request_handoff)(ahead)
    row, token = conversation
    await sync_to_async(actions.request_handoff)(row)
    async with widget_stream(row, token) as stream:
        opening = events(await stream.blocks(0.5))
        [status] = [data for name, data in opening if name == "status"]
        assert (status["status"], status["queue"]["position"]) == ("waiting_for_agent", 2)

        await sync_to_async(actions.claim)(ahead_ticket, agent)
        blocks, _ = await stream.until(lambda block: "event: status" in block, 2.0)
    [moved] = [data for name, data in events(blocks) if name == "status"]
    assert moved["queue"]["position"] == 1


# --- the agent's pages ---------------------------------------------------------------------------
@pytest.fixture
def agent_cookie(agent: Any) -> dict[str, str]:
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(agent)
    return {"Cookie": f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"}


@pytest.mark.asyncio
async def test_the_workspace_stream_pushes_customer_messages_with_ids_and_resumes_from_last_event_id(
    conversation: tuple[Conversation, str], agent_cookie: dict[str, str]
) -> None:
    row, _ = conversation
    url = f"/admin/chat/conversation/{row.pk}/poll/"
    headers = {**agent_cookie, "Accept": "text/event-stream"}
    async with Stream(url, headers) as stream:
        opening = await stream.blocks(0.5)
        assert stream.status == 200
        assert events(opening) == [("status", {"status": "bot", "assignee": None})]
        with counted_queries() as queries:
            await stream.blocks(0.5)
        assert queries == []
        await asyncio.to_thread(actions.add_customer_message, row, "¿Dónde está mi bici?")
        blocks, took = await stream.until(is_message, 2.0)
    assert took < 0.5
    [block] = [b for b in blocks if is_message(b)]
    message_id = int(block.splitlines()[0].removeprefix("id: "))
    assert json.loads(block.split("data: ", 1)[1])["text"] == "¿Dónde está mi bici?"

    async with Stream(url, {**headers, "Last-Event-ID": str(message_id)}) as again:
        assert [name for name, _ in events(await again.blocks(0.5))] == ["status"]


@pytest.mark.asyncio
async def test_the_queue_stream_sends_counts_when_a_ticket_opens(
    conversation: tuple[Conversation, str], agent_cookie: dict[str, str]
) -> None:
    row, _ = conversation
    headers = {**agent_cookie, "Accept": "text/event-stream"}
    async with Stream("/admin/chat/ticket/live/", headers) as stream:
        [(name, counts)] = events(await stream.blocks(0.5))
        assert (name, counts["waiting"], counts["newest"]) == ("counts", 0, 0)
        await sync_to_async(actions.request_handoff)(row)
        blocks, took = await stream.until(lambda block: "event: counts" in block, 2.0)
    ticket = await Ticket.objects.aget(conversation=row)
    [(_, counts)] = events(blocks)
    assert (counts["waiting"], counts["newest"]) == (1, ticket.pk)
    assert took < 0.5


@pytest.mark.asyncio
async def test_without_the_stream_header_the_agent_views_answer_one_json_snapshot(
    conversation: tuple[Conversation, str], agent_cookie: dict[str, str]
) -> None:
    row, _ = conversation
    await sync_to_async(actions.add_customer_message)(row, "hola")
    async with Stream(f"/admin/chat/conversation/{row.pk}/poll/?after=0", agent_cookie) as stream:
        blocks = await stream.blocks(1.0)
    assert blocks[-1] == "<end>"
    body = json.loads("".join(blocks[:-1]) + stream.buffer)
    assert [m["text"] for m in body["messages"]] == ["hola"]
