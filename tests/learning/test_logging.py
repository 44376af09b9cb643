"""Turn logging through Celery after commit, redaction before storage, retention, and the customers' rights."""

from __future__ import annotations

import ast
import json
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from chat import actions as chat_actions
from chat.models import Conversation
from knowledge.models import Entry, Example
from learning import actions, exports, labels, schedule
from learning.models import LabelledExample, TurnLog

from .conftest import logged

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def test_a_reply_is_logged_by_the_task_after_commit_and_redacted(
    make_turn, celery_eager, django_capture_on_commit_callbacks
):
    ship = Entry.objects.get(key="ship")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _, question, reply = make_turn(
            "Soy Ana López, mi correo es ana@example.es y mi móvil +34 612 345 678: ¿cuánto cuesta el envío?",
            ship,
            name="Ana López",
            email="ana@example.es",
        )
    assert not TurnLog.objects.exists()  # nothing happens inside the chat's transaction
    for callback in callbacks:
        callback()
    log = TurnLog.objects.get(question=question)
    assert log.text == "Soy [NAME], mi correo es [EMAIL] y mi móvil [PHONE]: ¿cuánto cuesta el envío?"
    assert (log.reply, log.entry, log.decision_reason, log.routing_version) == (reply, ship, "answer", 3)
    assert log.candidates[0]["entry_id"] == ship.pk
    assert log.latency_ms == 12.5
    assert log.model_used == "extractive"
    assert log.language == "es"
    assert log.customer_email_hash == actions.customer_hash("ANA@example.es ")
    assert "ana@example.es" not in json.dumps([log.text, log.reply_text, log.resolution_text, log.candidates])


def test_an_escalation_is_logged_and_feedback_refreshes_the_turn(make_turn):
    _, _, reply = make_turn("¿hacéis descuentos a estudiantes?")
    log = logged(reply)
    assert log.escalated
    assert log.escalation_reason == "out_of_scope"
    assert log.entry is None
    conversation, _question, reply = make_turn("is delivery free?", Entry.objects.get(key="ship"))
    chat_actions.give_feedback(conversation, reply.pk, helpful=False)
    log = logged(reply)
    assert (log.feedback, log.escalated, log.escalation_reason) == (-1, True, "negative_feedback")


def test_logging_twice_keeps_one_log_per_turn(make_turn):
    _, _, reply = make_turn("is delivery free?", Entry.objects.get(key="ship"))
    logged(reply)
    logged(reply)
    assert TurnLog.objects.count() == 1


def test_split_is_a_fixed_function_of_the_conversation_id(settings):
    settings.LEARNING_HOLDOUT_PERCENT = 20
    ids = [f"00000000-0000-0000-0000-{n:012d}" for n in range(400)]
    splits = [actions.split_for(i) for i in ids]
    assert splits == [actions.split_for(i) for i in ids]
    assert 0.1 < splits.count("holdout") / len(ids) < 0.3


def test_retention_deletes_old_logs_but_keeps_redacted_labels(make_turn, settings):
    settings.LEARNING_RETENTION_DAYS = 30
    conversation, _, reply = make_turn("what are the delivery charges?", Entry.objects.get(key="ship"))
    chat_actions.give_feedback(conversation, reply.pk, helpful=True)
    log = logged(reply)
    labels.derive_for_turn(log)
    TurnLog.objects.filter(pk=log.pk).update(created_at=timezone.now() - timedelta(days=31))
    _, _, recent = make_turn("is delivery free?", Entry.objects.get(key="ship"))
    logged(recent)
    assert actions.purge_expired_logs() == 1
    assert TurnLog.objects.count() == 1
    assert LabelledExample.objects.get().turn is None


def test_export_and_erase_one_customer(kb, make_turn, tmp_path):
    ship = Entry.objects.get(key="ship")
    for email, text in (
        ("ana@example.es", "what are the delivery charges, Ana here"),
        ("bob@example.com", "is delivery free?"),
    ):
        conversation, _, reply = make_turn(text, ship, email=email)
        chat_actions.give_feedback(conversation, reply.pk, helpful=True)
        labels.derive_for_turn(logged(reply))
    LabelledExample.objects.update(split="train")
    actions.sync_learned_examples(kb, [(label.text, label.entry_id) for label in LabelledExample.objects.all()])
    folder = exports.export_dataset(kb, exports.exports_root() / "shop" / "job-1")

    out = tmp_path / "ana.json"
    call_command("export_customer", "--email", "ana@example.es", "--out", str(out), stderr=StringIO())
    data = json.loads(out.read_text())
    assert next(m["text"] for m in data["conversations"][0]["messages"]) == "what are the delivery charges, Ana here"
    assert len(data["turn_logs"]) == 1
    assert len(data["labelled_examples"]) == 1

    stdout = StringIO()
    call_command("erase_customer", "--email", "ana@example.es", stdout=stdout)
    assert (
        "erased: 1 conversations, 1 turn logs, 1 labels, 1 learned phrasings; 1 exports rewritten" in stdout.getvalue()
    )
    assert not Conversation.objects.filter(customer_email="ana@example.es").exists()
    assert list(TurnLog.objects.values_list("text", flat=True)) == ["is delivery free?"]
    assert list(LabelledExample.objects.values_list("text", flat=True)) == ["is delivery free?"]
    assert list(Example.objects.filter(origin="conversation").values_list("text", flat=True)) == ["is delivery free?"]
    exported = (folder / "hf" / "train.jsonl").read_text() + (folder / "chat" / "train.jsonl").read_text()
    assert "Ana here" not in exported
    assert "is delivery free?" in exported


def test_the_nightly_schedule_is_created_once(db):
    schedule.ensure_schedule()
    schedule.ensure_schedule()
    task = PeriodicTask.objects.get(name=schedule.NIGHTLY_RETRAINING)
    assert task.task == "learning.tasks.retrain_all"
    assert task.crontab.hour == "3"
    assert task.enabled
    assert PeriodicTask.objects.filter(name=schedule.DAILY_PURGE).count() == 1


def test_chat_and_knowledge_never_import_learning():
    for app in ("chat", "knowledge"):
        for path in (ROOT / app).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = (
                    [alias.name for alias in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                assert not any(name.split(".")[0] == "learning" for name in names), f"{path} imports learning"
