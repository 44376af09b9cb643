"""The widget API end to end over ASGI: answers from the right entry, history, feedback, hand-off to people."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from chat import actions, api
from chat.models import Conversation, Message, Ticket
from tests.chat.conftest import Chat, parse_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@sync_to_async
def stored(conversation_id: str) -> list[tuple[str, str]]:
    return [(m.role, m.text) for m in Message.objects.filter(conversation_id=conversation_id).order_by("id")]


@sync_to_async
def conversation(conversation_id: str) -> Conversation:
    return Conversation.objects.get(pk=conversation_id)


@sync_to_async
def tickets(conversation_id: str) -> list[Ticket]:
    return list(Ticket.objects.filter(conversation_id=conversation_id).order_by("id"))


async def test_starting_a_conversation_returns_its_id_token_and_bot_status(http, demo_kb):
    response = await http.post("/api/conversations", json={"kb": "default", "language": "es"})
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "bot"
    assert body["language"] == "es"
    assert len(body["token"]) >= 32
    row = await conversation(body["id"])
    assert row.token_matches(body["token"])
    assert body["token"] not in row.token_hash  # only the hash is kept


async def test_widget_config_names_the_knowledge_base(http, demo_kb):
    response = await http.get("/api/widget-config?kb=default")
    assert response.status_code == 200
    assert response.json()["title"] == "Rodamar"


async def test_spanish_question_is_answered_from_the_matching_entry_with_its_source(chat: Chat, entry):
    price = await sync_to_async(entry)("rd-price")
    sent = await chat.send("¿Cuánto cuesta la suscripción?")
    assert sent.status == 200
    [reply] = sent.replies
    assert reply["role"] == "bot"
    assert reply["text"] == price.answer
    assert reply["sources"] == [{"title": price.question, "url": "https://rodamar.example/precios"}]
    assert reply["confidence"] >= 0.8
    assert sent.names()[-1] == "done"


async def test_english_question_gets_the_english_text_of_the_entry(chat: Chat, entry):
    cancel = await sync_to_async(entry)("rd-cancel")
    sent = await chat.send("How do I cancel my subscription?")
    [reply] = sent.replies
    assert reply["text"] == cancel.translations["en"]["answer"]
    assert reply["text"].startswith("You can cancel at any time")
    assert reply["sources"] == [
        {"title": "How do I cancel my subscription?", "url": "https://rodamar.example/cancelar"}
    ]
    assert (await conversation(chat.id)).language == "en"


async def test_answer_streams_as_several_tokens_before_the_final_message(chat: Chat):
    sent = await chat.send("¿Cuánto tarda en llegar la bici?")
    names = sent.names()
    assert names[0] == "customer"
    assert names.count("token") >= 5
    final = names.index("message", 1)
    assert all(name == "token" for name in names[1:final])
    assert "".join(t["text"] for t in sent.of("token")).strip() == sent.replies[0]["text"]
    assert names[final:] == ["message", "done"]


async def test_without_sse_the_turn_comes_back_as_one_json_document(chat: Chat):
    response = await chat.post("/messages", {"text": "¿Qué formas de pago aceptáis?"})
    assert response.status_code == 201
    body = response.json()
    assert body["message"]["role"] == "customer"
    assert [r["role"] for r in body["replies"]] == ["bot"]
    assert "SEPA" in body["replies"][0]["text"]


async def test_history_shows_the_customer_message_and_the_bot_answer(chat: Chat):
    await chat.send("¿Aceptáis tarjeta de crédito?")
    history = await chat.history()
    assert history["status"] == "bot"
    assert [m["role"] for m in history["messages"]] == ["customer", "bot"]
    assert history["messages"][0]["text"] == "¿Aceptáis tarjeta de crédito?"
    assert "Visa" in history["messages"][1]["text"]


async def test_thumbs_up_is_stored_and_the_bot_keeps_the_conversation(chat: Chat):
    sent = await chat.send("¿Cuánta autonomía tiene la batería?")
    answer_id = sent.replies[0]["id"]
    response = await chat.post(f"/messages/{answer_id}/feedback", {"helpful": True})
    assert response.status_code == 200
    assert response.json()["status"] == "bot"
    assert response.json()["notice"] is None
    assert await sync_to_async(lambda: Message.objects.get(pk=answer_id).feedback)() == 1
    assert await tickets(chat.id) == []


async def test_thumbs_down_escalates_with_negative_feedback(chat: Chat):
    sent = await chat.send("¿Cuánta autonomía tiene la batería?")
    answer_id = sent.replies[0]["id"]
    response = await chat.post(f"/messages/{answer_id}/feedback", {"helpful": False})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "waiting_for_agent"
    assert body["notice"]["role"] == "system"
    assert "persona" in body["notice"]["text"]
    [ticket] = await tickets(chat.id)
    assert ticket.reason == Ticket.Reason.NEGATIVE_FEEDBACK
    assert await sync_to_async(lambda: Message.objects.get(pk=answer_id).feedback)() == -1


async def test_feedback_on_a_customer_message_is_refused(chat: Chat):
    sent = await chat.send("¿Cuánta autonomía tiene la batería?")
    response = await chat.post(f"/messages/{sent.of('customer')[0]['id']}/feedback", {"helpful": False})
    assert response.status_code == 404
    assert (await conversation(chat.id)).status == "bot"


async def test_handoff_button_escalates_as_a_human_request(chat: Chat):
    await chat.send("¿Cuánto cuesta la suscripción?")
    response = await chat.post("/handoff", {})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "waiting_for_agent"
    assert body["queue"]["position"] == 1
    [ticket] = await tickets(chat.id)
    assert ticket.reason == Ticket.Reason.HUMAN_REQUEST
    assert ticket.summary


async def test_asking_for_a_person_in_words_escalates_as_a_human_request(chat: Chat):
    sent = await chat.send("quiero hablar con una persona")
    assert sent.names() == ["customer", "message", "status", "done"]
    assert sent.replies[0]["role"] == "system"
    assert sent.of("status")[0]["status"] == "waiting_for_agent"
    [ticket] = await tickets(chat.id)
    assert ticket.reason == Ticket.Reason.HUMAN_REQUEST
    assert (await conversation(chat.id)).status == Conversation.Status.WAITING


async def _escalate_and_claim(chat: Chat, agent: Any) -> Ticket:
    await chat.send("quiero hablar con una persona")
    [ticket] = await tickets(chat.id)
    return await sync_to_async(actions.claim)(ticket, agent)


async def test_bot_never_answers_while_an_agent_owns_the_conversation(chat: Chat, agent):
    await _escalate_and_claim(chat, agent)
    sent = await chat.send("¿Cuánto cuesta la suscripción?")
    assert sent.names() == ["customer", "status", "done"]
    assert sent.of("status")[0]["status"] == "with_agent"
    roles = [role for role, _ in await stored(chat.id)]
    assert roles[-1] == "customer"
    assert "bot" not in roles


async def test_bot_stays_silent_while_the_conversation_waits_in_the_queue(chat: Chat):
    await chat.send("quiero hablar con una persona")
    sent = await chat.send("¿Cuánto cuesta la suscripción?")
    assert sent.names() == ["customer", "status", "done"]
    assert sent.of("status")[0]["status"] == "waiting_for_agent"


async def test_agent_reply_reaches_the_customer_as_an_event_with_the_agent_name(chat: Chat, agent, monkeypatch):
    monkeypatch.setattr(api, "EVENTS_WINDOW_S", 0.3)
    monkeypatch.setattr(api, "EVENTS_POLL_S", 0.05)
    await _escalate_and_claim(chat, agent)
    last_seen = (await chat.history())["messages"][-1]["id"]
    row = await conversation(chat.id)
    await sync_to_async(actions.agent_reply)(row, agent, "Hola, soy Ana. Te ayudo con tu suscripción.")
    await sync_to_async(actions.add_note)(row, agent, "internal: check the invoice")

    response = await chat.get("/events", params={"after": last_seen})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    messages = [data for name, data in events if name == "message"]
    assert [(m["role"], m["author_name"], m["text"]) for m in messages] == [
        ("agent", "Ana", "Hola, soy Ana. Te ayudo con tu suscripción.")
    ]
    assert events[-1] == ("done", {})


async def test_after_hand_back_the_bot_answers_again(chat: Chat, agent):
    await _escalate_and_claim(chat, agent)
    await sync_to_async(actions.hand_back)(await conversation(chat.id), agent)
    sent = await chat.send("¿Cuánto cuesta la suscripción?")
    assert [r["role"] for r in sent.replies] == ["bot"]
    assert "39 €" in sent.replies[0]["text"]
    assert (await conversation(chat.id)).status == "bot"
    assert [t.status for t in await tickets(chat.id)] == [Ticket.Status.RELEASED]


async def test_handoff_button_while_an_agent_owns_it_reports_the_real_status(chat: Chat, agent):
    await _escalate_and_claim(chat, agent)
    response = await chat.post("/handoff", {})
    assert response.status_code == 200
    assert (await conversation(chat.id)).status == "with_agent"
    assert response.json()["status"] == "with_agent"
