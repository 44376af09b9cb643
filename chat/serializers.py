"""How conversations and messages look to the widget (never internal notes, never staff-only fields)."""

from __future__ import annotations

from typing import Any

from chat.models import Conversation, Message

PUBLIC_ROLES = (Message.Role.CUSTOMER, Message.Role.BOT, Message.Role.AGENT, Message.Role.SYSTEM)


def choices_dict(message: Message) -> dict[str, Any] | None:
    """The choices a bot message offered (entry ids as strings, titles in the customer's language) and the pick
    (an entry id, "none", "person", or None while open); None for any other message."""
    offered = message.decision.get("offered") if message.role == Message.Role.BOT else None
    if not isinstance(offered, list):
        return None
    return {
        "offered": [{"id": str(o["entry_id"]), "title": str(o["title"])} for o in offered],
        "picked": message.decision.get("picked"),
    }


def csat_dict(message: Message) -> dict[str, Any] | None:
    """On the closing message of a resolved ticket: the 1-5 rating asked for, and the answer (None: not yet)."""
    if message.role != Message.Role.SYSTEM or not message.decision.get("csat_ticket"):
        return None
    return {"rating": message.decision.get("csat_rating")}


def message_dict(message: Message) -> dict[str, Any]:
    author = message.author
    # The conversation's language as of this message: the widget shows its own words in it.
    conversation = message.conversation if Message.conversation.is_cached(message) else None
    return {
        "id": message.pk,
        "role": message.role,
        "text": message.text,
        "created_at": message.created_at.isoformat(),
        "author_name": (author.first_name or author.username) if author is not None else "",
        "sources": [{"title": s.get("title", ""), "url": s.get("url", "")} for s in message.sources],
        "feedback": message.feedback,
        "confidence": round(message.confidence, 3) if message.confidence is not None else None,
        "choices": choices_dict(message),
        "csat": csat_dict(message),
        "language": conversation.language if conversation is not None else None,
    }


def conversation_dict(conversation: Conversation, queue: dict[str, Any] | None) -> dict[str, Any]:
    messages = conversation.messages.filter(role__in=PUBLIC_ROLES).select_related("author").order_by("id")
    return {
        "id": str(conversation.pk),
        "status": conversation.status,
        "language": conversation.language,
        "messages": [message_dict(m) for m in messages],
        "queue": queue,
        "customer": {
            "name": conversation.customer_name,
            "email": conversation.customer_email,
            "verified": conversation.identity_verified,
        },
    }
