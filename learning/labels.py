"""Labelled examples from turn logs, each with the rule that produced it.

Rules (one label per turn and rule; ops' confirmations and corrections are never overwritten):
- an answer marked helpful, or (``LEARNING_NO_FOLLOW_UP_MINUTES``) left without feedback, escalation or
  another customer message for that long → positive for the answered entry;
- an answer marked not helpful, or escalated afterwards → negative for the answered entry;
- an agent resolution linked to an entry (a published draft made from the question, a quoted answer, a
  replayed confirmation) → positive for that entry, and negative for a different entry the bot answered;
- an escalated question resolved without any entry, or confirmed as not covered → out of scope;
- an entry the customer picked among the offered choices (``CHOICE_PICKED``) → positive for it, unless its
  answer was then marked not helpful or the turn was resolved otherwise.
Human hand-off requests and system errors say nothing about coverage and give no label.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from chat.models import Message, Ticket
from knowledge.models import Entry, KnowledgeBase, Source
from learning.models import LabelledExample, TurnLog

Kind = LabelledExample.Kind
Rule = LabelledExample.Rule

CHOICE_PICKED = Rule.CHOICE_PICKED

UNCOVERED_REASONS = frozenset(
    {
        Ticket.Reason.OUT_OF_SCOPE,
        Ticket.Reason.LOW_CONFIDENCE,
        Ticket.Reason.NO_CHOICE_FITS,
        Ticket.Reason.REPEATED_FAILURE,
        Ticket.Reason.NEGATIVE_FEEDBACK,
    }
)


@dataclass(frozen=True)
class Label:
    kind: str
    entry_id: int | None
    rule: str


def labels_for(log: TurnLog, now: datetime | None = None) -> list[Label]:
    """What this turn teaches, by the rules in the module doc."""
    now = now or timezone.now()
    labels: list[Label] = []
    answered = log.entry_id if log.decision_reason == "answer" and log.entry_id else None
    resolution = log.resolution_entry_id
    if answered is not None and resolution != answered:
        if log.feedback == 1 and resolution is None:
            labels.append(Label(Kind.POSITIVE, answered, Rule.POSITIVE_FEEDBACK))
        elif log.feedback == -1:
            labels.append(Label(Kind.NEGATIVE, answered, Rule.NEGATIVE_FEEDBACK))
        elif log.escalated and log.escalation_reason != Ticket.Reason.NEGATIVE_FEEDBACK:
            labels.append(Label(Kind.NEGATIVE, answered, Rule.ESCALATED_AFTER_ANSWER))
        elif resolution is not None or log.confirmed_out_of_scope:
            labels.append(Label(Kind.NEGATIVE, answered, Rule.CORRECTED_ANSWER))
        elif (
            log.feedback is None
            and not log.follow_up
            and settings.LEARNING_NO_FOLLOW_UP_MINUTES > 0
            and log.created_at <= now - timedelta(minutes=settings.LEARNING_NO_FOLLOW_UP_MINUTES)
        ):
            labels.append(Label(Kind.POSITIVE, answered, Rule.NO_FOLLOW_UP))
    picked, picked_feedback = picked_entry(log)
    if (
        picked is not None
        and resolution in (None, picked)
        and not log.confirmed_out_of_scope
        and picked_feedback != -1
        and all(label.rule != CHOICE_PICKED for label in labels)  # a 👍 on the picked answer says the same
    ):
        labels.append(Label(Kind.POSITIVE, picked, CHOICE_PICKED))
    if resolution is not None:
        manual = log.resolution_entry is not None and log.resolution_entry.source.kind == Source.Kind.MANUAL
        labels.append(Label(Kind.POSITIVE, resolution, Rule.PUBLISHED_DRAFT if manual else Rule.AGENT_RESOLUTION))
    elif log.confirmed_out_of_scope or (log.escalated and log.resolved and log.escalation_reason in UNCOVERED_REASONS):
        labels.append(Label(Kind.OUT_OF_SCOPE, None, Rule.UNCOVERED))
    return labels


def picked_entry(log: TurnLog) -> tuple[int | None, int | None]:
    """The entry the customer picked among the choices this turn offered, and the feedback its answer got."""
    reply = log.reply
    decision = (reply.decision if reply is not None else None) or {}
    picked = str(decision.get("picked") or "")
    if not picked.isdigit():
        return None, None
    if "picked_from" in decision:  # the logged reply is the picked answer itself
        return int(picked), log.feedback
    if picked not in {str(o.get("entry_id")) for o in decision.get("offered") or [] if isinstance(o, dict)}:
        return None, None
    answer = (
        Message.objects.filter(reply_to_id=log.question_id, role=Message.Role.BOT, entry_id=int(picked))
        .order_by("id")
        .values_list("feedback", flat=True)
        .first()
    )
    return int(picked), answer


@transaction.atomic
def derive_for_turn(log: TurnLog, now: datetime | None = None) -> list[LabelledExample]:
    """Bring the turn's derived labels in line with the rules; returns them. Reviewed labels stay as ops left them."""
    wanted = {label.rule: label for label in labels_for(log, now)}
    existing = {label.rule: label for label in LabelledExample.objects.filter(turn=log)}
    for rule, label in existing.items():
        if rule not in wanted and label.status == LabelledExample.Status.AUTO:
            label.delete()
    result = []
    for rule, wanted_label in wanted.items():
        current = existing.get(rule)
        values: dict[str, Any] = {
            "knowledge_base_id": log.knowledge_base_id,
            "conversation_id": log.conversation_id,
            "text": log.text,
            "language": log.language,
            "kind": wanted_label.kind,
            "entry_id": wanted_label.entry_id,
            "split": log.split,
            "customer_email_hash": log.customer_email_hash,
            "customer_ref_hash": log.customer_ref_hash,
        }
        if current is None:
            result.append(LabelledExample.objects.create(turn=log, rule=rule, **values))
        elif current.status == LabelledExample.Status.AUTO:
            LabelledExample.objects.filter(pk=current.pk).update(**values)
            current.refresh_from_db()
            result.append(current)
        else:
            result.append(current)
    return result


