"""What the learning loop does to data: log turns, answer customers' privacy requests, switch routing versions.

Admin actions, commands and tasks call these; the heavier pieces (labels, retraining, exports) live in
their own modules and call back here for the shared steps.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from chat.models import Conversation, Message, Ticket
from knowledge.models import Entry, Example, KnowledgeBase, RoutingVersion, Source
from learning.models import LabelledExample, RetrainingJob, Split, TurnLog
from learning.redaction import redact, secrets_in

logger = logging.getLogger(__name__)

LEARNED_ORIGIN = "conversation"
"""``knowledge.Example.origin`` of phrasings the learning loop adds; the loop owns exactly these rows."""

CALIBRATION_PERCENT = 20
"""Share of conversations whose labels choose the threshold (kept apart from training, like the held-out slice)."""

RESOLUTION_MIN_CHARS = 40
"""An agent reply containing at least this much of an entry's answer counts as resolving with that entry."""


class LearningError(Exception):
    """A learning request that cannot be done as asked (shown to ops as is)."""


# --- who and which slice ------------------------------------------------------------------------
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


# --- logging turns ------------------------------------------------------------------------------
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
    known = [conversation.customer_name] if conversation.customer_name else []
    # a PIN or password the customer typed anywhere in the conversation is removed wherever it is echoed
    typed = conversation.messages.filter(role=Message.Role.CUSTOMER).values_list("text", flat=True)
    secrets = sorted({value for text in typed for value in secrets_in(text)})
    existing = TurnLog.objects.filter(question=question).first()
    resolution = existing.resolution_entry if existing and existing.resolution_entry_id else None
    if resolution is None and ticket is not None and not (existing and existing.confirmed_out_of_scope):
        resolution = _resolution_entry(conversation, question, agent_texts)
    values: dict[str, Any] = {
        "knowledge_base_id": conversation.knowledge_base_id,
        "conversation": conversation,
        "reply": first,
        "text": redact(question.text, known, secrets),
        "reply_text": redact(first.text, known, secrets) if first else "",
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
        "resolution_text": redact("\n".join(agent_texts), known, secrets),
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
    """Bring every kept log of ``kb`` up to date (feedback and resolutions arrive after the turn is logged)."""
    logs = TurnLog.objects.filter(knowledge_base=kb).select_related("question__conversation")
    if until is not None:
        logs = logs.filter(created_at__lte=until)
    count = 0
    for log in logs.iterator():
        refresh_turn(log.question)
        count += 1
    return count


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


# --- the learned phrasings of a routing version --------------------------------------------------
def learned_examples_of(version: RoutingVersion | None) -> list[tuple[str, int | None]]:
    """The learned (text, entry id) pairs ``version`` was trained with; none for a version the loop did not make."""
    if version is None:
        return []
    job = RetrainingJob.objects.filter(candidate=version).exclude(artefacts__examples=None).first()
    pairs = job.artefacts.get("examples", []) if job else []
    return [(str(text), int(entry_id) if entry_id is not None else None) for text, entry_id in pairs]


def sync_learned_examples(kb: KnowledgeBase, desired: Iterable[tuple[str, int | None]]) -> tuple[int, int]:
    """Make the learned phrasings in the index exactly ``desired``; returns (added, removed)."""
    from knowledge import index, routing

    wanted = {(text, entry_id) for text, entry_id in desired}
    current = {(ex.text, ex.entry_id): ex.pk for ex in Example.objects.filter(knowledge_base=kb, origin=LEARNED_ORIGIN)}
    stale = [pk for pair, pk in current.items() if pair not in wanted]
    if stale:
        index.remove_examples(kb, stale)
        Example.objects.filter(pk__in=stale).delete()
    missing = [pair for pair in wanted if pair not in current]
    entries = Entry.objects.in_bulk([entry_id for _, entry_id in missing if entry_id is not None])
    pairs = [
        (text, entries.get(entry_id) if entry_id is not None else None)
        for text, entry_id in sorted(missing, key=lambda p: (p[0], p[1] or 0))
        if entry_id is None or entry_id in entries
    ]
    added = routing.add_examples(kb, pairs, origin=LEARNED_ORIGIN) if pairs else []
    return len(added), len(stale)


def activate_version(version: RoutingVersion, user: User | None = None) -> None:
    """Promote or roll back: the index gets the version's learned phrasings, then the version goes live.

    The chat reads the active version per message, so the switch needs no restart.
    """
    from knowledge import routing

    sync_learned_examples(version.knowledge_base, learned_examples_of(version))
    routing.activate_version(version)
    logger.info(
        "routing version activated",
        extra={"kb": version.knowledge_base.slug, "version": version.number, "by": user.get_username() if user else ""},
    )


# --- retraining jobs ----------------------------------------------------------------------------
def request_retraining(kb: KnowledgeBase, trigger: str, user: User | None = None) -> tuple[RetrainingJob, bool]:
    """A queued job for ``kb``, or the one already queued or running (asking twice starts one job)."""
    with transaction.atomic():
        KnowledgeBase.objects.select_for_update().filter(pk=kb.pk).first()
        pending = RetrainingJob.objects.filter(
            knowledge_base=kb, status__in=[RetrainingJob.Status.QUEUED, RetrainingJob.Status.RUNNING]
        ).first()
        if pending is not None:
            return pending, False
        previous = (
            RetrainingJob.objects.filter(knowledge_base=kb, status__in=RetrainingJob.FINISHED)
            .exclude(status=RetrainingJob.Status.SKIPPED)
            .order_by("-window_end")
            .first()
        )
        job = RetrainingJob.objects.create(
            knowledge_base=kb,
            trigger=trigger,
            triggered_by=user,
            window_start=previous.window_end if previous else None,
            window_end=timezone.now(),
        )
    return job, True


def enqueue_retraining(job: RetrainingJob) -> None:
    from learning.tasks import run_retraining_job

    transaction.on_commit(lambda: run_retraining_job.delay(job.pk))


# --- customers' rights: access and erasure ------------------------------------------------------
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
