"""The decision's vocabulary, in one place: what the bot does with a message, and why a person takes over.

``knowledge`` owns these because ``route()`` produces them; ``chat`` stores them (``Ticket.reason``) and
``learning`` reads them back. Nothing else spells these strings.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """The three things the decision can do with one customer message."""

    ANSWER = "answer"  # answer from one entry
    CHOICES = "choices"  # offer up to three entries, plus "none of these" and "talk to a person"
    HANDOVER = "handover"  # hand the conversation to a person, with a reason


class HandoverReason(StrEnum):
    """Why a conversation went to a person (``Ticket.reason``)."""

    HUMAN_REQUEST = "human_request"
    LOW_CONFIDENCE = "low_confidence"
    OUT_OF_SCOPE = "out_of_scope"
    NO_CHOICE_FITS = "no_choice_fits"
    FRUSTRATION = "frustration"
    REPEATED_FAILURE = "repeated_failure"
    NEGATIVE_FEEDBACK = "negative_feedback"
    SYSTEM_ERROR = "system_error"
    # risk: always a person, whatever the knowledge base says
    SAFETY = "safety"
    FRAUD = "fraud"
    LEGAL = "legal"
    COMPENSATION = "compensation"
    DATA_PROTECTION = "data_protection"

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def is_risk(self) -> bool:
        return self in RISK_REASONS

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        return [(member.value, member.label) for member in cls]


_LABELS: dict[HandoverReason, str] = {
    HandoverReason.HUMAN_REQUEST: "Asked for a person",
    HandoverReason.LOW_CONFIDENCE: "Low confidence",
    HandoverReason.OUT_OF_SCOPE: "Not covered by the knowledge base",
    HandoverReason.NO_CHOICE_FITS: "None of the offered answers fitted",
    HandoverReason.FRUSTRATION: "Frustration",
    HandoverReason.REPEATED_FAILURE: "Repeated failure",
    HandoverReason.NEGATIVE_FEEDBACK: "Answer marked not helpful",
    HandoverReason.SYSTEM_ERROR: "System error",
    HandoverReason.SAFETY: "Safety or crisis",
    HandoverReason.FRAUD: "Fraud or account takeover",
    HandoverReason.LEGAL: "Legal complaint or threat",
    HandoverReason.COMPENSATION: "Compensation or chargeback",
    HandoverReason.DATA_PROTECTION: "Data-protection rights",
}

RISK_REASONS = frozenset(
    {
        HandoverReason.SAFETY,
        HandoverReason.FRAUD,
        HandoverReason.LEGAL,
        HandoverReason.COMPENSATION,
        HandoverReason.DATA_PROTECTION,
    }
)
"""Classes that always go to a person, never answered from an entry, even when a self-service entry is close."""

UNANSWERED_REASONS = frozenset(
    {
        HandoverReason.OUT_OF_SCOPE,
        HandoverReason.LOW_CONFIDENCE,
        HandoverReason.NO_CHOICE_FITS,
        HandoverReason.REPEATED_FAILURE,
    }
)
"""Hand-overs that mean the bot could not answer the question (metrics' "top unanswered", learning's negatives)."""
