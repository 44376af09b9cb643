"""The agent queue page with 10,000 conversations: SQL queries and time per page load.

    .venv/bin/python benchmarks/agent_queue.py [--conversations 10000]

Builds a throw-away SQLite database with N conversations (a third of them escalated, tickets in
every state), then loads the queue (Admin → Tickets, default filter) as an agent through Django's
test client, counting queries and timing 10 loads.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import timedelta

from common import isolated_django, machine, percentiles


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=10_000)
    args = parser.parse_args()
    import os

    os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")  # Django's test client
    isolated_django()
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from chat.models import Conversation, Message, Ticket
    from chat.roles import ensure_roles
    from knowledge.models import KnowledgeBase

    random.seed(7)
    kb = KnowledgeBase.objects.create(slug="bench", name="Bench")
    agent = User.objects.create_user("agent", password="pw", is_staff=True)
    agent.groups.add(ensure_roles()["agents"])
    now = timezone.now()
    conversations = [
        Conversation(knowledge_base=kb, language=random.choice(["es", "en"]), token_hash="x", created_at=now)
        for _ in range(args.conversations)
    ]
    Conversation.objects.bulk_create(conversations, batch_size=2000)
    Message.objects.bulk_create(
        [Message(conversation=c, role="customer", text=f"question {i}") for i, c in enumerate(conversations)],
        batch_size=2000,
    )
    states = [Ticket.Status.OPEN, Ticket.Status.CLAIMED, Ticket.Status.RESOLVED, Ticket.Status.RELEASED]
    Ticket.objects.bulk_create(
        [
            Ticket(
                conversation=c,
                reason=random.choice(list(Ticket.Reason)),
                status=random.choice(states),
                summary="Reason: low confidence. Last message: “question”.",
                created_at=now - timedelta(minutes=random.randint(0, 600)),
                confidence=random.random(),
            )
            for c in conversations[: args.conversations // 3]
        ],
        batch_size=2000,
    )
    client = Client()
    client.force_login(agent)
    client.get("/admin/chat/ticket/")  # warm
    timings, counts = [], []
    for _ in range(10):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get("/admin/chat/ticket/")
            timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
        counts.append(len(queries))
    live = []
    for _ in range(10):
        started = time.perf_counter()
        client.get("/admin/chat/ticket/live/")
        live.append((time.perf_counter() - started) * 1000)
    t, lv = percentiles(timings), percentiles(live)
    active = Ticket.objects.filter(status__in=states[:2]).count()
    print(f"machine: {machine()}; SQLite; {args.conversations} conversations, {active} open or claimed tickets")
    print(f"queue page: {counts[-1]} SQL queries, p50 {t['p50']} ms, p95 {t['p95']} ms (server side, 10 loads)")
    print(f"live-count endpoint polled by the queue page: p50 {lv['p50']} ms")


if __name__ == "__main__":
    main()
