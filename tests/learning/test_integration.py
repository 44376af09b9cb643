"""The learning loop on a real Celery worker and a real Redis broker, all in subprocesses on a temp SQLite DB.

The worker logs a chat turn that the web side committed (post_save → on_commit → Redis → worker), and
runs a retraining job enqueued by `manage.py retrain --enqueue`; the test polls the database file.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.processes import stop

from .conftest import FAQ, QUERIES

ROOT = Path(__file__).resolve().parents[2]

SETUP = f"""
from knowledge.actions import get_or_create_knowledge_base, source_for_location, sync_source
from django.core.management import call_command
kb = get_or_create_knowledge_base("shop", "Shop")
sync_source(source_for_location(kb, {str(FAQ)!r}))
call_command("replay", {str(QUERIES)!r}, "--kb", "shop", "--half", "first", "--seed", "0")
"""

CHAT_TURN = """
from chat import actions
from chat.models import Conversation
from knowledge.models import Entry, KnowledgeBase
conversation = Conversation(knowledge_base=KnowledgeBase.objects.get(slug="shop"), customer_email="eva@example.org")
conversation.issue_token()
conversation.save()
question, _ = actions.add_customer_message(conversation, "Soy Eva (eva@example.org), ¿cuánto cuesta el envío?")
ship = Entry.objects.get(key="ship")
actions.record_bot_message(conversation, question, ship.answer, decision={"reason": "answer"}, entry_id=ship.pk)
"""


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def poll(db: Path, query: str, timeout: float = 60.0) -> tuple:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as connection:
            row = connection.execute(query).fetchone()
        if row is not None:
            return row
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for: {query}")


@pytest.mark.integration
def test_a_real_worker_logs_turns_and_runs_a_retraining_job(redis_url, tmp_path):
    db = tmp_path / "db.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{db}",
        "CELERY_BROKER_URL": redis_url,
        "DATA_DIR": str(tmp_path / "data"),  # its own secret key, broker folder, exports and vector cache
        "CHROMA_PATH": str(tmp_path / "chroma"),
        "DJANGO_SETTINGS_MODULE": "support.settings",
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "warning",
    }
    manage(env, "migrate", "--no-input")
    manage(env, "shell", "-c", SETUP)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "support", "worker", "--pool", "solo", "--concurrency", "1",
         "--loglevel", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        manage(env, "shell", "-c", CHAT_TURN)
        (text,) = poll(db, "SELECT text FROM learning_turnlog WHERE text LIKE '%envío%'")
        assert text == "Soy [NAME] ([EMAIL]), ¿cuánto cuesta el envío?"  # the name a customer states is redacted too

        assert "queued" in manage(env, "retrain", "--kb", "shop", "--enqueue")
        status, log = poll(
            db,
            "SELECT status, log FROM learning_retrainingjob WHERE status IN ('promoted', 'refused', 'failed')",
            timeout=90,
        )
        assert status in ("promoted", "refused"), log
        (versions,) = poll(db, "SELECT count(*) FROM knowledge_routingversion")
        assert versions == 1
    finally:
        stop(worker, timeout=15)
