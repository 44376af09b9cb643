"""Live delivery by push, against the real product on the embedded default (uvicorn, SQLite, the Unix-socket
bus, the filesystem broker), with a client that reads the streams as the widget and the agent's pages do:

- agent reply → customer's widget: the widget holds GET /api/conversations/<id>/events open; the agent sends
  the reply from the admin workspace (an HTTP POST as the browser makes it), and, separately, another process
  stores it (as the worker or a command would). Time until the stream's `message` event arrives.
- customer message → agent's page: the workspace holds its stream open (Accept: text/event-stream, as
  agent.js's EventSource does); the customer posts a message through the widget API. Time until it arrives.
- escalation → agent's queue page: the queue page's stream; the customer asks for a person.
- database queries per idle open conversation per minute: N widget streams (plus a workspace and a queue
  stream) held open for a while with nothing happening; the server runs inside a wrapper of this script that
  counts every SQL statement any of its threads runs. Also the cost of opening a stream, once per connection.

    .venv/bin/python benchmarks/live.py [--runs 30] [--idle-streams 20] [--idle-seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, percentiles

PYTHON = str(ROOT / ".venv" / "bin" / "python")


# --- the server, wrapped to count its queries ------------------------------------------------------
def serve(port: int, counter: Path) -> None:
    """Run uvicorn in this process, counting every SQL statement; the count is written to ``counter``."""
    sys.path.insert(0, str(ROOT))
    from django.db.backends.utils import CursorWrapper

    lock = threading.Lock()
    count = [0]
    real_execute, real_executemany = CursorWrapper.execute, CursorWrapper.executemany

    def execute(self: Any, sql: Any, params: Any = None) -> Any:
        with lock:
            count[0] += 1
        return real_execute(self, sql, params)

    def executemany(self: Any, sql: Any, params: Any) -> Any:
        with lock:
            count[0] += 1
        return real_executemany(self, sql, params)

    CursorWrapper.execute = execute  # type: ignore[method-assign]
    CursorWrapper.executemany = executemany  # type: ignore[method-assign,assignment]

    def report() -> None:
        while True:
            counter.write_text(str(count[0]))
            time.sleep(0.05)

    threading.Thread(target=report, daemon=True).start()
    import uvicorn

    uvicorn.run("support.asgi:application", host="127.0.0.1", port=port, log_level="warning", access_log=False)


class Server:
    def __init__(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="bench-live-"))
        cache = ROOT / "var" / "cache" / "vectors.sqlite3"
        (self.data_dir / "cache").mkdir()
        if cache.exists():
            (self.data_dir / "cache" / "vectors.sqlite3").symlink_to(cache)
        self.env = {
            **os.environ,
            "DATA_DIR": str(self.data_dir),
            "DJANGO_SETTINGS_MODULE": "support.settings",
            "LOG_LEVEL": "warning",
            "BUSINESS_HOURS": "always",
            "CHAT_RATE_LIMIT_PER_MINUTE": "100000",
            "CHAT_IP_RATE_LIMIT_PER_MINUTE": "100000",
        }
        for name in ("PUSH_URL", "CACHE_URL", "CELERY_BROKER_URL", "DATABASE_URL", "CHROMA_URL"):
            self.env.pop(name, None)  # the embedded default
        self.counter = self.data_dir / "queries.count"
        self.process: subprocess.Popen[bytes] | None = None
        self.base = ""

    def start(self) -> None:
        for command in (["migrate", "--noinput", "-v0"], ["setup_demo"]):
            subprocess.run([PYTHON, "manage.py", *command], cwd=ROOT, env=self.env, check=True, capture_output=True)
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.process = subprocess.Popen(
            [PYTHON, __file__, "--serve", str(port), str(self.counter)], cwd=ROOT, env=self.env
        )
        self.base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def queries(self) -> int:
        time.sleep(0.1)  # the wrapper writes its count every 50 ms
        return int(self.counter.read_text())

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()


# --- clients ------------------------------------------------------------------------------------
class Listener(threading.Thread):
    """One open SSE stream: records (perf_counter, event, data) for each event as it arrives."""

    def __init__(self, url: str, headers: dict[str, str], cookies: httpx.Cookies | None = None) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = url, {**headers, "Accept": "text/event-stream"}
        self.client = httpx.Client(timeout=httpx.Timeout(10, read=None), cookies=cookies)
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.opened = threading.Event()
        self.changed = threading.Condition()

    def run(self) -> None:
        try:
            with self.client.stream("GET", self.url, headers=self.headers) as response:
                self.opened.set()
                event = ""
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        with self.changed:
                            self.events.append((time.perf_counter(), event, json.loads(line[6:])))
                            self.changed.notify_all()
        except httpx.HTTPError:
            pass  # closed by close()

    def first(self, accept: Callable[[str, dict[str, Any]], bool], timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for arrived, event, data in self.events:
                    if accept(event, data):
                        return arrived
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"nothing matching arrived on {self.url}; got {self.events}")
                self.changed.wait(left)

    def close(self) -> None:
        self.client.close()


@contextmanager
def listening(url: str, headers: dict[str, str], cookies: httpx.Cookies | None = None) -> Iterator[Listener]:
    listener = Listener(url, headers, cookies)
    listener.start()
    if not listener.opened.wait(15):
        raise RuntimeError(f"{url} did not open")
    time.sleep(0.05)  # the stream's first read is done
    try:
        yield listener
    finally:
        listener.close()
        listener.join(5)


class Customer:
    def __init__(self, http: httpx.Client, base: str) -> None:
        self.http, self.base = http, base
        body = http.post(f"{base}/api/conversations", json={"kb": "default", "language": "es"}).json()
        self.id, self.auth = body["id"], {"Authorization": f"Bearer {body['token']}"}

    def events_url(self, after: int) -> str:
        return f"{self.base}/api/conversations/{self.id}/events?after={after}"

    def handoff(self) -> None:
        self.http.post(f"{self.base}/api/conversations/{self.id}/handoff", json={}, headers=self.auth)

    def say(self, text: str) -> None:
        response = self.http.post(
            f"{self.base}/api/conversations/{self.id}/messages",
            json={"text": text},
            headers={**self.auth, "Accept": "text/event-stream"},
        )
        response.raise_for_status()


class Agent:
    """Ana, logged into the admin as her browser is (session and CSRF cookies)."""

    def __init__(self, http: httpx.Client, server: Server) -> None:
        self.http, self.base = http, server.base
        password = json.loads((server.data_dir / "demo-logins.json").read_text())["ana"]
        login = f"{self.base}/admin/login/"
        page = http.get(login)
        http.post(
            login,
            data={"username": "ana", "password": password, "csrfmiddlewaretoken": page.cookies["csrftoken"]},
            headers={"Referer": login},
        )
        self.cookies = httpx.Cookies(http.cookies)

    def workspace(self, conversation_id: str) -> str:
        return f"{self.base}/admin/chat/conversation/{conversation_id}/work/"

    def stream_url(self, conversation_id: str, after: int) -> str:
        return f"{self.base}/admin/chat/conversation/{conversation_id}/poll/?after={after}"

    def reply(self, conversation_id: str, text: str) -> None:
        url = self.workspace(conversation_id)
        response = self.http.post(
            url,
            data={"op": "reply", "text": text, "csrfmiddlewaretoken": self.http.cookies["csrftoken"]},
            headers={"Referer": url},
        )
        assert response.status_code in (200, 302), response.status_code


def django_in_this_process(data_dir: Path) -> None:
    os.environ["DATA_DIR"] = str(data_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "support.settings"
    for name in ("PUSH_URL", "CACHE_URL", "CELERY_BROKER_URL", "DATABASE_URL", "CHROMA_URL"):
        os.environ.pop(name, None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def last_id(conversation_id: str) -> int:
    from chat.models import Message

    return Message.objects.filter(conversation_id=conversation_id).order_by("-id").values_list("id", flat=True)[0]


def message_saying(text: str) -> Callable[[str, dict[str, Any]], bool]:
    return lambda event, data: event == "message" and data.get("text") == text


def newer_ticket_than(newest: int) -> Callable[[str, dict[str, Any]], bool]:
    return lambda event, data: event == "counts" and data.get("newest", 0) > newest


# --- the measurements -----------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--idle-streams", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "COUNTER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), Path(args.serve[1]))
        return

    server = Server()
    server.start()
    django_in_this_process(server.data_dir)
    from django.contrib.auth.models import User

    from chat import actions
    from chat.models import Conversation, Ticket

    ana = User.objects.get(username="ana")
    to_widget, to_widget_other_process, to_agent, to_queue = [], [], [], []
    try:
        with httpx.Client(timeout=60) as http, httpx.Client(timeout=60, follow_redirects=False) as agent_http:
            agent = Agent(agent_http, server)
            for run in range(args.runs):
                customer = Customer(http, server.base)
                # escalation → the queue page
                with listening(f"{server.base}/admin/chat/ticket/live/", {}, agent.cookies) as queue:
                    queue.first(lambda event, data: event == "counts")
                    newest = max(Ticket.objects.values_list("pk", flat=True), default=0)
                    sent = time.perf_counter()
                    customer.handoff()
                    arrived = queue.first(newer_ticket_than(newest))
                    to_queue.append((arrived - sent) * 1000)
                actions.claim(Conversation.objects.get(pk=customer.id).tickets.get(status="open"), ana)

                # agent reply → widget, from the admin workspace and from another process
                with listening(customer.events_url(last_id(customer.id)), customer.auth) as widget:
                    text = f"Hola, soy Ana ({run})."
                    sent = time.perf_counter()
                    agent.reply(customer.id, text)
                    to_widget.append((widget.first(message_saying(text)) - sent) * 1000)
                    text = f"Sigo aquí ({run})."
                    sent = time.perf_counter()
                    actions.agent_reply(Conversation.objects.get(pk=customer.id), ana, text)
                    arrived = widget.first(message_saying(text))
                    to_widget_other_process.append((arrived - sent) * 1000)

                # customer message → the agent's workspace
                with listening(agent.stream_url(customer.id, last_id(customer.id)), {}, agent.cookies) as page:
                    text = f"Mi bici hace ruido ({run})."
                    sent = time.perf_counter()
                    customer.say(text)
                    arrived = page.first(message_saying(text))
                    to_agent.append((arrived - sent) * 1000)

            idle = idle_cost(server, http, agent, args.idle_streams, args.idle_seconds)
    finally:
        server.stop()

    print(f"machine: {machine()}; {args.runs} runs; embedded default (SQLite, Unix-socket push bus), one uvicorn")
    for label, values in (
        ("agent reply (admin workspace POST) → customer's widget", to_widget),
        ("agent reply stored by another process → customer's widget", to_widget_other_process),
        ("customer message (widget POST) → agent's workspace", to_agent),
        ("escalation (widget hand-off) → agent's queue page", to_queue),
    ):
        figures = percentiles(values)
        print(f"{label}: p50 {figures['p50']:.0f} ms, p95 {figures['p95']:.0f} ms, max {max(values):.0f} ms")
    print(
        f"idle: {idle['streams']} widget streams + 1 workspace + 1 queue stream open for {idle['seconds']:.0f} s: "
        f"{idle['idle_queries']} queries in all = {idle['per_conversation_minute']:.2f} per idle conversation "
        f"per minute; opening a stream costs {idle['per_connect']:.1f} queries (once per connection; the server "
        f"ends a stream after {idle['window_s']:.0f} s and the widget reconnects)"
    )


def idle_cost(server: Server, http: httpx.Client, agent: Agent, streams: int, seconds: float) -> dict[str, Any]:
    from chat import api

    customers = [Customer(http, server.base) for _ in range(streams)]
    for customer in customers:
        customer.say("Hola")  # a bot turn, so each conversation has history
    with ExitStack() as stack:
        before_open = server.queries()
        for customer in customers:
            stack.enter_context(listening(customer.events_url(last_id(customer.id)), customer.auth))
        per_connect = (server.queries() - before_open) / streams
        stack.enter_context(listening(agent.stream_url(customers[0].id, last_id(customers[0].id)), {}, agent.cookies))
        stack.enter_context(listening(f"{server.base}/admin/chat/ticket/live/", {}, agent.cookies))
        time.sleep(1.0)
        before = server.queries()
        time.sleep(seconds)
        idle_queries = server.queries() - before
    return {
        "streams": streams,
        "seconds": seconds,
        "idle_queries": idle_queries,
        "per_conversation_minute": idle_queries / streams / (seconds / 60),
        "per_connect": per_connect,
        "window_s": api.EVENTS_WINDOW_S,
    }


if __name__ == "__main__":
    main()
