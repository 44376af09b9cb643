"""The escalation policy around the routing decision: what the conversation so far changes.

The routing decision judges one message (a request for a person, or confidence against the
threshold). Here the conversation adds: the same question again after an answer, and two unclear
messages in a row.
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
    action: str  # "answer" | "choices" | "escalate"
    reason: str = ""


def _normalised(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.lower())
    return re.sub(r"[^a-z0-9]+", " ", "".join(c for c in folded if not unicodedata.combining(c))).strip()


def judge(decision: Decision, text: str, history: list[Message]) -> Verdict:
    """``history``: the conversation's earlier customer and bot messages, oldest first."""
    if decision.outcome == Outcome.HANDOVER:
        return Verdict("escalate", decision.reason or HandoverReason.OUT_OF_SCOPE)
    last_bot = next((m for m in reversed(history) if m.role == Message.Role.BOT), None)
    if decision.answer and decision.entry is not None and not decision.entry.answer.strip():
        return Verdict("escalate", HandoverReason.OUT_OF_SCOPE)  # matched, but there is no vetted answer to give
    if decision.answer and decision.entry is not None:
        answered_before = last_bot is not None and last_bot.entry_id == decision.entry.pk
        asked_before = any(
            m.role == Message.Role.CUSTOMER and _normalised(m.text) == _normalised(text) for m in history
        )
        if answered_before or (asked_before and last_bot is not None and last_bot.entry_id is not None):
            return Verdict("escalate", HandoverReason.REPEATED_FAILURE)
        return Verdict("answer")
    # choices: a second unclear message in a row goes to a person
    if last_bot is not None and last_bot.decision.get("outcome") == Outcome.CHOICES and last_bot.entry_id is None:
        return Verdict("escalate", HandoverReason.REPEATED_FAILURE)
    return Verdict("choices")
