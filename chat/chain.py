"""The answer chain (LangChain LCEL): retrieve → decide → compose → check.

Input: ``{"kb": KnowledgeBase, "text": str, "language": "es"|"en"}``. Output: a stream of events
(plain dicts) that the turn layer turns into the SSE stream and stored messages:
``{"type": "decision", "decision": Decision}`` first; then, when answering, ``{"type": "token", "text"}``
pieces, optionally ``{"type": "replace", "text"}`` when the post-check rejects a generated answer,
and ``{"type": "final", "text", "sources", "check"}``.
The extractive backend streams too (word by word), so clients have one code path.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableGenerator, RunnableLambda, RunnablePassthrough

from chat.postcheck import check_answer
from chat.prompts import ANSWER_PROMPT, LANGUAGE_NAMES, format_context
from knowledge.models import Entry
from knowledge.routing import Decision, route

_CITED = re.compile(r"\[(\d+)\]")


def retrieve_and_decide(payload: dict[str, Any]) -> dict[str, Any]:
    """Embed once, search the index, score: the routing decision, plus the entries it may draw on."""
    decision = route(payload["kb"], payload["text"])
    context: list[Entry] = []
    if decision.answer and decision.entry is not None:
        others = [c.entry_id for c in decision.candidates[1:3] if c.entry_id != decision.entry.pk]
        context = [decision.entry, *list(Entry.objects.answerable().filter(pk__in=others))]
    return {"decision": decision, "context": context}


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


async def _stream_words(text: str) -> AsyncIterator[dict[str, Any]]:
    for piece in re.findall(r"\S+\s*", text):
        yield {"type": "token", "text": piece}
        await asyncio.sleep(0)


def build_chain(chat_model: BaseChatModel | None) -> Runnable[dict[str, Any], dict[str, Any]]:
    async def compose(inputs: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        async for payload in inputs:
            decision: Decision = payload["decision"]
            yield {"type": "decision", "decision": decision}
            if not decision.answer or decision.entry is None:
                return
            language = payload["language"]
            _, vetted = decision.entry.answer_in(language)
            if chat_model is None:
                async for event in _stream_words(vetted):
                    yield event
                sources = [source_of(decision.entry, language)]
                yield {"type": "final", "text": vetted, "sources": sources, "check": None}
                return
            async for event in _generate(chat_model, payload, vetted):
                yield event

    chain = RunnablePassthrough.assign(routed=RunnableLambda(retrieve_and_decide)) | RunnableLambda(
        lambda p: {**p, **p.pop("routed")}
    )
    return chain | RunnableGenerator(compose, name="compose_and_check")


async def _generate(chat_model: BaseChatModel, payload: dict[str, Any], vetted: str) -> AsyncIterator[dict[str, Any]]:
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
                yield {"type": "token", "text": piece}
    answer = "".join(pieces).strip()
    check = check_answer(answer, context_text)
    cited = {int(n) for n in _CITED.findall(answer)} & set(range(1, len(numbered) + 1))
    used = [entries[n - 1] for n in sorted(cited)] or [entries[0]]
    if not check.ok:
        # Fall back to the vetted answer of the matched entry: the customer never sees unsupported facts.
        yield {"type": "replace", "text": vetted}
        answer, used = vetted, [entries[0]]
    yield {
        "type": "final",
        "text": answer,
        "sources": [source_of(entry, language) for entry in used],
        "check": {"ok": check.ok, "problems": list(check.problems)},
    }
