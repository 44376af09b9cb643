"""How conversations and messages look to the widget (never internal notes, never staff-only fields)."""

from __future__ import annotations

from typing import Any

from chat.models import Conversation, Message

PUBLIC_ROLES = (Message.Role.CUSTOMER, Message.Role.BOT, Message.Role.AGENT, Message.Role.SYSTEM)


def message_dict(message: Message) -> dict[str, Any]:
    author = message.author
    return {
        "id": message.pk,
        "role": message.role,
        "text": message.text,
        "created_at": message.created_at.isoformat(),
        "author_name": (author.first_name or author.username) if author is not None else "",
        "sources": [{"title": s.get("title", ""), "url": s.get("url", "")} for s in message.sources],
        "feedback": message.feedback,
        "confidence": round(message.confidence, 3) if message.confidence is not None else None,
    }


def conversation_dict(conversation: Conversation, queue: dict[str, Any] | None) -> dict[str, Any]:
    messages = conversation.messages.filter(role__in=PUBLIC_ROLES).select_related("author").order_by("id")
    return {
        "id": str(conversation.pk),
        "status": conversation.status,
        "language": conversation.language,
        "messages": [message_dict(m) for m in messages],
        "queue": queue,
    }
