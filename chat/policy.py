"""The escalation policy around the routing decision: what the conversation so far changes.

The routing decision judges one message (a request for a person, a risk, or confidence: answer, offer
choices, hand over). Here the conversation adds: the same question again after an answer, and a second
unclear message right after choices were offered (the customer neither picked nor got clearer).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from chat.models import Message
from knowledge.routing import Decision
from knowledge.vocabulary import HandoverReason, Outcome


@dataclass(frozen=True)
class Verdict:
    action: Outcome
    reason: HandoverReason | None = None  # only for a hand-over


def _normalised(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.lower())
    return re.sub(r"[^a-z0-9]+", " ", "".join(c for c in folded if not unicodedata.combining(c))).strip()


def offered_choices(message: Message) -> bool:
    """A bot message that offered choices (and so answered nothing itself)."""
    return message.role == Message.Role.BOT and message.decision.get("outcome") == Outcome.CHOICES


def judge(decision: Decision, text: str, history: list[Message]) -> Verdict:
    """``history``: the conversation's earlier customer and bot messages, oldest first."""
    if decision.outcome == Outcome.HANDOVER:
        return Verdict(Outcome.HANDOVER, decision.reason or HandoverReason.OUT_OF_SCOPE)
    last_bot = next((m for m in reversed(history) if m.role == Message.Role.BOT), None)
    if decision.answer and decision.entry is not None and not decision.entry.answer.strip():
        return Verdict(Outcome.HANDOVER, HandoverReason.OUT_OF_SCOPE)  # matched, but no vetted answer to give
    if decision.answer and decision.entry is not None:
        answered_before = last_bot is not None and last_bot.entry_id == decision.entry.pk
        asked_before = any(
            m.role == Message.Role.CUSTOMER and _normalised(m.text) == _normalised(text) for m in history
        )
        if answered_before or (asked_before and last_bot is not None and last_bot.entry_id is not None):
            return Verdict(Outcome.HANDOVER, HandoverReason.REPEATED_FAILURE)
        return Verdict(Outcome.ANSWER)
    if last_bot is not None and offered_choices(last_bot):
        return Verdict(Outcome.HANDOVER, HandoverReason.REPEATED_FAILURE)  # choices again: a person does better
    return Verdict(Outcome.CHOICES)
