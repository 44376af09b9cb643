"""The one seam that builds the chat model, chosen by LLM_BACKEND.

- ``extractive`` (default): no language model; the answer is the matched entry's vetted text.
- ``llamacpp``: a local GGUF file (LLM_MODEL_PATH) through llama-cpp-python, an optional extra.
- ``openai``: any OpenAI-compatible server (vLLM, llama.cpp server, Ollama, OpenAI) at LLM_BASE_URL.

Tests replace ``get_chat_model`` with a fake chat model; nothing else in the chain knows which
backend is in use.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult


class LLMUnavailable(Exception):
    """The configured language model cannot be used (missing file, missing extra, bad settings)."""


class LlamaCppChatModel(BaseChatModel):
    """A local GGUF model through llama-cpp-python, streamed token by token."""

    model_path: str
    n_ctx: int = 2048
    n_threads: int = 2
    temperature: float = 0.1
    max_tokens: int = 300

    @property
    def _llm_type(self) -> str:
        return "llamacpp"

    def _client(self) -> Any:
        return _llama(self.model_path, self.n_ctx, self.n_threads)

    @staticmethod
    def _messages(messages: list[BaseMessage]) -> list[dict[str, str]]:
        roles = {"system": "system", "human": "user", "ai": "assistant"}
        return [{"role": roles.get(m.type, "user"), "content": str(m.content)} for m in messages]

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = "".join(chunk.text for chunk in self._stream(messages, stop, run_manager, **kwargs))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        client, lock = self._client()
        with lock:  # one generation at a time per loaded model
            for part in client.create_chat_completion(
                messages=self._messages(messages),
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                stop=stop,
                stream=True,
            ):
                delta = part["choices"][0].get("delta", {}).get("content") or ""
                if delta:
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=delta))
                    if run_manager is not None:
                        run_manager.on_llm_new_token(delta, chunk=chunk)
                    yield chunk


@lru_cache(maxsize=2)
def _llama(path: str, n_ctx: int, n_threads: int) -> tuple[Any, threading.Lock]:
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise LLMUnavailable("LLM_BACKEND=llamacpp needs llama-cpp-python: make llamacpp (see README)") from exc
    if not Path(path).is_file():
        raise LLMUnavailable(f"LLM_MODEL_PATH={path!r} is not a file")
    return Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, verbose=False), threading.Lock()


def build_chat_model(backend: str) -> BaseChatModel | None:
    if backend == "extractive":
        return None
    if backend == "llamacpp":
        if not settings.LLM_MODEL_PATH:
            raise LLMUnavailable("LLM_BACKEND=llamacpp needs LLM_MODEL_PATH (a .gguf file)")
        return LlamaCppChatModel(
            model_path=settings.LLM_MODEL_PATH,
            n_ctx=settings.LLM_CONTEXT_TOKENS,
            n_threads=settings.LLM_THREADS,
            temperature=settings.LLM_TEMPERATURE,
            max_tokens=settings.LLM_MAX_TOKENS,
        )
    if backend == "openai":
        if not settings.LLM_BASE_URL or not settings.LLM_MODEL:
            raise LLMUnavailable("LLM_BACKEND=openai needs LLM_BASE_URL and LLM_MODEL")
        from langchain_openai import ChatOpenAI
        from pydantic import SecretStr

        return ChatOpenAI(
            base_url=settings.LLM_BASE_URL,
            api_key=SecretStr(settings.LLM_API_KEY or "not-needed"),
            model=settings.LLM_MODEL,
            temperature=settings.LLM_TEMPERATURE,
            max_completion_tokens=settings.LLM_MAX_TOKENS,
            timeout=settings.LLM_TIMEOUT_S,
            max_retries=0,
            streaming=True,
        )
    raise LLMUnavailable(f"unknown LLM_BACKEND {backend!r}")


_cache: dict[tuple[str, str, str, str], BaseChatModel | None] = {}


def get_chat_model() -> BaseChatModel | None:
    """The configured chat model (None for the extractive backend), built once per configuration."""
    key = (settings.LLM_BACKEND, settings.LLM_MODEL_PATH, settings.LLM_BASE_URL, settings.LLM_MODEL)
    if key not in _cache:
        _cache[key] = build_chat_model(settings.LLM_BACKEND)
    return _cache[key]


def model_name() -> str:
    if settings.LLM_BACKEND == "llamacpp":
        return f"llamacpp:{Path(settings.LLM_MODEL_PATH).name}"
    if settings.LLM_BACKEND == "openai":
        return f"openai:{settings.LLM_MODEL}"
    return "extractive"
