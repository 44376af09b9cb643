"""Two agents click "take over" at the same instant, in two processes, against a real database.

Run by tests/chat/test_claim_race.py with DATABASE_URL pointing at a fresh SQLite file or PostgreSQL.
Prints one JSON line: what each agent got.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")


def claim_as(username: str, ticket_id: int, barrier: Any, out: Any) -> None:
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection

    from chat.actions import claim
    from chat.errors import Conflict
    from chat.models import Ticket

    agent = User.objects.get(username=username)
    ticket = Ticket.objects.get(pk=ticket_id)
    connection.ensure_connection()
    barrier.wait()
    try:
        claim(ticket, agent)
        out.put((username, "won"))
    except Conflict as exc:
        out.put((username, f"conflict: {exc}"))


def main() -> None:
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connections

    from chat.models import Conversation, Ticket
    from knowledge.models import KnowledgeBase

    call_command("migrate", verbosity=0)
    kb = KnowledgeBase.objects.create(slug="race", name="Race")
    conversation = Conversation.objects.create(knowledge_base=kb, status=Conversation.Status.WAITING)
    ticket = Ticket.objects.create(conversation=conversation, reason=Ticket.Reason.HUMAN_REQUEST)
    for name in ("alice", "bob"):
        User.objects.create_user(name, is_staff=True)
    connections.close_all()

    # spawn, as uvicorn starts its workers: a forked child would share the parent's pooled connections
    context = multiprocessing.get_context("spawn")
    barrier, out = context.Barrier(2), context.Queue()
    workers = [context.Process(target=claim_as, args=(n, ticket.pk, barrier, out)) for n in ("alice", "bob")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    results = dict(out.get(timeout=5) for _ in workers)
    ticket.refresh_from_db()
    conversation.refresh_from_db()
    print(
        json.dumps(
            {
                "results": results,
                "claimed_by": ticket.claimed_by.username if ticket.claimed_by else None,
                "conversation_status": conversation.status,
                "assignee": conversation.assignee.username if conversation.assignee else None,
                "joined_notices": conversation.messages.filter(role="system").count(),
            }
        )
    )


if __name__ == "__main__":
    main()
