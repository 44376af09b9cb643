"""The Celery worker against Redis faults: a 20 s outage with a task in flight, and a worker killed mid-task.

A task is kept busy by holding SQLite's write lock (log_turn then waits for the database, as it would on a slow
one). Before the fix, losing Redis with a late-acknowledged message in hand crashed the worker for good:
``Unrecoverable error: AttributeError("'NoneType' object has no attribute 'hostname'")`` (see support/celery.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.browser.server import manage
from tests.integration.faults_fixtures import poll, redis_server, worker, write_lock
from tests.integration.product import product_env, shell

pytestmark = pytest.mark.integration

VISIBILITY_S = 15  # production: 300 (CELERY_VISIBILITY_TIMEOUT_S); short here so the test waits for it

TURNS = """
from chat import actions
from chat.models import Conversation
from knowledge.actions import get_or_create_knowledge_base
from learning.signals import logging_inline
kb = get_or_create_knowledge_base("shop", "Shop")
with logging_inline():  # the test enqueues the log tasks itself, when it wants
    for text in ("first question", "second question"):
        conversation = Conversation(knowledge_base=kb)
        conversation.issue_token()
        conversation.save()
        question, _ = actions.add_customer_message(conversation, text)
        reply = actions.record_bot_message(conversation, question, "an answer", decision={"reason": "answer"})
        print("reply", reply.pk)
"""


def enqueue_log(env: dict[str, str], message_id: str) -> None:
    shell(env, f"from learning.tasks import log_turn; log_turn.delay({message_id})", timeout=60)


def logged(db: Path, text: str, timeout: float) -> None:
    poll(db, f"SELECT id FROM learning_turnlog WHERE text = '{text}'", timeout=timeout)  # noqa: S608 (test's own text)


def setup(tmp_path: Path, broker: str) -> tuple[dict[str, str], Path, list[str]]:
    db = tmp_path / "db.sqlite3"
    env = product_env(
        tmp_path / "data",
        DATABASE_URL=f"sqlite:///{db}",
        CELERY_BROKER_URL=broker,
        CELERY_VISIBILITY_TIMEOUT_S=str(VISIBILITY_S),
        LOG_LEVEL="info",
    )
    manage(env, "migrate", "--no-input")
    replies = [line.split()[1] for line in shell(env, TURNS).splitlines() if line.startswith("reply ")]
    return env, db, replies


def test_the_worker_survives_a_20s_redis_outage_with_a_task_in_flight(tmp_path):
    with redis_server(tmp_path / "redis") as redis:
        env, db, (first, second) = setup(tmp_path, redis.url())
        with worker(env, tmp_path / "worker.log") as running:
            running.wait_for(" ready.")
            with write_lock(db):
                enqueue_log(env, first)
                running.wait_for("Task learning.tasks.log_turn[")  # received: the message is unacknowledged
                time.sleep(1)
                redis.stop()
                running.wait_for("Connection to broker lost")
                time.sleep(20)
                assert running.process.poll() is None, running.text()[-4000:]
                assert "Unrecoverable error" not in running.text()
                mark = len(running.text())  # before the restart: the worker may reconnect while it starts
                redis.start()
            running.wait_for("Connected to ", timeout=60, after=mark)

            enqueue_log(env, second)  # sent after Redis is back
            logged(db, "second question", timeout=60)
            # The task that was in flight comes back by itself (within the visibility timeout) and is logged once.
            logged(db, "first question", timeout=VISIBILITY_S + 60)
            assert running.process.poll() is None
    (count,) = poll(db, "SELECT count(*) FROM learning_turnlog")
    assert count == 2


def test_a_task_whose_worker_is_killed_is_delivered_again_within_the_visibility_timeout(tmp_path):
    with redis_server(tmp_path / "redis") as redis:
        env, db, (first, _) = setup(tmp_path, redis.url())
        with write_lock(db), worker(env, tmp_path / "killed.log", pool="solo", concurrency=1) as doomed:
            doomed.wait_for(" ready.")
            enqueue_log(env, first)
            doomed.wait_for("Task learning.tasks.log_turn[")
            time.sleep(1)
            doomed.kill()
        killed_at = time.monotonic()
        with worker(env, tmp_path / "second.log") as survivor:
            survivor.wait_for(" ready.")
            logged(db, "first question", timeout=VISIBILITY_S + 60)
        waited = time.monotonic() - killed_at
    assert waited < VISIBILITY_S + 60  # not the transport's default hour
