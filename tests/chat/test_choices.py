"""Choices: the bot offers up to three entries; the customer picks one, "none of these" or "a person".

Routing is made to offer choices at its seam (``routing_offers``); everything after it is the product's.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from chat.models import Conversation, Message, Ticket
from knowledge.models import Entry
from learning import labels
from learning.actions import log_reply
from learning.models import LabelledExample
from tests.chat.conftest import Chat, Sent
from tests.chat.test_bad_input import assert_error
from tests.chat.test_generation import knowledge_block

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

UNCLEAR_ES = "lo de la bici mensual"
UNCLEAR_EN = "the monthly bike thing"
OFFERED = ("rd-price", "rd-pause", "rd-cancel")


@sync_to_async
def entries(*keys: str) -> list[Entry]:
    return [Entry.objects.get(key=key) for key in keys]


@sync_to_async
def message(pk: int) -> Message:
    return Message.objects.get(pk=pk)


@sync_to_async
def tickets(conversation_id: str) -> list[Ticket]:
    return list(Ticket.objects.filter(conversation_id=conversation_id).order_by("id"))


@sync_to_async
def bot_and_system_messages(conversation_id: str) -> list[tuple[str, str]]:
    rows = Message.objects.filter(conversation_id=conversation_id).exclude(role=Message.Role.CUSTOMER).order_by("id")
    return [(m.role, m.text) for m in rows]


async def offered(chat: Chat, routing_offers: Any, text: str = UNCLEAR_ES) -> tuple[Sent, int]:
    routing_offers(*OFFERED, texts={text})
    sent = await chat.send(text)
    [offer] = sent.replies
    return sent, offer["id"]


# --- offering ------------------------------------------------------------------------------------
async def test_unclear_question_is_answered_with_choices_stored_on_one_bot_message(chat: Chat, routing_offers):
    price, pause, cancel = await entries(*OFFERED)
    sent, offer_id = await offered(chat, routing_offers)

    assert sent.names() == ["customer", "message", "choices", "done"]
    [offer] = sent.replies
    assert offer["role"] == "bot"
    assert offer["text"] == "¿Te refieres a una de estas?"
    assert offer["sources"] == []
    expected = [{"id": str(e.pk), "title": e.question} for e in (price, pause, cancel)]
    assert sent.of("choices") == [{"message_id": offer_id, "offered": expected, "picked": None}]
    assert offer["choices"] == {"offered": expected, "picked": None}

    stored = await message(offer_id)
    assert stored.entry_id is None
    assert stored.decision["outcome"] == "choices"
    assert stored.decision["offered"] == [{"entry_id": e.pk, "title": e.question} for e in (price, pause, cancel)]
    assert stored.decision["picked"] is None
    assert await tickets(chat.id) == []
    assert (await chat.history())["messages"][-1]["choices"] == {"offered": expected, "picked": None}


async def test_english_customer_gets_the_choices_in_english(chat: Chat, routing_offers):
    sent, _ = await offered(chat, routing_offers, UNCLEAR_EN)
    assert sent.replies[0]["text"] == "Did you mean one of these?"
    titles = [c["title"] for c in sent.of("choices")[0]["offered"]]
    assert titles == [
        "How much is the subscription?",
        "Can I pause my subscription during holidays?",
        "How do I cancel my subscription?",
    ]


async def test_a_retried_message_sends_the_same_choices_again(chat: Chat, routing_offers):
    routing_offers(*OFFERED, texts={UNCLEAR_ES})
    first = await chat.send(UNCLEAR_ES, client_id="c-1")
    again = await chat.send(UNCLEAR_ES, client_id="c-1")
    assert again.of("choices") == first.of("choices")
    assert len(await bot_and_system_messages(chat.id)) == 1


# --- picking an entry ----------------------------------------------------------------------------
async def test_picking_an_offered_entry_answers_from_it_like_any_answer(chat: Chat, routing_offers):
    [pause] = await entries("rd-pause")
    _, offer_id = await offered(chat, routing_offers)

    picked = await chat.choose(offer_id, str(pause.pk))
    assert picked.status == 200
    names = picked.names()
    assert names.count("token") >= 3
    assert names[-2:] == ["message", "done"]
    [answer] = picked.replies
    assert answer["role"] == "bot"
    assert answer["text"] == pause.answer
    assert "".join(t["text"] for t in picked.of("token")).strip() == pause.answer
    assert answer["sources"] == [{"title": pause.question, "url": pause.url}]

    stored = await message(answer["id"])
    assert stored.entry_id == pause.pk
    assert stored.reply_to_id == (await message(offer_id)).reply_to_id  # the same turn as the question
    assert stored.decision["picked"] == str(pause.pk)
    assert stored.decision["picked_from"] == offer_id
    assert (await message(offer_id)).decision["picked"] == str(pause.pk)
    assert (await chat.history())["messages"][1]["choices"]["picked"] == str(pause.pk)

    response = await chat.post(f"/messages/{answer['id']}/feedback", {"helpful": True})  # 👍 works as on any answer
    assert response.status_code == 200
    assert (await message(answer["id"])).feedback == 1
    assert await tickets(chat.id) == []


async def test_an_english_customer_is_answered_in_english_from_the_picked_entry(chat: Chat, routing_offers):
    [price] = await entries("rd-price")
    _, offer_id = await offered(chat, routing_offers, UNCLEAR_EN)
    picked = await chat.choose(offer_id, price.pk)  # a number is accepted too
    assert picked.replies[0]["text"] == price.translations["en"]["answer"]


async def test_a_pick_is_a_positive_label_for_the_picked_entry(chat: Chat, routing_offers):
    [pause] = await entries("rd-pause")
    _, offer_id = await offered(chat, routing_offers)
    picked = await chat.choose(offer_id, str(pause.pk))

    @sync_to_async
    def derived() -> list[tuple[str, int | None, str]]:
        log = log_reply(Message.objects.get(pk=picked.replies[0]["id"]))
        assert log is not None
        return [(label.kind, label.entry_id, label.rule) for label in labels.derive_for_turn(log)]

    assert await derived() == [(LabelledExample.Kind.POSITIVE, pause.pk, labels.CHOICE_PICKED)]


async def test_the_picked_answer_is_generated_from_the_picked_entry_alone(chat: Chat, routing_offers, fake_model):
    [pause] = await entries("rd-pause")
    _, offer_id = await offered(chat, routing_offers)
    fake_model.replies = ["Sí, puedes pausarla hasta 2 meses al año [1]."]
    picked = await chat.choose(offer_id, str(pause.pk))
    [prompt] = fake_model.received
    context = knowledge_block(prompt)
    assert pause.question in context
    assert context.count("<entry ") == 1
    assert picked.replies[0]["sources"] == [{"title": pause.question, "url": pause.url}]


async def test_without_sse_a_pick_comes_back_as_one_json_document(chat: Chat, routing_offers):
    [price] = await entries("rd-price")
    _, offer_id = await offered(chat, routing_offers)
    picked = await chat.choose(offer_id, str(price.pk), stream=False)
    assert picked.status == 200
    [(_, body)] = picked.events
    assert body["picked"] == str(price.pk)
    assert [r["text"] for r in body["replies"]] == [price.answer]
    assert body["status"] == {"status": "bot"}


async def test_the_same_pick_again_is_answered_once(chat: Chat, routing_offers):
    [price] = await entries("rd-price")
    _, offer_id = await offered(chat, routing_offers)
    first = await chat.choose(offer_id, str(price.pk))
    again = await chat.choose(offer_id, str(price.pk))
    assert again.status == 200
    assert [r["id"] for r in again.replies] == [r["id"] for r in first.replies]
    assert len(await bot_and_system_messages(chat.id)) == 2  # the choices and one answer


# --- none of these, a person ---------------------------------------------------------------------
async def test_none_of_these_hands_over_with_the_offered_entries_in_the_summary(chat: Chat, routing_offers):
    price, pause, cancel = await entries(*OFFERED)
    _, offer_id = await offered(chat, routing_offers)

    picked = await chat.choose(offer_id, "none")
    assert picked.status == 200
    assert picked.names() == ["message", "status", "done"]
    assert picked.replies[0]["role"] == "system"
    assert picked.of("status")[0]["status"] == "waiting_for_agent"
    [ticket] = await tickets(chat.id)
    assert ticket.reason == Ticket.Reason.NO_CHOICE_FITS
    assert ticket.trigger_message_id == (await message(offer_id)).reply_to_id
    assert ticket.confidence == pytest.approx(0.55)
    for entry in (price, pause, cancel):
        assert entry.question in ticket.summary
    assert UNCLEAR_ES in ticket.summary
    assert (await message(offer_id)).decision["picked"] == "none"


async def test_talk_to_a_person_among_the_choices_hands_over_as_a_human_request(chat: Chat, routing_offers):
    [price] = await entries("rd-price")
    _, offer_id = await offered(chat, routing_offers)
    picked = await chat.choose(offer_id, "person")
    assert picked.of("status")[0]["status"] == "waiting_for_agent"
    [ticket] = await tickets(chat.id)
    assert ticket.reason == Ticket.Reason.HUMAN_REQUEST
    assert ticket.confidence is None
    assert price.question in ticket.summary

    again = await chat.choose(offer_id, "person")  # a retry: the same notice, no second one
    assert [r["id"] for r in again.replies] == [r["id"] for r in picked.replies]
    assert len(await tickets(chat.id)) == 1
    assert [role for role, _ in await bot_and_system_messages(chat.id)] == ["bot", "system"]


# --- bad input -----------------------------------------------------------------------------------
async def test_choosing_on_an_unknown_message_is_not_found(chat: Chat, routing_offers):
    _, offer_id = await offered(chat, routing_offers)
    assert_error(await chat.post(f"/messages/{offer_id + 1000}/choose", {"choice": "none"}), 404, "not_found")
    customer_id = (await message(offer_id)).reply_to_id
    assert_error(await chat.post(f"/messages/{customer_id}/choose", {"choice": "none"}), 404, "not_found")


async def test_choosing_on_a_message_that_offered_no_choices_is_refused(chat: Chat):
    sent = await chat.send("¿Cuánto cuesta la suscripción?")
    [answer] = sent.replies
    response = await chat.post(f"/messages/{answer['id']}/choose", {"choice": "none"})
    assert_error(response, 422, "no_choices")
    assert (await chat.history())["status"] == "bot"


async def test_an_entry_that_was_not_offered_is_refused(chat: Chat, routing_offers):
    [battery] = await entries("rd-battery")
    _, offer_id = await offered(chat, routing_offers)
    response = await chat.post(f"/messages/{offer_id}/choose", {"choice": str(battery.pk)})
    assert_error(response, 422, "unknown_choice")
    assert (await message(offer_id)).decision["picked"] is None  # still open
    assert (await chat.choose(offer_id, "none")).status == 200


async def test_a_second_different_pick_is_a_conflict(chat: Chat, routing_offers):
    price, pause, _ = await entries(*OFFERED)
    _, offer_id = await offered(chat, routing_offers)
    await chat.choose(offer_id, str(price.pk))
    assert_error(await chat.post(f"/messages/{offer_id}/choose", {"choice": str(pause.pk)}), 409, "already_chosen")
    assert_error(await chat.post(f"/messages/{offer_id}/choose", {"choice": "none"}), 409, "already_chosen")
    assert await tickets(chat.id) == []
    assert (await message(offer_id)).decision["picked"] == str(price.pk)


async def test_choices_of_an_earlier_message_expire_once_the_customer_writes_again(chat: Chat, routing_offers):
    [price] = await entries("rd-price")
    _, offer_id = await offered(chat, routing_offers)
    await chat.send("¿Qué formas de pago aceptáis?")
    response = await chat.post(f"/messages/{offer_id}/choose", {"choice": str(price.pk)})
    assert_error(response, 409, "choices_expired")


async def test_another_customers_token_cannot_pick(http, chat: Chat, routing_offers):
    _, offer_id = await offered(chat, routing_offers)
    other = Chat(http)
    await other.start()
    stranger = Chat(http, id=chat.id, token=other.token)
    assert_error(await stranger.post(f"/messages/{offer_id}/choose", {"choice": "none"}), 404, "not_found")
    nobody = Chat(http, id=chat.id, token="")
    assert_error(await nobody.post(f"/messages/{offer_id}/choose", {"choice": "none"}), 401, "unauthorized")
    assert await tickets(chat.id) == []


@pytest.mark.parametrize(
    "body",
    [None, [], {}, {"choice": ""}, {"choice": "maybe"}, {"choice": True}, {"choice": "none", "extra": 1}],
    ids=["no-body", "list", "missing", "empty", "word", "bool", "extra-field"],
)
async def test_a_malformed_pick_is_a_bad_request(chat: Chat, routing_offers, body):
    _, offer_id = await offered(chat, routing_offers)
    response = await chat.http.post(
        f"/api/conversations/{chat.id}/messages/{offer_id}/choose",
        content=b"{not json" if body is None else None,
        json=body if body is not None else None,
        headers={**chat.auth, "Content-Type": "application/json"},
    )
    assert_error(response, 400, "invalid_request")
    assert (await message(offer_id)).decision["picked"] is None


async def test_choosing_in_an_unknown_conversation_is_not_found(chat: Chat, routing_offers):
    _, offer_id = await offered(chat, routing_offers)
    ghost = Chat(chat.http, id=str(uuid.uuid4()), token=chat.token)
    assert_error(await ghost.post(f"/messages/{offer_id}/choose", {"choice": "none"}), 404, "not_found")


async def test_picking_an_entry_once_a_person_owns_the_conversation_is_a_conflict(chat: Chat, routing_offers):
    [price] = await entries("rd-price")
    _, offer_id = await offered(chat, routing_offers)
    assert (await chat.post("/handoff", {})).status_code == 200
    response = await chat.post(f"/messages/{offer_id}/choose", {"choice": str(price.pk)})
    assert_error(response, 409, "conflict")
    assert await sync_to_async(lambda: Conversation.objects.get(pk=chat.id).status)() == "waiting_for_agent"


# --- the chain's database work (issue 13) --------------------------------------------------------
async def test_routing_runs_where_django_manages_the_connection(chat: Chat, monkeypatch):
    """Never on asyncio's default executor (LangChain's fallback for sync steps), whose connections leak."""
    from chat import chain

    threads: list[str] = []
    real_route = chain.route

    def route(kb: Any, text: str) -> Any:
        threads.append(threading.current_thread().name)
        return real_route(kb, text)

    monkeypatch.setattr(chain, "route", route)
    sent = await chat.send("¿Cuánto cuesta la suscripción?")
    assert [r["role"] for r in sent.replies] == ["bot"]
    assert len(threads) == 1
    assert not threads[0].startswith("asyncio")