def derive_labels(kb: KnowledgeBase, until: datetime | None = None) -> int:
    """Derive labels for every kept turn of ``kb`` logged up to ``until``; returns how many labels there are."""
    now = timezone.now()
    logs = TurnLog.objects.filter(knowledge_base=kb).select_related("resolution_entry__source", "reply")
    if until is not None:
        logs = logs.filter(created_at__lte=until)
    # ids first, then batches: an open read cursor while writing fails on SQLite ("database is locked") as soon as
    # another connection writes, as the job's heartbeat thread does
    ids = list(logs.values_list("pk", flat=True))
    total = 0
    for start in range(0, len(ids), 500):
        batch = list(logs.filter(pk__in=ids[start : start + 500]))
        total += sum(len(derive_for_turn(log, now)) for log in batch)
    return total


@transaction.atomic
def correct_label(label: LabelledExample, kind: str, entry: Entry | None, user: Any = None) -> LabelledExample:
    """Ops' correction: this question asks for ``entry`` (or nothing covered); derivation never undoes it."""
    if (kind == Kind.OUT_OF_SCOPE) != (entry is None):
        raise ValueError("an out-of-scope label has no entry; the other kinds need one")
    changed = kind != label.kind or (entry.pk if entry else None) != label.entry_id
    label.kind, label.entry = kind, entry
    label.status = LabelledExample.Status.CORRECTED if changed else LabelledExample.Status.CONFIRMED
    label.reviewed_by, label.reviewed_at = user, timezone.now()
    label.save()
    return label


def set_review(queryset: Any, status: str, user: Any = None) -> int:
    return int(queryset.update(status=status, reviewed_by=user, reviewed_at=timezone.now()))


# --- what training, calibration and the gate read ----------------------------------------------
def _usable(kb: KnowledgeBase, until: datetime | None) -> Any:
    labels = LabelledExample.objects.filter(knowledge_base=kb).exclude(status=LabelledExample.Status.REJECTED)
    if until is not None:
        labels = labels.filter(Q(turn__created_at__lte=until) | Q(turn__isnull=True))
    return labels


def labelled_pairs(
    kb: KnowledgeBase, splits: list[str], until: datetime | None = None, *, with_negatives: bool
) -> list[tuple[str, Entry | None]]:
    """(text, entry) pairs of these splits; None = must escalate. Deduplicated, in a stable order.

    A positive contradicted by a negative for the same text and entry is left out unless ops confirmed it.
    ``with_negatives``: a text known only to be *wrong* for an entry counts as "should have escalated" (used
    for calibration and the gate, never to train the head, which only learns what a text *is*).
    """
    labels = list(_usable(kb, until).filter(split__in=splits).select_related("entry").order_by("pk"))
    negatives = {(label.text, label.entry_id) for label in labels if label.kind == Kind.NEGATIVE}
    reviewed = (LabelledExample.Status.CONFIRMED, LabelledExample.Status.CORRECTED)
    pairs: dict[tuple[str, int | None], tuple[str, Entry | None]] = {}
    positive_texts = set()
    for label in labels:
        if label.kind == Kind.POSITIVE and label.entry is not None:
            if (label.text, label.entry_id) in negatives and label.status not in reviewed:
                continue
            pairs[(label.text, label.entry_id)] = (label.text, label.entry)
            positive_texts.add(label.text)
        elif label.kind == Kind.OUT_OF_SCOPE:
            pairs[(label.text, None)] = (label.text, None)
    if with_negatives:
        for text, _ in sorted(negatives, key=lambda n: (n[0], n[1] or 0)):
            if text not in positive_texts:
                pairs.setdefault((text, None), (text, None))
    return list(pairs.values())


def new_training_examples(kb: KnowledgeBase, start: datetime | None, end: datetime) -> int:
    """Training-slice positives and out-of-scope labels from turns logged in the job's window."""
    labels = _usable(kb, end).filter(split="train", kind__in=[Kind.POSITIVE, Kind.OUT_OF_SCOPE])
    if start is not None:
        labels = labels.filter(Q(turn__created_at__gt=start) | Q(turn__isnull=True, created_at__gt=start))
    return int(labels.count())
