"""Requests no FAQ covers, against FAQs of different sizes: how many are answered, offered choices, handed over.

The requests are clinc150 validation's 100 out-of-scope ones ("what are black holes", "how much food should i feed
my cat"); the FAQs are the demo's, soportemax's and vuelalto's, whole and as random 15-entry samples. Default
thresholds, the production decision (``score_texts``, ``decide``, ``offers_choices``). ``--no-floor`` scores as if
the encoder had no similarity floor for unrelated text (``RoutingModel.min_similarity``), as before it existed.

    .venv/bin/python benchmarks/off_domain.py [--no-floor] [--samples 3] [--size 15]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, SHARED_DATA, isolated_django, machine

FAQS = {
    "demo": ROOT / "demo" / "rodamar-faq.jsonl",
    "soportemax": SHARED_DATA / "soportemax" / "faq.jsonl",
    "vuelalto": SHARED_DATA / "vuelalto" / "faq.jsonl",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-floor", action="store_true", help="score without the similarity floor")
    parser.add_argument("--samples", type=int, default=3, help="random samples per FAQ at --size entries")
    parser.add_argument("--size", type=int, default=15)
    args = parser.parse_args()
    folder = isolated_django()
    from knowledge import intents, routing
    from knowledge.actions import source_for_location, sync_source
    from knowledge.models import KnowledgeBase

    rows = [json.loads(line) for line in (SHARED_DATA / "clinc150" / "val.jsonl").open(encoding="utf-8")]
    requests = [row["text"] for row in rows if row["faq_id"] is None]
    requests = [text for text in requests if intents.detect(text) is None]  # a person or a risk: never scored

    def figures(label: str, entries: list[dict], n: int) -> str:
        path = folder / f"faq-{n}.jsonl"
        path.write_text("".join(json.dumps(entry, ensure_ascii=False) + "\n" for entry in entries), encoding="utf-8")
        kb = KnowledgeBase.objects.create(slug=f"off-domain-{n}", name=label)
        sync_source(source_for_location(kb, str(path)))
        model = routing.untrained_model(kb)
        if args.no_floor:
            model.min_similarity = 0.0
        scored = routing.score_texts(kb, model, requests)
        answered = sum(model.decide(s) for s in scored)
        offered = sum(model.offers_choices(s) for s in scored)
        return f"| {label} | {len(entries)} | {100 * answered / len(scored):.1f} | {100 * offered / len(scored):.1f} |"

    lines = ["| FAQ | entries | answered % | choices offered % |", "|---|---|---|---|"]
    for name, path in FAQS.items():
        faq = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
        if name != "demo":
            for sample in range(args.samples):
                part = random.Random(sample).sample(faq, args.size)
                lines.append(figures(f"{name}, sample {sample}", part, len(lines)))
        lines.append(figures(name, faq, len(lines)))
    print(f"{len(requests)} out-of-scope requests, {'no floor' if args.no_floor else 'floor on'}; {machine()}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
