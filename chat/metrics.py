"""Support figures for ops: volume, auto-resolution, escalations, waiting and handling times, feedback."""

from __future__ import annotations

import statistics
from datetime import timedelta
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from chat.models import Conversation, Message, Ticket
from knowledge.vocabulary import UNANSWERED_REASONS


def _median_minutes(pairs: list[tuple[Any, Any]]) -> float | None:
    spans = [(end - start).total_seconds() / 60 for start, end in pairs if start and end]
    return round(statistics.median(spans), 1) if spans else None


def compute(days: int) -> dict[str, Any]:
    since = timezone.now() - timedelta(days=days)
    conversations = Conversation.objects.filter(created_at__gte=since).annotate(
        customer_messages=Count("messages", filter=Q(messages__role=Message.Role.CUSTOMER)),
        bot_answers=Count("messages", filter=Q(messages__role=Message.Role.BOT, messages__entry__isnull=False)),
        ticket_count=Count("tickets", distinct=True),
    )
    active = conversations.filter(customer_messages__gt=0)
    total = active.count()
    auto_resolved = active.filter(bot_answers__gt=0, ticket_count=0).count()
    tickets = Ticket.objects.filter(created_at__gte=since)
    # a conversation handed back and escalated again has two tickets: its share counts conversations (at most 100 %)
    by_reason = {
        row["reason"]: (row["n"], row["conversations"])
        for row in tickets.values("reason").annotate(n=Count("id"), conversations=Count("conversation", distinct=True))
    }
    feedback = Message.objects.filter(created_at__gte=since, role=Message.Role.BOT).aggregate(
        helpful=Count("id", filter=Q(feedback=1)), not_helpful=Count("id", filter=Q(feedback=-1))
    )
    rated = feedback["helpful"] + feedback["not_helpful"]
    resolved = tickets.filter(status=Ticket.Status.RESOLVED)
    ratings = dict(resolved.filter(csat__isnull=False).values_list("csat").annotate(n=Count("id")))
    return {
        "conversations": total,
        "auto_resolution_rate": auto_resolved / total if total else None,
        "escalation_rate": tickets.values("conversation").distinct().count() / total if total else None,
        "escalations_by_reason": [
            {"reason": Ticket.Reason(reason).label, "count": n, "rate": min(escalated / total, 1.0) if total else None}
            for reason, (n, escalated) in sorted(by_reason.items(), key=lambda item: -item[1][0])
        ],
        "median_wait_to_claim_min": _median_minutes(list(tickets.values_list("created_at", "claimed_at"))),
        "median_handling_min": _median_minutes(list(tickets.values_list("claimed_at", "resolved_at"))),
        "feedback_helpful": feedback["helpful"],
        "feedback_not_helpful": feedback["not_helpful"],
        "helpful_rate": feedback["helpful"] / rated if rated else None,
        **satisfaction(ratings, resolved.count()),
        "top_unanswered": top_unanswered(since),
    }


def satisfaction(ratings: dict[int, int], asked: int) -> dict[str, Any]:
    """The 1-5 answers customers gave after an agent resolved their ticket: the mean, the share of 4s and 5s
    (the usual CSAT score), how many answered of how many were asked, and the count for each rating."""
    answered = sum(ratings.values())
    return {
        "csat_average": round(sum(r * n for r, n in ratings.items()) / answered, 2) if answered else None,
        "csat_score": (ratings.get(4, 0) + ratings.get(5, 0)) / answered if answered else None,
        "csat_answered": answered,
        "csat_asked": asked,
        "csat_distribution": [{"rating": r, "count": ratings.get(r, 0)} for r in range(5, 0, -1)],
    }


def top_unanswered(since: Any, limit: int = 300, similarity: float = 0.88) -> list[dict[str, Any]]:
    """Questions the bot could not answer, grouped by meaning (greedy clustering on embeddings).

    A ticket's question is the customer's last message, up to the one that triggered the hand-over, that the
    person-or-risk rules leave alone: "this bot is useless" or "agent!" is the customer's reaction to a failed
    answer, not the question the knowledge base lacks.
    """
    from knowledge.handoff import reason_by_rule

    tickets = list(
        Ticket.objects.filter(created_at__gte=since, reason__in=UNANSWERED_REASONS, trigger_message__isnull=False)
        .order_by("-created_at")
        .values_list("conversation_id", "trigger_message_id")[:limit]
    )
    said: dict[Any, list[tuple[int, str]]] = {}
    for conversation_id, pk, text in (
        Message.objects.filter(conversation_id__in={c for c, _ in tickets}, role=Message.Role.CUSTOMER)
        .order_by("-pk")
        .values_list("conversation_id", "pk", "text")
    ):
        said.setdefault(conversation_id, []).append((pk, text))
    texts = []
    for conversation_id, trigger_id in tickets:
        asked = (text for pk, text in said.get(conversation_id, []) if pk <= trigger_id and text.strip())
        question = next((text for text in asked if reason_by_rule(text) is None), None)
        if question is not None:
            texts.append(question)
    if not texts:
        return []
    from knowledge.embeddings import get_encoder

    vectors = get_encoder().embed(texts, is_query=True)
    clusters: list[dict[str, Any]] = []
    centres: list[Any] = []
    for text, vector in zip(texts, vectors, strict=True):
        scores = [float(vector @ centre) for centre in centres]
        best = max(range(len(scores)), key=scores.__getitem__) if scores else -1
        if best >= 0 and scores[best] >= similarity:
            clusters[best]["count"] += 1
            if len(clusters[best]["examples"]) < 3:
                clusters[best]["examples"].append(text[:160])
        else:
            centres.append(vector)
            clusters.append({"question": text[:160], "count": 1, "examples": []})
    return sorted(clusters, key=lambda c: -c["count"])[:10]
