"""Push across real processes: a message stored by a management command or by the Celery worker reaches the
customer's open events stream, served by uvicorn in another process, at once; on the embedded default (Unix
datagram sockets under DATA_DIR) and through Redis (production). The widget's stream is held open by an HTTP
client in this process, as the widget holds it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import shared_task

from tests.browser.server import free_port, manage
from tests.integration.product import celery_worker, product_env, shell, uvicorn
from tests.processes import stop

pytestmark = pytest.mark.integration

SETUP = """
from django.contrib.auth.models import User
from chat import actions
from chat.models import Conversation
from knowledge.models import KnowledgeBase
kb = KnowledgeBase.objects.create(slug="shop", name="Shop", default_language="en")
ana = User.objects.create_user("ana", first_name="Ana", is_staff=True)
conversation = Conversation(knowledge_base=kb, language="en")
token = conversation.issue_token()
conversation.save()
actions.add_customer_message(conversation, "I want to talk to a person")
ticket, _ = actions.request_handoff(conversation)
actions.claim(ticket, ana)
last = conversation.messages.order_by("-id").first().pk
print({"id": str(conversation.pk), "token": token, "last": last})
"""

REPLY = """
import time
from django.contrib.auth.models import User
from chat import actions
from chat.models import Conversation
actions.agent_reply(Conversation.objects.get(pk={id!r}), User.objects.get(username="ana"), {text!r})
print(time.time())
"""

ENQUEUE = """
from support.celery import app
app.send_task("tests.push.agent_says", args=[{id!r}, {text!r}])
"""


@shared_task(name="tests.push.agent_says")
def agent_says(conversation_id: str, text: str) -> None:
    """Run by the worker (started with --include this module): the agent's reply stored in the worker process."""
    from django.contrib.auth.models import User

    from chat import actions
    from chat.models import Conversation

    actions.agent_reply(Conversation.objects.get(pk=conversation_id), User.objects.get(username="ana"), text)


class Widget(threading.Thread):
    """The customer's open events stream: each message event with the time it arrived."""

    def __init__(self, base: str, conversation: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.url = f"{base}/api/conversations/{conversation['id']}/events?after={conversation['last']}"
        self.headers = {"Authorization": f"Bearer {conversation['token']}"}
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.connected = threading.Event()
        self.client = httpx.Client(timeout=httpx.Timeout(5, read=None))

    def run(self) -> None:
        try:
            with self.client.stream("GET", self.url, headers=self.headers) as response:
                event = ""
                for line in response.iter_lines():
                    if line == ": connected":
                        self.connected.set()
                    elif line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "message":
                        self.messages.append((time.time(), json.loads(line[6:])))
        except httpx.HTTPError:
            pass  # closed by the test, or the server stopped: wait_for reports what arrived

    def wait_for(self, text: str, timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for arrived, message in self.messages:
                if message["text"] == text:
                    return arrived
            time.sleep(0.01)
        raise AssertionError(f"{text!r} never reached the stream; got {[m['text'] for _, m in self.messages]}")

    def close(self) -> None:
        self.client.close()


@contextmanager
def open_widget(base: str, conversation: dict[str, Any]) -> Iterator[Widget]:
    widget = Widget(base, conversation)
    widget.start()
    assert widget.connected.wait(15), "the events stream did not open"
    try:
        yield widget
    finally:
        widget.close()
        widget.join(5)


def reply_from_a_command(env: dict[str, str], conversation_id: str, text: str) -> float:
    """Store an agent's reply in a `manage.py shell` process; returns when (time.time()) it was stored."""
    return float(shell(env, REPLY.format(id=conversation_id, text=text)).strip().splitlines()[-1])


def prepared(env: dict[str, str]) -> dict[str, Any]:
    manage(env, "migrate", "--noinput")
    output = shell(env, SETUP).strip().splitlines()[-1]
    return dict(eval(output))  # noqa: S307 (our own shell's printed dict)


def bus_folder(settings: Any, data_dir: Path) -> Path:
    """Where the product's processes meet on the embedded bus (a short folder when DATA_DIR's path is long)."""
    from chat import push

    settings.PUSH_SOCKET_DIR = data_dir / "push"
    return push.socket_dir()


def test_a_command_and_the_worker_reach_an_open_stream_on_the_embedded_default(tmp_path: Path, settings: Any) -> None:
    env = product_env(tmp_path / "data")
    conversation = prepared(env)
    folder = bus_folder(settings, tmp_path / "data")
    with (
        uvicorn(env, tmp_path / "web.log") as base,
        celery_worker(env, tmp_path / "worker.log", "--include", "tests.integration.test_push_processes"),
        open_widget(base, conversation) as widget,
    ):
        assert list(folder.glob("*.sock")), "the web process listens on the embedded bus"

        stored = reply_from_a_command(env, conversation["id"], "From a command")
        assert widget.wait_for("From a command") - stored < 1.0

        shell(env, ENQUEUE.format(id=conversation["id"], text="From the worker"))
        widget.wait_for("From the worker", timeout=60)
        texts = [message["text"] for _, message in widget.messages]
    assert texts == ["From a command", "From the worker"]  # each once, in order


def test_a_command_reaches_an_open_stream_through_redis(tmp_path: Path, redis_url: str, settings: Any) -> None:
    env = product_env(tmp_path / "data", PUSH_URL=redis_url)
    conversation = prepared(env)
    folder = bus_folder(settings, tmp_path / "data")
    with uvicorn(env, tmp_path / "web.log") as base, open_widget(base, conversation) as widget:
        assert not list(folder.glob("*.sock")), "with Redis, no socket is bound"
        stored = reply_from_a_command(env, conversation["id"], "Through Redis")
        assert widget.wait_for("Through Redis") - stored < 1.0


@contextmanager
def redis_server(port: int, folder: Path) -> Iterator[subprocess.Popen[bytes]]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed: run scripts/system-deps.sh"
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield process
    finally:
        stop(process)


def test_through_a_redis_outage_streams_poll_and_once_it_is_back_they_are_pushed_again(
    tmp_path: Path, settings: Any
) -> None:
    from chat import api

    port = free_port()
    env = product_env(tmp_path / "data", PUSH_URL=f"redis://127.0.0.1:{port}/0")
    conversation = prepared(env)
    with (
        redis_server(port, tmp_path) as redis,
        uvicorn(env, tmp_path / "web.log") as base,
        open_widget(base, conversation) as widget,
    ):
        stored = reply_from_a_command(env, conversation["id"], "Before")
        assert widget.wait_for("Before") - stored < 1.0
        stop(redis)

        stored = reply_from_a_command(env, conversation["id"], "During the outage")
        assert widget.wait_for("During the outage") - stored < api.EVENTS_POLL_S + 1.5

        with redis_server(port, tmp_path):
            time.sleep(8)  # the web process reconnects (backoff up to 5 s, jittered)
            stored = reply_from_a_command(env, conversation["id"], "After")
            assert widget.wait_for("After") - stored < 1.0
        texts = [message["text"] for _, message in widget.messages]
    assert texts == ["Before", "During the outage", "After"]
