"""Labelled queries replayed as confirmed conversations, through the chat's actions and the turn logging.

Each query becomes a conversation: the customer's message, the bot's real decision (answer, choices or
escalation, by ``knowledge.routing.route``), the turn log written by the same code as the Celery task, and
the outcome confirmed as the label says (the right entry, or not covered). Offered choices are picked as a
customer would (docs EVAL.md): the right entry when it is offered, otherwise "none of these". A retraining
then learns from them exactly as it learns from agent-confirmed conversations.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.contrib.auth.models import User

from chat import actions as chat_actions
from chat.models import Conversation, Message, Ticket
from chat.schemas import OtherChoice
from knowledge.evaluation import LabelledQuery
from knowledge.models import Entry, KnowledgeBase
from knowledge.vocabulary import Outcome
from learning import actions, labels, signals
from learning.models import TurnLog

if TYPE_CHECKING:
    from knowledge.routing import Decision

REPLAY_USER = "replay"


def pick_half(queries: Sequence[LabelledQuery], half: str | None, seed: int) -> list[LabelledQuery]:
    """All queries, or one half of them after a seeded shuffle (the other half stays unseen for evaluation)."""
    if half is None:
        return list(queries)
    shuffled = list(queries)
    random.Random(seed).shuffle(shuffled)
    middle = len(shuffled) // 2
    return shuffled[:middle] if half == "first" else shuffled[middle:]


def replay_agent() -> User:
    user, created = User.objects.get_or_create(username=REPLAY_USER, defaults={"is_active": False})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def replay_query(kb: KnowledgeBase, text: str, entry: Entry | None, agent: User) -> TurnLog:
    from knowledge import routing

    with signals.logging_inline():
        conversation = Conversation(knowledge_base=kb, channel=Conversation.Channel.API)
        conversation.issue_token()
        conversation.save()
        message, _ = chat_actions.add_customer_message(conversation, text)
        decision = routing.route(kb, text)
        reply: Message
        if decision.outcome == Outcome.CHOICES and decision.choices:
            reply = _pick_as_a_customer(conversation, message, decision, entry, agent)
        elif decision.answer and decision.entry is not None:
            answer = decision.entry.answer_in(chat_actions.language_of(conversation))[1]
            reply = chat_actions.record_bot_message(
                conversation,
                message,
                answer,
                decision=decision.as_dict(),
                entry_id=decision.entry.pk,
                confidence=decision.confidence,
                latency_ms=decision.latency_ms,
                model_used="replay",
            )
        else:
            _, reply = chat_actions.escalate(
                conversation,
                decision.reason or Ticket.Reason.LOW_CONFIDENCE,
                confidence=decision.confidence,
                candidates=[c.as_dict() for c in decision.candidates],
                trigger=message,
            )
            chat_actions.resolve(conversation, agent)
        log = actions.log_reply(reply)
        assert log is not None  # a reply to a customer message always makes a turn
        log = actions.confirm_turn(log, entry)
        labels.derive_for_turn(log)
    return log


def _pick_as_a_customer(
    conversation: Conversation, message: Message, decision: Decision, entry: Entry | None, agent: User
) -> Message:
    """Offer the choices, then pick the right entry if it is among them, else "none of these"."""
    offer = chat_actions.offer_choices(conversation, message, decision)
    offered = {str(o["entry_id"]) for o in offer.decision["offered"]}
    wanted = str(entry.pk) if entry is not None and str(entry.pk) in offered else OtherChoice.NONE
    pick = chat_actions.choose(conversation, offer.pk, wanted)
    if pick.entry is not None:
        chat_actions.record_bot_message(
            conversation,
            message,
            pick.entry.answer_in(chat_actions.language_of(conversation))[1],
            decision={**pick.decision().as_dict(), **pick.note()},
            entry_id=pick.entry.pk,
            confidence=pick.decision().confidence,
            model_used="replay",
        )
    else:
        chat_actions.resolve(conversation, agent)
    return offer


@dataclass
class ReplayReport:
    replayed: int = 0
    answered: int = 0
    skipped_labels: int = 0


def replay(kb: KnowledgeBase, queries: Sequence[LabelledQuery]) -> ReplayReport:
    """Replay ``queries`` (faq_id = an entry key of ``kb``, None = not covered)."""
    entries = {entry.key: entry for entry in Entry.objects.filter(knowledge_base=kb).order_by("-pk")}
    agent = replay_agent()
    report = ReplayReport()
    for query in queries:
        if query.faq_id is not None and query.faq_id not in entries:
            report.skipped_labels += 1
            continue
        log = replay_query(kb, query.text, entries.get(query.faq_id) if query.faq_id else None, agent)
        report.replayed += 1
        report.answered += int(log.decision_reason == "answer")
    return report
