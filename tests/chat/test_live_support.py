"""Issue 14, the customer's side over the widget API: queue place and wait, identity, contact, starting over,
the closing message with its satisfaction question, and the bot picking up a question a person left."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from chat import actions
from chat.models import Conversation, Message, Ticket
from chat.serializers import message_dict
from tests.chat.conftest import Chat

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

SECRET = "per-site-secret-for-tests"


@sync_to_async
def row(conversation_id: str) -> Conversation:
    return Conversation.objects.get(pk=conversation_id)


@sync_to_async
def tickets_of(conversation_id: str) -> list[Ticket]:
    return list(Ticket.objects.filter(conversation_id=conversation_id).order_by("id"))


@sync_to_async
def system_texts(conversation_id: str) -> list[str]:
    return list(
        Message.objects.filter(conversation_id=conversation_id, role=Message.Role.SYSTEM)
        .order_by("id")
        .values_list("text", flat=True)
    )


async def queued(http: Any, text: str = "quiero hablar con una persona") -> Chat:
    customer = Chat(http)
    await customer.start()
    await customer.send(text)
    return customer


# --- the queue: place and wait -----------------------------------------------------------------------
async def test_two_customers_queued_at_the_same_instant_get_different_places(http, demo_kb):
    first, second = await queued(http), await queued(http)
    same_instant = timezone.now()
    await sync_to_async(Ticket.objects.update)(created_at=same_instant)
    places = [(await first.history())["queue"]["position"], (await second.history())["queue"]["position"]]
    assert sorted(places) == [1, 2]


async def test_without_claim_history_the_wait_is_the_configured_fallback_per_place(http, demo_kb, settings):
    settings.SUPPORT_EXPECTED_WAIT_MINUTES = 4
    await queued(http)
    second = await queued(http)
    queue = (await second.history())["queue"]
    assert (queue["position"], queue["expected_wait_minutes"], queue["wait_over"]) == (2, 8, False)


async def test_the_wait_comes_from_measured_claim_times_not_the_place_times_five(http, demo_kb, agent, settings):
    settings.SUPPORT_EXPECTED_WAIT_MINUTES = 5

    @sync_to_async
    def history_of_quick_claims() -> None:
        # Earlier today five tickets each waited 2 minutes, claimed 1 minute apart.
        conversation = Conversation.objects.create(knowledge_base=demo_kb)
        now = timezone.now()
        for i in range(5):
            claimed = now - timedelta(minutes=10 - i)
            Ticket.objects.create(
                conversation=conversation,
                reason="human_request",
                status=Ticket.Status.RESOLVED,
                created_at=claimed - timedelta(minutes=2),
                claimed_at=claimed,
            )

    await history_of_quick_claims()
    waiting = [await queued(http) for _ in range(8)]
    queue = (await waiting[-1].history())["queue"]
    assert queue["position"] == 8
    # 2 minutes for the first in line, 1 more for each of the 7 ahead: 9, not 8 x 5 = 40.
    assert queue["expected_wait_minutes"] == 9


async def test_long_waits_are_rounded_and_capped_never_thousands_of_minutes():
    assert actions.round_wait(0.2) == (1, False)
    assert actions.round_wait(7.2) == (8, False)
    assert actions.round_wait(23) == (25, False)
    assert actions.round_wait(61) == (75, False)
    assert actions.round_wait(3270) == (actions.MAX_WAIT_MINUTES, True)


async def test_the_place_moves_up_when_an_agent_claims_the_ticket_ahead(http, demo_kb, agent):
    first, second = await queued(http), await queued(http)
    assert (await second.history())["queue"]["position"] == 2
    [ticket] = await tickets_of(first.id)
    await sync_to_async(actions.claim)(ticket, agent)
    assert (await second.history())["queue"]["position"] == 1


async def test_the_queue_notice_carries_no_number_that_would_go_stale(http, demo_kb):
    customer = await queued(http)
    [notice] = await system_texts(customer.id)
    assert "cola" in notice
    assert not any(ch.isdigit() for ch in notice)


# --- identity signed by the host site ----------------------------------------------------------------
async def test_a_signed_identity_is_stored_as_verified(http, demo_kb, settings):
    settings.CHAT_IDENTITY_SECRET = SECRET
    signature = actions.identity_signature("u-42", "Ana@Example.com", SECRET)
    customer = Chat(http)
    started = await customer.start(user_id="u-42", user_email="Ana@Example.com", user_hmac=signature)
    assert started["identity"] == "verified"
    stored = await row(customer.id)
    assert (stored.customer_ref, stored.customer_email, stored.identity_verified) == ("u-42", "Ana@Example.com", True)


@pytest.mark.parametrize(
    "identity",
    [
        {"user_id": "u-42", "user_email": "ana@example.com"},  # unsigned
        {"user_id": "u-42", "user_email": "ana@example.com", "user_hmac": "0" * 64},  # badly signed
        {"user_id": "u-1", "user_email": "ana@example.com", "user_hmac": "sign:u-42"},  # signed for someone else
    ],
)
async def test_unsigned_or_badly_signed_identity_is_ignored_and_the_chat_still_starts(
    http, demo_kb, settings, identity
):
    settings.CHAT_IDENTITY_SECRET = SECRET
    if identity.get("user_hmac") == "sign:u-42":
        identity["user_hmac"] = actions.identity_signature("u-42", "ana@example.com", SECRET)
    customer = Chat(http)
    started = await customer.start(**identity)
    assert started["identity"] == "ignored"
    stored = await row(customer.id)
    assert (stored.customer_ref, stored.customer_email, stored.identity_verified) == ("", "", False)


async def test_without_a_configured_secret_no_identity_is_trusted(http, demo_kb, settings):
    settings.CHAT_IDENTITY_SECRET = ""
    signature = actions.identity_signature("u-42", "ana@example.com", "")
    customer = Chat(http)
    started = await customer.start(user_id="u-42", user_email="ana@example.com", user_hmac=signature)
    assert started["identity"] == "ignored"
    assert not (await row(customer.id)).identity_verified


# --- contact left in the widget ---------------------------------------------------------------------
async def test_the_customer_leaves_a_name_and_email_for_a_reply(chat: Chat):
    response = await chat.post("/contact", {"name": "Lucía", "email": "lucia@example.es"})
    assert response.status_code == 200
    assert response.json()["customer"] == {"name": "Lucía", "email": "lucia@example.es", "verified": False}
    stored = await row(chat.id)
    assert (stored.customer_name, stored.customer_email) == ("Lucía", "lucia@example.es")
    assert (await chat.history())["customer"]["email"] == "lucia@example.es"


async def test_a_bad_email_is_refused_and_a_verified_one_is_not_overwritten(http, demo_kb, settings):
    settings.CHAT_IDENTITY_SECRET = SECRET
    customer = Chat(http)
    signature = actions.identity_signature("u-7", "real@example.com", SECRET)
    await customer.start(user_id="u-7", user_email="real@example.com", user_hmac=signature)
    bad = await customer.post("/contact", {"email": "not-an-address"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_request"
    await customer.post("/contact", {"name": "Real", "email": "someone-else@example.com"})
    stored = await row(customer.id)
    assert (stored.customer_name, stored.customer_email) == ("Real", "real@example.com")


# --- starting over ------------------------------------------------------------------------------------
async def test_starting_over_closes_the_open_ticket_instead_of_orphaning_it(http, demo_kb):
    customer = await queued(http)
    response = await customer.post("/close", {})
    assert response.status_code == 200
    [ticket] = await tickets_of(customer.id)
    assert ticket.status == Ticket.Status.WITHDRAWN
    assert (await row(customer.id)).status == Conversation.Status.RESOLVED
    assert "ha cerrado esta conversación" in (await system_texts(customer.id))[-1]


# --- resolving: one closing message, then satisfaction ----------------------------------------------------
async def test_resolving_sends_one_closing_message_that_asks_for_a_rating_and_stores_it(http, demo_kb, agent):
    customer = await queued(http, "I want to talk to a person please")
    [ticket] = await tickets_of(customer.id)
    await sync_to_async(actions.claim)(ticket, agent)
    before = len(await system_texts(customer.id))
    await sync_to_async(actions.resolve)(await row(customer.id), agent)
    closing = (await system_texts(customer.id))[before:]
    assert len(closing) == 1
    assert "1 to 5" in closing[0]

    history = await customer.history()
    last = history["messages"][-1]
    assert last["csat"] == {"rating": None}
    response = await customer.post(f"/messages/{last['id']}/csat", {"rating": 4})
    assert response.status_code == 200
    assert response.json()["message"]["csat"] == {"rating": 4}
    [ticket] = await tickets_of(customer.id)
    assert ticket.csat == 4


@pytest.mark.parametrize("rating", [0, 6, "5", 4.5])
async def test_a_rating_outside_one_to_five_is_refused(http, demo_kb, agent, rating):
    customer = await queued(http)
    await sync_to_async(actions.resolve)(await row(customer.id), agent)
    last = (await customer.history())["messages"][-1]
    response = await customer.post(f"/messages/{last['id']}/csat", {"rating": rating})
    assert response.status_code == 400


async def test_rating_a_message_that_asked_nothing_is_not_found(chat: Chat):
    await chat.send("¿Cuánto cuesta la suscripción?")
    answer = (await chat.history())["messages"][-1]
    response = await chat.post(f"/messages/{answer['id']}/csat", {"rating": 5})
    assert response.status_code == 404


# --- language ------------------------------------------------------------------------------------------
async def test_every_message_says_the_conversations_language_so_the_widget_can_follow_it(http, demo_kb):
    customer = Chat(http)
    await customer.start(language="es")
    sent = await customer.send("How much is the subscription?")
    assert sent.of("customer")[0]["language"] == "en"
    assert {m["language"] for m in (await customer.history())["messages"]} == {"en"}


# --- agents: who may release, resolve, hand back ---------------------------------------------------------
@pytest.fixture
def other_agent(agent: Any) -> Any:
    from django.contrib.auth.models import User

    from chat.roles import AGENTS, ensure_roles

    user = User.objects.create_user("bruno", password="x", is_staff=True)
    user.groups.add(ensure_roles()[AGENTS])
    return user


@pytest.mark.parametrize("act", [actions.release, actions.resolve, actions.hand_back])
async def test_only_the_agent_who_holds_the_conversation_may_release_resolve_or_hand_it_back(
    http, demo_kb, agent, other_agent, act
):
    from chat.errors import Conflict

    customer = await queued(http)
    [ticket] = await tickets_of(customer.id)
    await sync_to_async(actions.claim)(ticket, agent)
    with pytest.raises(Conflict, match="ana has this conversation"):
        await sync_to_async(act)(await row(customer.id), other_agent)
    stored = await row(customer.id)
    assert (stored.status, stored.assignee_id) == (Conversation.Status.WITH_AGENT, agent.pk)


async def test_any_agent_may_resolve_a_ticket_nobody_holds_yet(http, demo_kb, other_agent):
    customer = await queued(http)
    await sync_to_async(actions.resolve)(await row(customer.id), other_agent)
    assert (await row(customer.id)).status == Conversation.Status.RESOLVED


# --- hand back: nobody's question is dropped -------------------------------------------------------------
async def test_hand_back_answers_the_question_the_customer_asked_while_waiting(http, demo_kb, agent):
    customer = await queued(http)
    [ticket] = await tickets_of(customer.id)
    await sync_to_async(actions.claim)(ticket, agent)
    await customer.send("¿Cuánto cuesta la suscripción?")  # a person holds it: the bot stays silent
    pending = await sync_to_async(actions.hand_back)(await row(customer.id), agent)
    assert pending is not None
    assert pending.text == "¿Cuánto cuesta la suscripción?"
    messages = (await customer.history())["messages"]
    assert messages[-1]["role"] == "bot"
    assert "39 €" in messages[-1]["text"]


async def test_hand_back_with_nothing_pending_adds_no_bot_turn(http, demo_kb, agent):
    customer = await queued(http)
    [ticket] = await tickets_of(customer.id)
    await sync_to_async(actions.claim)(ticket, agent)
    await sync_to_async(actions.agent_reply)(await row(customer.id), agent, "Hola, ¿en qué te ayudo?")
    assert await sync_to_async(actions.hand_back)(await row(customer.id), agent) is None
    roles = [m["role"] for m in (await customer.history())["messages"]]
    assert "bot" not in roles


async def test_a_message_without_its_conversation_loaded_says_no_language():
    message = Message(role=Message.Role.SYSTEM, text="x", created_at=timezone.now(), decision={})
    assert message_dict(message)["language"] is None
