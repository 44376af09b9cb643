"""When the bot hands over: unclear twice, not covered, the same question again, outside business hours."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from chat.models import Conversation, Message, Ticket
from chat.policy import Verdict, judge
from knowledge.actions import get_or_create_knowledge_base
from knowledge.models import Entry
from knowledge.routing import Candidate, Decision
from knowledge.vocabulary import HandoverReason, Outcome
from tests.chat.conftest import Chat


@sync_to_async
def tickets(conversation_id: str) -> list[Ticket]:
    return list(Ticket.objects.filter(conversation_id=conversation_id).order_by("id"))


@sync_to_async
def status_of(conversation_id: str) -> str:
    return Conversation.objects.get(pk=conversation_id).status


def assert_handed_over(ticket: Ticket, reason: str) -> None:
    assert ticket.reason == reason
    assert ticket.status == Ticket.Status.OPEN
    assert ticket.summary.startswith(f"Reason: {Ticket.Reason(reason).label}.")
    assert ticket.trigger_message_id is not None


def assert_told_what_happens_next(sent: Any, language: str = "es") -> None:
    notice = sent.replies[-1]
    assert notice["role"] == "system"
    assert ("cola" if language == "es" else "queue") in notice["text"]
    assert sent.of("status")[-1]["status"] == "waiting_for_agent"
    assert sent.of("status")[-1]["queue"]["position"] == 1


# --- through the API, with the real routing ----------------------------------------------------
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("What's the weather going to be like tomorrow?", "Will it rain this weekend?"),
        ("¿Qué tiempo hará mañana?", "¿Va a llover el fin de semana?"),
    ],
)
@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_unclear_message_gets_choices_once_then_a_second_one_is_escalated(
    chat: Chat, routing_offers, first, second
):
    routing_offers("rd-price", "rd-pause", "rd-cancel")
    sent = await chat.send(first)
    [offer] = sent.replies
    assert offer["role"] == "bot"
    assert "?" in offer["text"]
    assert [len(c["offered"]) for c in sent.of("choices")] == [3]
    assert not sent.of("status")
    assert await tickets(chat.id) == []

    sent = await chat.send(second)
    assert_told_what_happens_next(sent, "en" if first.startswith("What") else "es")
    [ticket] = await tickets(chat.id)
    assert_handed_over(ticket, Ticket.Reason.REPEATED_FAILURE)
    assert ticket.confidence is not None
    assert ticket.confidence < 0.8
    assert ticket.candidates
    assert {"entry_id", "question", "score"} <= set(ticket.candidates[0])
    assert first in ticket.summary  # the agent sees what was asked before


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_message_nothing_in_the_knowledge_base_covers_is_escalated_out_of_scope(http, chat_env):
    await sync_to_async(get_or_create_knowledge_base)("empty", "Empty")
    customer = Chat(http)
    await customer.start(kb="empty")
    sent = await customer.send("¿Cuánto cuesta la suscripción?")
    assert_told_what_happens_next(sent)
    [ticket] = await tickets(customer.id)
    assert_handed_over(ticket, Ticket.Reason.OUT_OF_SCOPE)
    assert ticket.confidence is not None


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.parametrize("question", ["¿Cuál es la capital de Francia?", "what are black holes"])
async def test_a_question_far_from_every_entry_of_a_small_faq_is_handed_over_without_choices(chat: Chat, question):
    # with 14 entries, the closest one stands out from the rest even for unrelated questions: the capital of France
    # was answered from "¿En qué ciudades estáis?", and most such questions got three unrelated buttons
    sent = await chat.send(question)
    assert not sent.of("choices")
    assert [reply["role"] for reply in sent.replies] == ["system"]  # no entry's answer
    [ticket] = await tickets(chat.id)
    assert_handed_over(ticket, Ticket.Reason.OUT_OF_SCOPE)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_same_question_right_after_its_answer_is_escalated_as_repeated_failure(chat: Chat):
    first = await chat.send("¿Cómo cancelo mi suscripción?")
    assert [r["role"] for r in first.replies] == ["bot"]
    again = await chat.send("¿Cómo cancelo mi suscripción?")
    assert [r["role"] for r in again.replies] == ["system"]
    assert_told_what_happens_next(again)
    [ticket] = await tickets(chat.id)
    assert_handed_over(ticket, Ticket.Reason.REPEATED_FAILURE)
    assert ticket.confidence is not None
    assert ticket.confidence >= 0.8
    assert ticket.candidates[0]["question"] == "¿Cómo cancelo mi suscripción?"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_different_question_after_an_answer_is_answered(chat: Chat):
    await chat.send("¿Cómo cancelo mi suscripción?")
    sent = await chat.send("¿Cuánta autonomía tiene la batería?")
    assert [r["role"] for r in sent.replies] == ["bot"]
    assert "km" in sent.replies[0]["text"]
    assert await tickets(chat.id) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_human_request_ticket_carries_a_summary_and_the_status_names_the_wait(chat: Chat, settings):
    settings.SUPPORT_EXPECTED_WAIT_MINUTES = 7  # no claims measured yet: the configured wait
    sent = await chat.send("pásame con un agente, por favor")
    assert_told_what_happens_next(sent)
    # The wait changes while the customer waits: it travels in the status (the widget's banner), not the text.
    assert sent.of("status")[-1]["queue"]["expected_wait_minutes"] == 7
    [ticket] = await tickets(chat.id)
    assert_handed_over(ticket, Ticket.Reason.HUMAN_REQUEST)
    assert "pásame con un agente" in ticket.summary
    assert ticket.by_email is False


def _hours_excluding_now() -> str:
    today = timezone.localtime().weekday()
    other = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(today + 3) % 7]
    return f"{other} 09:00-10:00"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_outside_business_hours_the_ticket_is_answered_by_email_and_the_notice_says_so(http, demo_kb, settings):
    settings.BUSINESS_HOURS = _hours_excluding_now()
    customer = Chat(http)
    await customer.start(customer_email="lucia@example.com")
    sent = await customer.send("quiero hablar con una persona")
    notice = sent.replies[-1]["text"]
    assert "correo electrónico" in notice
    assert "lucia@example.com" in notice
    day = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")[
        (timezone.localtime().weekday() + 3) % 7
    ]
    assert f"({day}, 09:00–10:00, hora de Madrid)" in notice  # the hours in Spanish, naming their time zone
    assert sent.of("status")[-1]["queue"]["by_email"] is True
    [ticket] = await tickets(customer.id)
    assert ticket.by_email is True


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_outside_business_hours_an_english_customer_is_told_about_email_in_english(chat: Chat, settings):
    settings.BUSINESS_HOURS = _hours_excluding_now()
    sent = await chat.send("I want to talk to a human, please")
    assert "by e-mail" in sent.replies[-1]["text"]
    assert "09:00–10:00, Madrid time)" in sent.replies[-1]["text"]
    [ticket] = await tickets(chat.id)
    assert ticket.by_email is True
    assert await status_of(chat.id) == "waiting_for_agent"


# --- the policy on its own ---------------------------------------------------------------------
def _decision(outcome: Outcome, entry_pk: int | None = None, confidence: float = 0.5, **kw: Any) -> Decision:
    entry = Entry(pk=entry_pk, question="q", answer="a") if entry_pk else None
    candidates = [Candidate(entry_pk or 1, "q", confidence)]
    choices = candidates if outcome == Outcome.CHOICES else []
    return Decision(
        outcome, confidence, entry if outcome == Outcome.ANSWER else None, choices, candidates=candidates, **kw
    )


def _bot(entry_pk: int | None = None, outcome: Outcome = Outcome.ANSWER) -> Message:
    return Message(role=Message.Role.BOT, text="…", entry_id=entry_pk, decision={"outcome": outcome})


def _customer(text: str) -> Message:
    return Message(role=Message.Role.CUSTOMER, text=text, created_at=timezone.now() - timedelta(minutes=1))


def test_confident_first_question_is_answered():
    assert judge(_decision(Outcome.ANSWER, 3, 0.95), "¿precio?", []) == Verdict(Outcome.ANSWER)


def test_out_of_scope_question_is_escalated():
    decision = _decision(Outcome.HANDOVER, reason=HandoverReason.OUT_OF_SCOPE)
    assert judge(decision, "¿qué tiempo hace?", []) == Verdict(Outcome.HANDOVER, HandoverReason.OUT_OF_SCOPE)


def test_first_unclear_question_gets_choices():
    assert judge(_decision(Outcome.CHOICES, 3), "eh", []) == Verdict(Outcome.CHOICES)


def test_unclear_question_right_after_choices_is_escalated():
    history = [_customer("eh"), _bot(None, Outcome.CHOICES)]
    verdict = judge(_decision(Outcome.CHOICES, 3), "mmm", history)
    assert verdict == Verdict(Outcome.HANDOVER, HandoverReason.REPEATED_FAILURE)


def test_unclear_question_after_a_picked_choice_was_answered_gets_choices_again():
    history = [_customer("eh"), _bot(None, Outcome.CHOICES), _bot(3)]
    assert judge(_decision(Outcome.CHOICES, 4), "¿y otra cosa?", history) == Verdict(Outcome.CHOICES)


def test_human_request_is_escalated_whatever_came_before():
    history = [_customer("¿precio?"), _bot(3)]
    decision = _decision(Outcome.HANDOVER, reason=HandoverReason.HUMAN_REQUEST)
    assert judge(decision, "una persona", history) == Verdict(Outcome.HANDOVER, HandoverReason.HUMAN_REQUEST)


def test_same_question_differently_accented_after_an_answer_is_repeated_failure():
    history = [_customer("¿Cómo cancelo?"), _bot(4), _customer("¿y la batería?"), _bot(5)]
    verdict = judge(_decision(Outcome.ANSWER, 4, 0.9), "como cancelo", history)
    assert verdict == Verdict(Outcome.HANDOVER, HandoverReason.REPEATED_FAILURE)


def test_answer_matching_the_entry_just_given_is_repeated_failure():
    history = [_customer("¿Cómo cancelo?"), _bot(4)]
    verdict = judge(_decision(Outcome.ANSWER, 4, 0.9), "pero dónde está el botón de cancelar", history)
    assert verdict == Verdict(Outcome.HANDOVER, HandoverReason.REPEATED_FAILURE)
