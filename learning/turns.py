"""Turn logs: one redacted record per customer message and what followed, kept up to date as feedback,
escalations and agents' resolutions arrive."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from chat.models import Conversation, Message, Ticket
from knowledge.models import Entry, KnowledgeBase, Source
from knowledge.redaction import conversation_redactor
from learning.models import Split, TurnLog

logger = logging.getLogger(__name__)

CALIBRATION_PERCENT = 20
"""Share of conversations whose labels choose the threshold (kept apart from training, like the held-out slice)."""

RESOLUTION_MIN_CHARS = 40
"""An agent reply containing at least this much of an entry's answer counts as resolving with that entry."""


def customer_hash(value: str) -> str:
    """A keyed hash of an e-mail or host-site id: erasure can find the customer, a reader of the logs cannot."""
    if not value.strip():
        return ""
    key = hashlib.sha256(f"learning-customer:{settings.SECRET_KEY}".encode()).digest()
    return hmac.new(key, value.strip().lower().encode(), hashlib.sha256).hexdigest()


def split_for(conversation_id: uuid.UUID | str) -> str:
    """Deterministic by conversation: held out, calibration or training, the same on every run and machine."""
    bucket = int(hashlib.sha256(str(conversation_id).encode()).hexdigest()[:8], 16) % 100
    if bucket < settings.LEARNING_HOLDOUT_PERCENT:
        return Split.HOLDOUT
    if bucket < settings.LEARNING_HOLDOUT_PERCENT + CALIBRATION_PERCENT:
        return Split.CALIBRATION
    return Split.TRAIN


def log_reply(reply: Message) -> TurnLog | None:
    """Log (or refresh) the turn this bot/system reply belongs to. Idempotent: one log per customer message."""
    if reply.reply_to_id is None or reply.role not in (Message.Role.BOT, Message.Role.SYSTEM):
        return None
    question = Message.objects.select_related("conversation").filter(pk=reply.reply_to_id).first()
    if question is None or question.role != Message.Role.CUSTOMER:
        return None
    return refresh_turn(question)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _resolution_entry(conversation: Conversation, question: Message, agent_texts: Sequence[str]) -> Entry | None:
    """The entry an agent resolved with: a published draft made from this question, or an answer they quoted."""
    drafted = (
        Entry.objects.answerable()
        .filter(knowledge_base_id=conversation.knowledge_base_id, source__kind=Source.Kind.MANUAL)
        .filter(question=question.text.strip())
        .order_by("-pk")
        .first()
    )
    if drafted is not None:
        return drafted
    said = _normalise(" ".join(agent_texts))
    if len(said) < RESOLUTION_MIN_CHARS:
        return None
    for entry in (
        Entry.objects.answerable()
        .filter(knowledge_base_id=conversation.knowledge_base_id)
        .only("pk", "answer", "translations")
    ):
        answers = [entry.answer] + [str(v.get("answer") or "") for v in entry.translations.values()]
        if any(len(a) >= RESOLUTION_MIN_CHARS and _normalise(a) in said for a in answers):
            return entry
    return None


def refresh_turn(question: Message) -> TurnLog:
    """Write what is known now about the turn that ``question`` opened: decision, answer, feedback, outcome."""
    conversation = question.conversation
    replies = list(question.replies.filter(role__in=[Message.Role.BOT, Message.Role.SYSTEM]).order_by("id"))
    # a choices turn's first bot reply is the offer; the answer is the reply from the entry the customer picked
    answer = next((m for m in replies if m.role == Message.Role.BOT and m.entry_id), None) or next(
        (m for m in replies if m.role == Message.Role.BOT), None
    )
    first = answer or (replies[0] if replies else None)
    decision: dict[str, Any] = (first.decision if first else {}) or {}
    ticket = Ticket.objects.filter(trigger_message=question).order_by("-pk").first()
    next_turn = (
        Message.objects.filter(conversation=conversation, role=Message.Role.CUSTOMER, id__gt=question.pk)
        .filter(replies__role__in=[Message.Role.BOT, Message.Role.SYSTEM])
        .order_by("id")
        .values_list("id", flat=True)
        .first()
    )
    agent_replies = Message.objects.filter(conversation=conversation, role=Message.Role.AGENT, id__gt=question.pk)
    if next_turn is not None:
        agent_replies = agent_replies.filter(id__lt=next_turn)
    agent_texts = list(agent_replies.order_by("id").values_list("text", flat=True))
    # a PIN or password the customer typed anywhere in the conversation is removed wherever it is echoed
    typed = conversation.messages.filter(role=Message.Role.CUSTOMER).values_list("text", flat=True)
    private = conversation_redactor(conversation.customer_name, typed)
    existing = TurnLog.objects.filter(question=question).first()
    resolution = existing.resolution_entry if existing and existing.resolution_entry_id else None
    if resolution is None and ticket is not None and not (existing and existing.confirmed_out_of_scope):
        resolution = _resolution_entry(conversation, question, agent_texts)
    values: dict[str, Any] = {
        "knowledge_base_id": conversation.knowledge_base_id,
        "conversation": conversation,
        "reply": first,
        "text": private(question.text),
        "reply_text": private(first.text) if first else "",
        "language": conversation.language or conversation.knowledge_base.default_language,
        "decision_reason": str(decision.get("reason") or ""),
        "candidates": decision.get("candidates") or [],
        "confidence": answer.confidence if answer else decision.get("confidence"),
        "entry_id": answer.entry_id if answer else None,
        "latency_ms": first.latency_ms if first else None,
        "routing_version": decision.get("routing_version"),
        "model_used": first.model_used if first else "",
        "embedding_model": settings.EMBEDDING_MODEL,
        "feedback": answer.feedback if answer else None,
        "follow_up": Message.objects.filter(
            conversation=conversation, role=Message.Role.CUSTOMER, id__gt=question.pk
        ).exists(),
        "escalated": ticket is not None,
        "escalation_reason": ticket.reason if ticket else "",
        "resolution_text": private("\n".join(agent_texts)),
        "resolution_entry": resolution,
        "resolved": bool(existing and existing.resolved)
        or (ticket is not None and ticket.status == Ticket.Status.RESOLVED),
        "split": split_for(conversation.pk),
        "customer_email_hash": customer_hash(conversation.customer_email),
        "customer_ref_hash": customer_hash(conversation.customer_ref),
        "created_at": question.created_at,
    }
    log, _ = TurnLog.objects.update_or_create(question=question, defaults=values)
    return log


