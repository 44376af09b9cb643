"""When a dependency fails, the customer's message is kept, a person takes over, and the stream ends cleanly."""

from __future__ import annotations

import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from chat.models import Conversation, Message, Ticket
from knowledge import index
from knowledge.vectorstore import VectorStoreUnavailable
from tests.chat.conftest import Chat, Sent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

QUESTION = "¿Cuánto cuesta la suscripción?"


@sync_to_async
def outcome(conversation_id: str) -> tuple[str, list[tuple[str, str]], list[Ticket]]:
    conversation = Conversation.objects.get(pk=conversation_id)
    messages = [(m.role, m.text) for m in conversation.messages.order_by("id")]
    return conversation.status, messages, list(conversation.tickets.all())


async def assert_handed_to_a_person_politely(chat: Chat, sent: Sent) -> Ticket:
    assert sent.status == 200
    assert "error" not in sent.names()
    assert sent.names()[0] == "customer"
    assert sent.names()[-3:] == ["message", "status", "done"]
    notice = sent.replies[-1]
    assert notice["role"] == "system"
    assert "problema técnico" in notice["text"]
    assert "guardado" in notice["text"]  # "your message is saved"
    assert sent.of("status")[-1]["status"] == "waiting_for_agent"

    status, messages, tickets = await outcome(chat.id)
    assert status == Conversation.Status.WAITING
    assert messages[0] == ("customer", QUESTION)
    assert [role for role, _ in messages] == ["customer", "system"]
    [ticket] = tickets
    assert ticket.reason == Ticket.Reason.SYSTEM_ERROR
    assert ticket.summary
    assert QUESTION in ticket.summary
    return ticket


async def test_llm_down_hands_the_conversation_to_a_person(chat: Chat, fake_model):
    fake_model.error = ConnectionError("connection refused")
    ticket = await assert_handed_to_a_person_politely(chat, await chat.send(QUESTION))
    assert ticket.confidence is not None  # routing had run: the agent sees what the bot would have answered
    assert ticket.candidates[0]["question"] == QUESTION


async def test_llm_down_without_sse_is_still_a_json_reply_not_a_500(chat: Chat, fake_model):
    fake_model.error = ConnectionError("connection refused")
    response = await chat.post("/messages", {"text": QUESTION})
    assert response.status_code == 201
    body = response.json()
    assert body["message"]["text"] == QUESTION
    assert [r["role"] for r in body["replies"]] == ["system"]
    assert body["status"]["status"] == "waiting_for_agent"


async def test_llm_slower_than_its_timeout_hands_the_conversation_to_a_person(chat: Chat, fake_model, settings):
    settings.LLM_TIMEOUT_S = 0.3
    fake_model.delay_s = 30
    started = time.monotonic()
    sent = await chat.send(QUESTION)
    assert time.monotonic() - started < 10
    await assert_handed_to_a_person_politely(chat, sent)
    assert "token" not in sent.names()


async def test_chroma_server_unreachable_hands_the_conversation_to_a_person(chat: Chat, settings, unused_tcp_port):
    settings.CHROMA_URL = f"http://127.0.0.1:{unused_tcp_port}"
    ticket = await assert_handed_to_a_person_politely(chat, await chat.send(QUESTION))
    assert ticket.candidates == []


async def test_vector_store_error_hands_the_conversation_to_a_person(chat: Chat, monkeypatch):
    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise VectorStoreUnavailable("chroma: 503 Service Unavailable")

    monkeypatch.setattr(index, "search", unavailable)
    await assert_handed_to_a_person_politely(chat, await chat.send(QUESTION))


async def _answered_while(chat: Chat, apply_async: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from celery.app.task import Task

    monkeypatch.setattr(Task, "apply_async", apply_async)
    sent = await chat.send(QUESTION)
    assert [r["role"] for r in sent.replies] == ["bot"]
    assert sent.names()[-1] == "done"
    status, messages, tickets = await outcome(chat.id)
    assert status == Conversation.Status.BOT
    assert [role for role, _ in messages] == ["customer", "bot"]
    assert "39 €" in messages[1][1]
    assert tickets == []


async def test_a_turn_completes_with_no_celery_worker_running(chat: Chat, monkeypatch, settings):
    """The filesystem broker takes whatever the turn enqueues; nobody consumes it, and nobody waits for it."""
    from celery.app.task import Task

    from support.celery import app

    assert settings.CELERY_BROKER_URL.startswith("filesystem://")
    assert not app.conf.task_always_eager
    real_apply_async = Task.apply_async
    published: list[str] = []

    def publish(task: Task, *args: Any, **kwargs: Any) -> Any:
        published.append(task.name)
        return real_apply_async(task, *args, **kwargs)

    await _answered_while(chat, publish, monkeypatch)
    assert all(not name.startswith("chat.") for name in published)  # only after-the-fact logging, if anything


async def test_a_turn_completes_when_the_broker_refuses_messages(chat: Chat, monkeypatch):
    from kombu.exceptions import OperationalError

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("broker unreachable")

    await _answered_while(chat, refuse, monkeypatch)


async def test_after_a_failed_turn_the_message_is_in_the_history_for_the_agent(chat: Chat, fake_model, agent):
    from chat import actions

    fake_model.error = ConnectionError("connection refused")
    await chat.send(QUESTION)
    [ticket] = (await outcome(chat.id))[2]
    await sync_to_async(actions.claim)(ticket, agent)
    history = await chat.history()
    assert [m["role"] for m in history["messages"]] == ["customer", "system", "system"]
    assert history["messages"][0]["text"] == QUESTION
    assert await sync_to_async(Message.objects.filter(role="customer", text=QUESTION).count)() == 1
