"""A retraining job reads again only the turns whose conversation changed since they were logged."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chat import actions as chat_actions
from chat.models import Conversation, Message, Ticket
from knowledge.models import Entry
from learning import actions, turns
from learning.models import TurnLog

from .conftest import logged

pytestmark = pytest.mark.django_db


def as_of_yesterday() -> None:
    """Everything logged and stored a day ago, as a nightly job finds the turns of the day before."""
    yesterday = timezone.now() - timedelta(days=1)
    Conversation.objects.update(updated_at=yesterday)
    Message.objects.update(created_at=yesterday)
    Ticket.objects.update(created_at=yesterday)
    TurnLog.objects.update(updated_at=yesterday)


def refresh(kb, monkeypatch) -> tuple[int, list[str]]:
    """What ``refresh_turns`` returns, and the questions it read again."""
    seen: list[str] = []
    real = turns.refresh_turn

    def spy(question: Message) -> TurnLog:
        seen.append(question.text)
        return real(question)

    with monkeypatch.context() as patch:
        patch.setattr(turns, "refresh_turn", spy)
        count = actions.refresh_turns(kb)
    return count, seen


def test_unchanged_turns_are_not_read_again(kb, make_turn, monkeypatch):
    ship = Entry.objects.get(key="ship")
    logged(make_turn("is delivery free?", ship)[2])
    logged(make_turn("do you sell gift cards?")[2])
    as_of_yesterday()

    assert refresh(kb, monkeypatch) == (0, [])


def test_a_turn_whose_answer_got_feedback_is_read_again(kb, make_turn, monkeypatch):
    _, _, reply = make_turn("is delivery free?", Entry.objects.get(key="ship"))
    logged(reply)
    logged(make_turn("can I pay in cash?", Entry.objects.get(key="ship"))[2])
    as_of_yesterday()
    Message.objects.filter(pk=reply.pk).update(feedback=1)  # feedback stamps no time: compared with the log

    assert refresh(kb, monkeypatch) == (1, ["is delivery free?"])
    assert TurnLog.objects.get(reply=reply).feedback == 1
    assert refresh(kb, monkeypatch) == (0, [])  # written now, unchanged since


def test_a_turn_with_a_later_message_or_a_resolved_ticket_is_read_again(kb, make_turn, agent, monkeypatch):
    followed, _, reply = make_turn("is delivery free?", Entry.objects.get(key="ship"))
    logged(reply)
    escalated, _, notice = make_turn("do you sell gift cards?")
    logged(notice)
    logged(make_turn("can I pay in cash?", Entry.objects.get(key="ship"))[2])
    as_of_yesterday()
    chat_actions.add_customer_message(followed, "and to the Canary Islands?")
    chat_actions.claim(escalated.tickets.get(), agent)
    chat_actions.agent_reply(escalated, agent, "Sorry, we don't sell gift cards.")
    chat_actions.resolve(escalated, agent)

    count, read = refresh(kb, monkeypatch)
    assert (count, sorted(read)) == (2, ["do you sell gift cards?", "is delivery free?"])
    assert TurnLog.objects.get(reply=reply).follow_up
    gift_cards = TurnLog.objects.get(reply=notice)
    assert gift_cards.resolved
    assert gift_cards.resolution_text == "Sorry, we don't sell gift cards."


def test_a_later_message_that_committed_after_the_log_was_written_still_counts(kb, make_turn, monkeypatch):
    conversation, _, reply = make_turn("is delivery free?", Entry.objects.get(key="ship"))
    logged(reply)
    chat_actions.add_customer_message(conversation, "and to the Canary Islands?")
    # the log task read the conversation before the message's transaction committed, and wrote after its stamp
    TurnLog.objects.update(updated_at=timezone.now() + timedelta(seconds=20))

    assert refresh(kb, monkeypatch) == (1, ["is delivery free?"])
    assert TurnLog.objects.get(reply=reply).follow_up


def test_a_turn_just_logged_is_not_read_again(kb, make_turn, monkeypatch):
    logged(make_turn("is delivery free?", Entry.objects.get(key="ship"))[2])

    assert refresh(kb, monkeypatch) == (0, [])
