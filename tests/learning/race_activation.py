"""A retraining job's switch and ops' "make this version live" at the same instant, in two processes, against a
real database.

Run by tests/learning/test_activation_race.py with DATABASE_URL pointing at a fresh SQLite file or PostgreSQL, and
the ordering as the first argument:
- ``job-first``: the job has checked that the live version is still the one it was judged against (and holds the
  lock that check takes); ops' rollback to v1 comes in before the job switches to its candidate, v3;
- ``ops-first``: ops' rollback to v1 is switching (and holds the lock) when the job checks the live version.

Prints one JSON line: the live versions at the end, what the job saw and what each side raised.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")

HOLD_S = 1.5
"""How long the first side keeps its transaction open after the other side has been let go."""


def _connected_with(kb_id: int, number: int) -> Any:
    """In a spawned process: Django set up, connected, and version ``number`` of the knowledge base."""
    import django

    django.setup()
    from django.db import connection

    from knowledge.models import RoutingVersion

    version = RoutingVersion.objects.select_related("knowledge_base").get(knowledge_base_id=kb_id, number=number)
    connection.ensure_connection()
    return version


def job_switch(kb_id: int, ordering: str, barrier: Any, out: Any) -> None:
    """The job's promotion step: check the live version under the lock, then switch to v3 if it has not moved."""
    candidate = _connected_with(kb_id, 3)
    from django.db import transaction

    from knowledge import routing

    try:
        if ordering == "ops-first":
            barrier.wait()  # ops holds the lock now
        with transaction.atomic():
            live = routing.lock_live_version(candidate.knowledge_base)
            if ordering == "job-first":
                barrier.wait()
                time.sleep(HOLD_S)  # ops' rollback is trying to switch meanwhile
            if live == 2:
                routing.activate_version(candidate)
        out.put(("job", {"saw": live, "error": None}))
    except Exception as exc:  # reported, not raised: the parent asserts on it
        out.put(("job", {"saw": None, "error": f"{type(exc).__name__}: {exc}"}))


def ops_rollback(kb_id: int, ordering: str, barrier: Any, out: Any) -> None:
    """Ops' "make v1 live" (``routing.activate_version``, which the admin's action ends in)."""
    version = _connected_with(kb_id, 1)
    from django.db import transaction

    from knowledge import routing

    try:
        if ordering == "job-first":
            barrier.wait()  # the job holds the lock now
            routing.activate_version(version)
        else:
            with transaction.atomic():
                routing.activate_version(version)
                barrier.wait()
                time.sleep(HOLD_S)  # the job checks the live version meanwhile
        out.put(("ops", {"error": None}))
    except Exception as exc:
        out.put(("ops", {"error": f"{type(exc).__name__}: {exc}"}))


def main() -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    from knowledge.models import KnowledgeBase, RoutingVersion

    ordering = sys.argv[1]
    call_command("migrate", verbosity=0)
    kb = KnowledgeBase.objects.create(slug="race", name="Race")
    for number in (1, 2, 3):
        RoutingVersion.objects.create(knowledge_base=kb, number=number, model={}, is_active=number == 2)
    connections.close_all()

    # spawn, as the worker and web start their processes: a forked child would share the parent's connections
    context = multiprocessing.get_context("spawn")
    barrier, out = context.Barrier(2), context.Queue()
    sides = [context.Process(target=side, args=(kb.pk, ordering, barrier, out)) for side in (job_switch, ops_rollback)]
    for side in sides:
        side.start()
    for side in sides:
        side.join(60)
    results = dict(out.get(timeout=5) for _ in sides)
    live = sorted(RoutingVersion.objects.filter(knowledge_base=kb, is_active=True).values_list("number", flat=True))
    print(json.dumps({"live": live, **results}))


if __name__ == "__main__":
    main()