def refresh_turns(kb: KnowledgeBase, until: Any = None) -> int:
    """Bring the kept logs of ``kb`` up to date (feedback and resolutions arrive after the turn is logged).

    Only the turns whose conversation changed since they were last written are read again (``changed_turns``);
    the others would be written back as they are. Returns how many were read again.

    The ids are read first: a cursor left open while writing would, on SQLite, fail with "database is locked"
    as soon as another connection (the job's heartbeat) writes in between."""
    logs = changed_turns(TurnLog.objects.filter(knowledge_base=kb))
    if until is not None:
        logs = logs.filter(created_at__lte=until)
    ids = list(logs.order_by("pk").values_list("question_id", flat=True))
    for start in range(0, len(ids), REFRESH_BATCH):
        for question in Message.objects.filter(pk__in=ids[start : start + REFRESH_BATCH]).select_related(
            "conversation__knowledge_base"
        ):
            refresh_turn(question)
    return len(ids)


REFRESH_BATCH = 500


REFRESH_SLACK = timedelta(minutes=1)
"""A later message stamped up to this long before its turn's log was written still counts as new: a message is
stamped when it is created, and its transaction may commit after the log task read the conversation."""


def changed_turns(logs: QuerySet[TurnLog]) -> QuerySet[TurnLog]:
    """The logs whose turn may read differently now than when they were last written.

    That is: a message after the turn's logged reply, stamped after the log was written (less REFRESH_SLACK);
    a conversation or ticket change stamped after it; the answer's feedback is not the logged one (feedback
    stamps no time); or an escalated turn without a resolution entry whose knowledge base has a manual entry
    changed since (a published draft). What ``refresh_turn`` reads that none of these stamps does not change
    after the turn."""
    message = Message.objects.filter(
        conversation_id=OuterRef("conversation_id"),
        id__gt=OuterRef("seen"),
        created_at__gt=OuterRef("updated_at") - REFRESH_SLACK,
    )
    ticket = Ticket.objects.filter(conversation_id=OuterRef("conversation_id")).filter(
        Q(created_at__gt=OuterRef("updated_at"))
        | Q(claimed_at__gt=OuterRef("updated_at"))
        | Q(resolved_at__gt=OuterRef("updated_at"))
    )
    drafted = Entry.objects.filter(
        knowledge_base_id=OuterRef("knowledge_base_id"),
        source__kind=Source.Kind.MANUAL,
        updated_at__gt=OuterRef("updated_at"),
    )
    return logs.alias(seen=Coalesce("reply_id", "question_id")).filter(
        Q(conversation__updated_at__gt=F("updated_at"))
        | Exists(message)
        | Exists(ticket)
        | Q(reply__feedback__isnull=False) & (Q(feedback__isnull=True) | ~Q(feedback=F("reply__feedback")))
        | Q(escalated=True, resolution_entry__isnull=True) & Exists(drafted)
    )


@transaction.atomic
def confirm_turn(log: TurnLog, entry: Entry | None) -> TurnLog:
    """Record what the right outcome was: answered by ``entry``, or not covered by any entry (None)."""
    log.resolution_entry = entry
    log.confirmed_out_of_scope = entry is None
    log.resolved = True
    log.save(update_fields=["resolution_entry", "confirmed_out_of_scope", "resolved", "updated_at"])
    return log


def purge_expired_logs(now: Any = None) -> int:
    """Delete turn logs older than LEARNING_RETENTION_DAYS; derived labels stay (they are redacted and unlinked)."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.LEARNING_RETENTION_DAYS)
    deleted, _ = TurnLog.objects.filter(created_at__lt=cutoff).delete()
    logger.info("expired turn logs deleted", extra={"deleted": deleted, "cutoff": cutoff.isoformat()})
    return deleted
