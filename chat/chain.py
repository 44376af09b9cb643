"""The answer chain (LangChain LCEL): retrieve → decide → compose → check.

Input: ``{"kb": KnowledgeBase, "text": str, "language": "es"|"en"}``. Output: a stream of the turn's
events (``TurnEvent``) that the turn layer turns into the SSE stream and stored messages: a
``DecisionEvent`` first; then, when answering, ``TokenEvent`` pieces, a ``ReplaceEvent`` when the
post-check rejects a generated answer, and a ``FinalEvent``.
The extractive backend streams too (word by word), so clients have one code path.

The routing step touches the database, so it runs through ``sync_to_async`` (thread-sensitive, where
Django manages the connection like any request's), never on asyncio's default executor threads.
``compose_chain`` is the second half alone, for an answer already decided (a customer's picked choice).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableGenerator, RunnableLambda

from chat.postcheck import check_answer
from chat.prompts import ANSWER_PROMPT, LANGUAGE_NAMES, format_context
from knowledge.models import Entry
from knowledge.routing import MAX_CHOICES, Decision, route

_CITED = re.compile(r"\[(\d+)\]")


# --- the events of a turn ----------------------------------------------------------------------------
@dataclass(frozen=True)
class DecisionEvent:
    """What routing decided; always the first event."""

    decision: Decision


@dataclass(frozen=True)
class TokenEvent:
    """A piece of the answer, as it streams."""

    text: str


@dataclass(frozen=True)
class ReplaceEvent:
    """The post-check rejected the generated answer: show ``text`` (the vetted answer) instead."""

    text: str


@dataclass(frozen=True)
class FinalEvent:
    """The whole answer, the entries it cites, and the post-check's verdict (None when nothing was generated)."""

    text: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    check: dict[str, Any] | None = None


TurnEvent = DecisionEvent | TokenEvent | ReplaceEvent | FinalEvent


# --- retrieve and decide -----------------------------------------------------------------------------
def decide(kb: Any, text: str) -> tuple[Decision, list[Entry]]:
    """Embed once, search the index, score: the routing decision, plus the entries an answer may draw on.

    The context is the answer's entry first, then at most the other entries that would have been offered
    as choices (the next best candidates), where they are still answerable.
    """
    decision = route(kb, text)
    if not decision.answer or decision.entry is None:
        return decision, []
    others = [c.entry_id for c in decision.candidates if c.entry_id != decision.entry.pk][: MAX_CHOICES - 1]
    answerable = Entry.objects.answerable().filter(knowledge_base_id=decision.entry.knowledge_base_id).in_bulk(others)
    return decision, [decision.entry, *(answerable[pk] for pk in others if pk in answerable)]


async def retrieve_and_decide(payload: dict[str, Any]) -> dict[str, Any]:
    decision, context = await sync_to_async(decide)(payload["kb"], payload["text"])
    return {**payload, "decision": decision, "context": context}


def source_of(entry: Entry, language: str) -> dict[str, Any]:
    question, _ = entry.answer_in(language)
    return {"entry_id": entry.pk, "title": question, "url": entry.url}


CHARS_PER_TOKEN = 3  # conservative for Spanish and English with small-vocabulary models
ENTRY_MARKUP_CHARS = 40  # <entry n="1" title="…">…</entry>


def _trimmed_context(entries: list[Entry], language: str, fixed_prompt_chars: int) -> list[tuple[int, str, str]]:
    """Numbered (n, title, text) entries that fit the model's window beside the prompt and the answer."""
    window_chars = (settings.LLM_CONTEXT_TOKENS - settings.LLM_MAX_TOKENS) * CHARS_PER_TOKEN
    room = window_chars - fixed_prompt_chars
    numbered: list[tuple[int, str, str]] = []
    for n, entry in enumerate(entries, start=1):
        question, answer = entry.answer_in(language)
        space = room - ENTRY_MARKUP_CHARS - len(question)
        if space < 80 and numbered:
            break
        body = answer[: max(space, 0)]
        numbered.append((n, question, body))
        room -= ENTRY_MARKUP_CHARS + len(question) + len(body)
    return numbered


async def _stream_words(text: str) -> AsyncIterator[TurnEvent]:
    for piece in re.findall(r"\S+\s*", text):
        yield TokenEvent(piece)
        await asyncio.sleep(0)


def compose_chain(chat_model: BaseChatModel | None) -> Runnable[dict[str, Any], TurnEvent]:
    """Compose and check an answer already decided: input ``{"decision", "context", "text", "language"}``."""

    async def compose(inputs: AsyncIterator[dict[str, Any]]) -> AsyncIterator[TurnEvent]:
        async for payload in inputs:
            decision: Decision = payload["decision"]
            yield DecisionEvent(decision)
            if not decision.answer or decision.entry is None:
                return
            language = payload["language"]
            _, vetted = decision.entry.answer_in(language)
            if chat_model is None:
                async for event in _stream_words(vetted):
                    yield event
                yield FinalEvent(vetted, [source_of(decision.entry, language)], None)
                return
            async for event in _generate(chat_model, payload, vetted):
                yield event

    return RunnableGenerator(compose, name="compose_and_check")


def build_chain(chat_model: BaseChatModel | None) -> Runnable[dict[str, Any], TurnEvent]:
    """The whole turn: retrieve and decide (``{"kb", "text", "language"}`` in), then compose and check."""
    return RunnableLambda(retrieve_and_decide, name="retrieve_and_decide") | compose_chain(chat_model)


async def _generate(chat_model: BaseChatModel, payload: dict[str, Any], vetted: str) -> AsyncIterator[TurnEvent]:
    language = payload["language"]
    entries: list[Entry] = payload["context"]
    values = {
        "company": payload.get("company", "our company"),
        "language_name": LANGUAGE_NAMES.get(language, "the customer's language"),
        "question": payload["text"],
    }
    fixed = sum(len(str(m.content)) for m in ANSWER_PROMPT.format_messages(**values, context=""))
    numbered = _trimmed_context(entries, language, fixed)
    context_text = format_context(numbered)
    prompt = ANSWER_PROMPT.format_messages(**values, context=context_text)
    pieces: list[str] = []
    async with asyncio.timeout(settings.LLM_TIMEOUT_S):
        async for chunk in chat_model.astream(prompt):
            piece = str(chunk.content)
            if piece:
                pieces.append(piece)
                yield TokenEvent(piece)
    answer = "".join(pieces).strip()
    check = check_answer(answer, context_text)
    cited = {int(n) for n in _CITED.findall(answer)} & set(range(1, len(numbered) + 1))
    used = [entries[n - 1] for n in sorted(cited)] or [entries[0]]
    if not check.ok:
        # Fall back to the vetted answer of the matched entry: the customer never sees unsupported facts.
        yield ReplaceEvent(vetted)
        answer, used = vetted, [entries[0]]
    yield FinalEvent(
        answer,
        [source_of(entry, language) for entry in used],
        {"ok": check.ok, "problems": list(check.problems)},
    )
