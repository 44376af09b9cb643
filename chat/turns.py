"""One customer turn, streamed: store → (person owns it? stop) → chain → policy → answer or hand-off.

Yields ``(event, data)`` pairs for the SSE stream. Every outcome is stored before it is sent, and
any failure of the model or the vector store ends in a polite hand-off (reason ``system_error``):
the customer's message, stored first, is never lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from chat import actions
from chat.chain import build_chain
from chat.llm import get_chat_model, model_name
from chat.models import Conversation, Message, Ticket
from chat.policy import judge
from chat.serializers import message_dict
from chat.texts import text as say
from knowledge.routing import Decision

logger = logging.getLogger(__name__)

Event = tuple[str, dict[str, Any]]


def _history(conversation: Conversation, before: Message) -> list[Message]:
    return list(
        conversation.messages.filter(id__lt=before.pk, role__in=[Message.Role.CUSTOMER, Message.Role.BOT]).order_by(
            "id"
        )
    )


def _existing_reply(message: Message) -> Message | None:
    return message.replies.order_by("id").first()


def _status(conversation: Conversation) -> dict[str, Any]:
    conversation.refresh_from_db(fields=["status"])
    return {"status": conversation.status, "queue": actions.queue_info(conversation)}


def _clarify(conversation: Conversation, message: Message, decision: Decision) -> Message:
    language = actions.language_of(conversation)
    suggestion = decision.entry.answer_in(language)[0] if decision.entry is not None else ""
    text = say("clarify_with_suggestion", language, suggestion=suggestion) if suggestion else say("clarify", language)
    return actions.record_bot_message(
        conversation,
        message,
        text,
        decision=decision.as_dict(),
        confidence=decision.confidence,
        latency_ms=decision.latency_ms,
        model_used="policy",
    )


def _escalate(conversation: Conversation, message: Message, reason: str, decision: Decision | None) -> Message:
    _, notice = actions.escalate(
        conversation,
        reason,
        # A request for a person is not a confidence judgement: leave it blank for the agent.
        confidence=decision.confidence if decision and reason != Ticket.Reason.HUMAN_REQUEST else None,
        candidates=[c.as_dict() for c in decision.candidates] if decision else [],
        trigger=message,
        preface=say("system_error", actions.language_of(conversation)) if reason == Ticket.Reason.SYSTEM_ERROR else "",
    )
    return notice


async def _reply_of_a_retry(message: Message) -> Message | None:
    """A retried message (same client_id) whose first attempt may still be generating: wait for its reply."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.LLM_TIMEOUT_S + 5
    while True:
        reply = await sync_to_async(_existing_reply)(message)
        if reply is not None or loop.time() > deadline:
            return reply  # None: the first attempt died without a reply, so this one answers
        await asyncio.sleep(0.1)


async def respond(conversation: Conversation, message: Message, is_retry: bool = False) -> AsyncIterator[Event]:
    yield "customer", message_dict(message)
    if is_retry:
        earlier = await _reply_of_a_retry(message)
    else:
        earlier = await sync_to_async(_existing_reply)(message)
    if earlier is not None:  # a retry of a turn that was already answered: send that answer again
        yield "message", await sync_to_async(message_dict)(earlier)
        yield "status", await sync_to_async(_status)(conversation)
        return
    if conversation.status in (Conversation.Status.WAITING, Conversation.Status.WITH_AGENT):
        yield "status", await sync_to_async(_status)(conversation)  # a person owns it: the bot stays silent
        return

    started = time.perf_counter()
    language = actions.language_of(conversation)
    history = await sync_to_async(_history)(conversation, message)
    payload = {"kb": conversation.knowledge_base, "text": message.text, "language": language,
               "company": conversation.knowledge_base.name}  # fmt: skip
    decision: Decision | None = None
    try:
        chain = build_chain(get_chat_model())
        async for event in chain.astream(payload):
            kind = event["type"]
            if kind == "decision":
                decision = event["decision"]
                verdict = judge(decision, message.text, history)
                if verdict.action == "choices":  # TODO(choices): buttons
                    reply = await sync_to_async(_clarify)(conversation, message, decision)
                    yield "message", message_dict(reply)
                    break
                if verdict.action == "escalate":
                    notice = await sync_to_async(_escalate)(conversation, message, verdict.reason, decision)
                    yield "message", message_dict(notice)
                    yield "status", await sync_to_async(_status)(conversation)
                    break
            elif kind == "token":
                yield "token", {"text": event["text"]}
            elif kind == "replace":
                yield "replace", {"text": event["text"]}
            elif kind == "final" and decision is not None and decision.entry is not None:
                record = {**decision.as_dict(), "postcheck": event["check"]}
                reply = await sync_to_async(actions.record_bot_message)(
                    conversation,
                    message,
                    event["text"],
                    decision=record,
                    sources=event["sources"],
                    entry_id=decision.entry.pk,
                    confidence=decision.confidence,
                    latency_ms=(time.perf_counter() - started) * 1000,
                    model_used=model_name(),
                )
                yield "message", message_dict(reply)
    except Exception:
        logger.exception("turn failed; escalating", extra={"conversation": str(conversation.pk)})
        notice = await sync_to_async(_escalate)(conversation, message, Ticket.Reason.SYSTEM_ERROR, decision)
        yield "message", message_dict(notice)
        yield "status", await sync_to_async(_status)(conversation)
