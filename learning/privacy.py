"""Customers' rights over what the learning loop keeps: access (an export) and erasure."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from chat.models import Conversation, Message
from knowledge.models import Example, KnowledgeBase
from learning.models import LabelledExample, RetrainingJob, TurnLog
from learning.turns import customer_hash
from learning.versions import LEARNED_ORIGIN

logger = logging.getLogger(__name__)


class LearningError(Exception):
    """A learning request that cannot be done as asked (shown to ops as is)."""


@dataclass(frozen=True)
class Customer:
    email: str = ""
    ref: str = ""

    def __post_init__(self) -> None:
        if not self.email.strip() and not self.ref.strip():
            raise LearningError("Give the customer's e-mail or their id on the host site.")

    def conversations(self) -> Any:
        query = Q()
        if self.email.strip():
            query |= Q(customer_email__iexact=self.email.strip())
        if self.ref.strip():
            query |= Q(customer_ref=self.ref.strip())
        return Conversation.objects.filter(query)

    def hashes(self) -> Q:
        query = Q(pk__in=[])
        if self.email.strip():
            query |= Q(customer_email_hash=customer_hash(self.email))
        if self.ref.strip():
            query |= Q(customer_ref_hash=customer_hash(self.ref))
        return query


def _customer_data(customer: Customer) -> tuple[list[uuid.UUID], Any, Any]:
    conversation_ids = list(customer.conversations().values_list("pk", flat=True))
    logs = TurnLog.objects.filter(Q(conversation_id__in=conversation_ids) | customer.hashes())
    conversation_ids = sorted({*conversation_ids, *logs.values_list("conversation_id", flat=True)}, key=str)
    labels = LabelledExample.objects.filter(
        Q(conversation_id__in=conversation_ids) | Q(turn__in=logs) | customer.hashes()
    )
    return conversation_ids, logs, labels


def export_customer(customer: Customer) -> dict[str, Any]:
    """Everything kept about one customer (right of access): conversations, turn logs, derived labels."""
    conversation_ids, logs, labels = _customer_data(customer)
    conversations = []
    for conversation in Conversation.objects.filter(pk__in=conversation_ids).order_by("created_at"):
        conversations.append(
            {
                "id": str(conversation.pk),
                "knowledge_base": conversation.knowledge_base.slug,
                "created_at": conversation.created_at.isoformat(),
                "customer_name": conversation.customer_name,
                "customer_email": conversation.customer_email,
                "customer_ref": conversation.customer_ref,
                "language": conversation.language,
                "messages": [
                    {"role": m.role, "text": m.text, "created_at": m.created_at.isoformat(), "feedback": m.feedback}
                    for m in conversation.messages.exclude(role=Message.Role.NOTE).order_by("id")
                ],
            }
        )
    return {
        "customer": {"email": customer.email, "ref": customer.ref},
        "exported_at": timezone.now().isoformat(),
        "conversations": conversations,
        "turn_logs": [
            {
                "conversation": str(log.conversation_id),
                "created_at": log.created_at.isoformat(),
                "text": log.text,
                "reply_text": log.reply_text,
                "decision": log.decision_reason,
                "feedback": log.feedback,
                "escalated": log.escalated,
            }
            for log in logs.order_by("created_at")
        ],
        "labelled_examples": [
            {"text": label.text, "kind": label.kind, "entry": label.entry_id, "rule": label.rule}
            for label in labels.order_by("created_at")
        ],
    }


@dataclass(frozen=True)
class Erasure:
    conversations: int
    turn_logs: int
    labelled_examples: int
    learned_phrasings: int
    exports_rewritten: int


def erase_customer(customer: Customer) -> Erasure:
    """Right of erasure: the customer's conversations, logs, labels, learned phrasings and export rows go.

    A learned phrasing is removed from the index, and from the record of the versions that learned it, unless
    another customer's label still backs the same text. Routing models already trained keep no texts, only
    weights; the next retraining no longer sees the customer.
    """
    from learning import exports

    conversation_ids, logs, labels = _customer_data(customer)
    texts = set(labels.values_list("text", flat=True))
    with transaction.atomic():
        label_count = labels.count()
        labels.delete()
        log_count = logs.count()
        logs.delete()
        conversations = Conversation.objects.filter(pk__in=conversation_ids)
        conversation_count = conversations.count()
        conversations.delete()
        still_backed = set(LabelledExample.objects.filter(text__in=texts).values_list("text", flat=True))
        erased_texts = texts - still_backed
        for job in RetrainingJob.objects.exclude(artefacts__examples=None):
            kept = [pair for pair in job.artefacts.get("examples", []) if pair[0] not in erased_texts]
            if len(kept) != len(job.artefacts.get("examples", [])):
                RetrainingJob.objects.filter(pk=job.pk).update(artefacts={**job.artefacts, "examples": kept})
    phrasings = 0
    for kb in KnowledgeBase.objects.filter(examples__origin=LEARNED_ORIGIN, examples__text__in=erased_texts).distinct():
        from knowledge import index

        rows = Example.objects.filter(knowledge_base=kb, origin=LEARNED_ORIGIN, text__in=erased_texts)
        ids = list(rows.values_list("pk", flat=True))
        index.remove_examples(kb, ids)
        rows.delete()
        phrasings += len(ids)
    rewritten = exports.rewrite_all()
    result = Erasure(conversation_count, log_count, label_count, phrasings, rewritten)
    logger.info("customer erased", extra={"conversations": result.conversations, "turn_logs": log_count})
    return result
