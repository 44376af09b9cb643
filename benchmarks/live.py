"""Live hand-off latencies against the real product (uvicorn, SQLite, widget API):

- escalation → agent screen: a customer asks for a person; the queue page polls its live endpoint
  every 3 s (as chat/static/chat/agent.js does); time until the poll shows the new ticket.
- agent reply → widget: the customer's widget holds GET /events open; an agent replies (the same
  action the admin workspace calls); time until the SSE `message` event arrives.

    .venv/bin/python benchmarks/live.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time

import httpx
from api import start_server
from common import ROOT, machine, percentiles

QUEUE_POLL_S = 3.0  # chat/static/chat/agent.js


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    server, base, data_dir = start_server("extractive", keep=True)
    os.environ["DATA_DIR"] = data_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth.models import User

    from chat import actions
    from chat.models import Conversation, Ticket

    agent = User.objects.get(username="ana")
    escalation, reply = [], []
    try:
        with httpx.Client(timeout=60) as client:
            for _ in range(args.runs):
                conv = client.post(f"{base}/api/conversations", json={"kb": "default"}).json()
                auth = {"Authorization": f"Bearer {conv['token']}"}
                # 1. escalation → agent screen (poll phase random, like a real agent's open page)
                newest = max(Ticket.objects.values_list("pk", flat=True), default=0)
                phase = random.uniform(0, QUEUE_POLL_S)
                started = time.perf_counter()
                client.post(f"{base}/api/conversations/{conv['id']}/handoff", json={}, headers=auth)
                time.sleep(phase)
                while True:
                    live = client.get(f"{base}/admin/chat/ticket/live/", cookies=admin_cookies(client, base))
                    if live.json()["newest"] > newest:
                        break
                    time.sleep(QUEUE_POLL_S)
                escalation.append((time.perf_counter() - started) * 1000)
                # 2. agent reply → widget
                conversation = Conversation.objects.get(pk=conv["id"])
                actions.claim(conversation.tickets.get(status="open"), agent)
                last = max(conversation.messages.values_list("pk", flat=True))
                arrived: list[float] = []

                def listen(
                    conv_id: str = conv["id"], last_id: int = last, headers: dict = auth, arrived: list = arrived
                ) -> None:
                    with client.stream(
                        "GET", f"{base}/api/conversations/{conv_id}/events?after={last_id}", headers=headers
                    ) as stream:
                        for line in stream.iter_lines():
                            if line == "event: message":
                                arrived.append(time.perf_counter())
                                return

                listener = threading.Thread(target=listen)
                listener.start()
                time.sleep(0.5)
                sent = time.perf_counter()
                actions.agent_reply(conversation, agent, "Hola, soy Ana. ¿En qué te ayudo?")
                listener.join(30)
                reply.append((arrived[0] - sent) * 1000)
    finally:
        server.terminate()
        server.wait(10)
    e, r = percentiles(escalation), percentiles(reply)
    print(f"machine: {machine()}; {args.runs} runs; SQLite; queue polls every {QUEUE_POLL_S:.0f} s, SSE every 0.4 s")
    print(f"escalation → agent's queue page: p50 {e['p50']} ms, p95 {e['p95']} ms")
    print(f"agent reply → customer's widget: p50 {r['p50']} ms, p95 {r['p95']} ms")


_cookies: dict[str, httpx.Cookies] = {}


def admin_cookies(client: httpx.Client, base: str) -> httpx.Cookies:
    """Log the demo agent into the admin once (the password comes from setup_demo's logins file)."""
    if base not in _cookies:
        import json
        from pathlib import Path

        password = json.loads((Path(os.environ["DATA_DIR"]) / "demo-logins.json").read_text())["ana"]
        login = f"{base}/admin/login/"
        page = client.get(login)
        token = page.cookies["csrftoken"]
        response = client.post(
            login,
            data={"username": "ana", "password": password, "csrfmiddlewaretoken": token, "next": "/admin/"},
            cookies=page.cookies,
            headers={"Referer": login},
        )
        _cookies[base] = httpx.Cookies({**dict(page.cookies), **dict(response.cookies)})
    return _cookies[base]


if __name__ == "__main__":
    main()
