"""LLM_BACKEND=openai against a small OpenAI-compatible server on loopback: the real client, streamed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from chat.models import Message
from tests.chat.conftest import Chat

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

ANSWER_PIECES = ["La Rodamar ", "Urbana cuesta ", "39 € ", "al mes ", "[1]."]


@dataclass
class FakeOpenAI:
    """Records each chat-completions request; answers with ``pieces`` as SSE chunks, or with ``status``."""

    port: int = 0
    pieces: list[str] = field(default_factory=lambda: list(ANSWER_PIECES))
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def _handler(state: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.paths.append(self.path)
            state.requests.append(json.loads(body))
            if self.path != "/v1/chat/completions" or state.status != 200:
                payload = json.dumps({"error": {"message": "unavailable", "type": "server_error"}}).encode()
                self.send_response(state.status if state.status != 200 else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for n, piece in enumerate(state.pieces):
                self._chunk({"role": "assistant", "content": piece} if n == 0 else {"content": piece}, None)
            self._chunk({}, "stop")
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

        def _chunk(self, delta: dict[str, Any], finish: str | None) -> None:
            chunk = {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": "test",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()

    return Handler


@pytest.fixture
def openai_server(settings: Any, monkeypatch: pytest.MonkeyPatch, chat_env: None) -> Iterator[FakeOpenAI]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    state = FakeOpenAI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.LLM_BACKEND = "openai"
    settings.LLM_BASE_URL = f"http://127.0.0.1:{state.port}/v1"
    settings.LLM_MODEL = "test"
    settings.LLM_TEMPERATURE = 0.2
    settings.LLM_MAX_TOKENS = 123
    settings.LLM_TIMEOUT_S = 5.0
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


async def test_answer_streams_through_from_an_openai_compatible_server(chat: Chat, openai_server: FakeOpenAI):
    sent = await chat.send("¿Cuánto cuesta la suscripción?")
    assert "replace" not in sent.names()
    assert [t["text"] for t in sent.of("token")] == ANSWER_PIECES
    [reply] = sent.replies
    assert reply["text"] == "La Rodamar Urbana cuesta 39 € al mes [1]."
    stored = await sync_to_async(Message.objects.get)(pk=reply["id"])
    assert stored.model_used == "openai:test"
    assert stored.text == reply["text"]


async def test_request_carries_the_system_prompt_and_the_configured_sampling(chat: Chat, openai_server: FakeOpenAI):
    await chat.send("¿Cuánto cuesta la suscripción?")
    assert openai_server.paths == ["/v1/chat/completions"]
    [request] = openai_server.requests
    assert request["model"] == "test"
    assert request["stream"] is True
    assert request["temperature"] == 0.2
    assert request.get("max_completion_tokens", request.get("max_tokens")) == 123
    system, user = request["messages"]
    assert system["role"] == "system"
    assert system["content"].startswith("You are the customer-support assistant of Rodamar.")
    assert "untrusted data" in system["content"]
    assert user["role"] == "user"
    assert "<knowledge>" in user["content"]
    assert "39 € al mes" in user["content"]
    assert "<customer_message>\n¿Cuánto cuesta la suscripción?\n</customer_message>" in user["content"]


async def test_invented_figure_from_the_server_is_replaced_by_the_vetted_answer(
    chat: Chat, openai_server: FakeOpenAI, entry
):
    openai_server.pieces = ["Cuesta ", "19 € ", "al mes [1]."]
    sent = await chat.send("¿Cuánto cuesta la suscripción?")
    vetted = (await sync_to_async(entry)("rd-price")).answer
    assert sent.of("replace") == [{"text": vetted}]
    assert sent.replies[0]["text"] == vetted


async def test_server_error_hands_the_conversation_to_a_person(chat: Chat, openai_server: FakeOpenAI):
    openai_server.status = 503
    sent = await chat.send("¿Cuánto cuesta la suscripción?")
    assert sent.names()[-3:] == ["message", "status", "done"]
    assert sent.replies[-1]["role"] == "system"
    assert sent.of("status")[-1]["status"] == "waiting_for_agent"
    assert len(openai_server.requests) == 1  # max_retries=0: the customer is not kept waiting by retries
