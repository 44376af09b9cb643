"""One customer turn, streamed: store → (person owns it? stop) → chain → policy → answer, choices or hand-off.

Yields ``(event, data)`` pairs for the SSE stream. Every outcome is stored before it is sent, and
any failure of the model or the vector store ends in a polite hand-off (reason ``system_error``):
the customer's message, stored first, is never lost. A picked choice (``answer_pick``) is answered
through the same steps, from the compose stage on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from langchain_core.runnables import Runnable

from chat import actions
from chat.chain import DecisionEvent, FinalEvent, ReplaceEvent, TokenEvent, TurnEvent, build_chain, compose_chain
from chat.llm import get_chat_model, model_name
from chat.models import Conversation, Message
from chat.policy import judge
from chat.serializers import choices_dict, message_dict
from chat.texts import handover_preface
from chat.texts import text as say
from knowledge.routing import Decision
from knowledge.vocabulary import HandoverReason, Outcome

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


def _choices_event(message: Message) -> dict[str, Any]:
    return {"message_id": message.pk, **(choices_dict(message) or {"offered": [], "picked": None})}


def _replies(reply: Message) -> list[Event]:
    """A stored reply as events: the message, and the choices it offered."""
    events: list[Event] = [("message", message_dict(reply))]
    if choices_dict(reply) is not None:
        events.append(("choices", _choices_event(reply)))
    return events


def _escalate(conversation: Conversation, message: Message, reason: str, decision: Decision | None) -> Message:
    language = actions.language_of(conversation)
    # A request for a person or a risk is not a confidence judgement: leave it blank for the agent.
    judged = reason != HandoverReason.HUMAN_REQUEST and not HandoverReason(reason).is_risk
    _, notice = actions.escalate(
        conversation,
        reason,
        confidence=decision.confidence if decision and judged else None,
        candidates=[c.as_dict() for c in decision.candidates] if decision else [],
        trigger=message,
        preface=say("system_error", language)
        if reason == HandoverReason.SYSTEM_ERROR
        else handover_preface(reason, language),
    )
    return notice


async def _wait_for(find: Any, *args: Any) -> Message | None:
    """A retry whose first attempt may still be generating: wait for its reply (None: that attempt died)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.LLM_TIMEOUT_S + 5
    while True:
        reply = await sync_to_async(find)(*args)
        if reply is not None or loop.time() > deadline:
            return reply  # None: the first attempt died without a reply, so this one answers
        await asyncio.sleep(0.1)


async def respond(conversation: Conversation, message: Message, is_retry: bool = False) -> AsyncIterator[Event]:
    yield "customer", message_dict(message)
    if is_retry:
        earlier = await _wait_for(_existing_reply, message)
    else:
        earlier = await sync_to_async(_existing_reply)(message)
    if earlier is not None:  # a retry of a turn that was already answered: send that answer again
        for event in await sync_to_async(_replies)(earlier):
            yield event
        yield "status", await sync_to_async(_status)(conversation)
        return
    if conversation.status in (Conversation.Status.WAITING, Conversation.Status.WITH_AGENT):
        yield "status", await sync_to_async(_status)(conversation)  # a person owns it: the bot stays silent
        return

    language = actions.language_of(conversation)
    history = await sync_to_async(_history)(conversation, message)
    payload = {"kb": conversation.knowledge_base, "text": message.text, "language": language,
               "company": conversation.knowledge_base.name}  # fmt: skip
    async for event in _run(conversation, message, build_chain(get_chat_model()), payload, history):
        yield event


async def answer_pick(conversation: Conversation, pick: actions.Pick) -> AsyncIterator[Event]:
    """What follows a customer's pick: the answer from the picked entry, or the hand-over the pick made."""
    reply = pick.reply
    if reply is None and pick.repeated:
        reply = await _wait_for(actions.reply_to_pick, pick.offer)
    if reply is not None:
        yield "message", message_dict(reply)
        yield "status", await sync_to_async(_status)(conversation)
        return
    question = pick.question
    payload = {
        "decision": pick.decision(),
        "context": [pick.entry],
        "text": question.text,
        "language": actions.language_of(conversation),
        "company": conversation.knowledge_base.name,
    }
    async for event in _run(conversation, question, compose_chain(get_chat_model()), payload, None, pick.note()):
        yield event


async def _run(
    conversation: Conversation,
    message: Message,
    chain: Runnable[dict[str, Any], TurnEvent],
    payload: dict[str, Any],
    history: list[Message] | None,
    note: dict[str, Any] | None = None,
) -> AsyncIterator[Event]:
    """Run the chain and turn its events into stored messages and SSE events.

    ``history`` None: the decision is already made (a picked choice), so the policy does not judge it again.
    ``note``: added to the stored decision of the answer.
    """
    started = time.perf_counter()
    decision: Decision | None = None
    try:
        async for event in chain.astream(payload):
            if isinstance(event, DecisionEvent):
                decision = event.decision
                if history is None:
                    continue
                verdict = judge(decision, message.text, history)
                if verdict.action == Outcome.CHOICES:
                    offer = await sync_to_async(actions.offer_choices)(conversation, message, decision)
                    yield "message", message_dict(offer)
                    yield "choices", _choices_event(offer)
                    break
                if verdict.action == Outcome.HANDOVER:
                    assert verdict.reason is not None
                    notice = await sync_to_async(_escalate)(conversation, message, verdict.reason, decision)
                    yield "message", message_dict(notice)
                    yield "status", await sync_to_async(_status)(conversation)
                    break
            elif isinstance(event, TokenEvent):
                yield "token", {"text": event.text}
            elif isinstance(event, ReplaceEvent):
                yield "replace", {"text": event.text}
            elif isinstance(event, FinalEvent) and decision is not None and decision.entry is not None:
                reply = await sync_to_async(_record_answer)(
                    conversation, message, decision, event, (time.perf_counter() - started) * 1000, note
                )
                yield "message", message_dict(reply)
    except Exception:
        logger.exception("turn failed; escalating", extra={"conversation": str(conversation.pk)})
        notice = await sync_to_async(_escalate)(conversation, message, HandoverReason.SYSTEM_ERROR, decision)
        yield "message", message_dict(notice)
        yield "status", await sync_to_async(_status)(conversation)


def _record_answer(
    conversation: Conversation,
    message: Message,
    decision: Decision,
    final: FinalEvent,
    latency_ms: float,
    note: dict[str, Any] | None,
) -> Message:
    assert decision.entry is not None
    return actions.record_bot_message(
        conversation,
        message,
        final.text,
        decision={**decision.as_dict(), "postcheck": final.check, **(note or {})},
        sources=final.sources,
        entry_id=decision.entry.pk,
        confidence=decision.confidence,
        latency_ms=latency_ms,
        model_used=model_name(),
    )
