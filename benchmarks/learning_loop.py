"""The learning loop, measured: a learning curve, retraining cost, and what logging adds to a chat turn.

    .venv/bin/python benchmarks/learning_loop.py --set soportemax          # replay half of dev, evaluate the other half
    .venv/bin/python benchmarks/learning_loop.py --set clinc150 --limit 10000   # replay train, evaluate val

Learning curve: the FAQ is ingested; the held-back queries are routed (before); the replayed queries
go through the logging path as confirmed conversations (`learning.replay`, what `manage.py replay`
does); a retraining job runs (learn phrasings, train the head, recalibrate, gate, promote); the same
held-back queries are routed again (after). Logging overhead: the time to store a bot reply with
and without the learning signal that enqueues the turn log (filesystem broker).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from common import SHARED_DATA, isolated_django, machine, percentiles, timed_retraining

SETS = {
    "soportemax": ("soportemax/faq.jsonl", "soportemax/dev.jsonl", None),
    "clinc150": ("clinc150/faq.jsonl", "clinc150/train.jsonl", "clinc150/val.jsonl"),
    "banking77_oos": ("banking77_oos/faq.jsonl", "banking77_oos/train.jsonl", "banking77_oos/valid.jsonl"),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", choices=sorted(SETS), default="soportemax")
    parser.add_argument("--limit", type=int, default=0, help="replay at most this many queries")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    isolated_django()
    from knowledge.actions import get_or_create_knowledge_base, source_for_location, sync_source
    from knowledge.evaluation import Outcome, figures, read_queries
    from knowledge.models import Entry
    from knowledge.routing import route
    from learning import replay

    faq, train, held = SETS[args.set]
    kb = get_or_create_knowledge_base(args.set)
    source = source_for_location(kb, str(SHARED_DATA / faq))
    sync_source(source)
    keys = {e.pk: e.key for e in Entry.objects.filter(source=source)}
    if held is None:  # soportemax: one half replayed, the other half measured
        queries = read_queries(SHARED_DATA / train)
        taught = replay.pick_half(queries, "first", args.seed)
        measured = replay.pick_half(queries, "second", args.seed)
    else:
        taught, measured = read_queries(SHARED_DATA / train), read_queries(SHARED_DATA / held)
    if args.limit:
        taught = taught[: args.limit]

    def measure() -> dict:
        outcomes = []
        for query in measured:
            decision = route(kb, query.text)
            answered = keys.get(decision.entry.pk) if decision.answer and decision.entry else None
            outcomes.append(Outcome(query, answered, decision.reason, decision.latency_ms))
        return figures(outcomes)

    before = measure()
    started = time.perf_counter()
    report = replay.replay(kb, taught)
    replay_s = time.perf_counter() - started
    job, job_line = timed_retraining(kb)
    after = measure()

    overhead = logging_overhead(kb)
    print(f"machine: {machine()}; set: {args.set}; replayed {report.replayed} turns in {replay_s:.0f}s")
    print(job_line)
    print(f"before: {json.dumps(before)}")
    print(f"after:  {json.dumps(after)}")
    print(f"logging overhead on storing a reply: p50 {overhead['p50']} ms, p95 {overhead['p95']} ms")
    print("job log:\n" + job.log[-3000:])


def logging_overhead(kb: Any, runs: int = 300) -> dict[str, float]:
    """p50/p95 of (store a bot reply with the learning signal) − (without it)."""
    from django.db.models.signals import post_save

    from chat import actions
    from chat.models import Conversation, Message
    from learning import signals

    conversation = Conversation.objects.create(knowledge_base=kb, token_hash="x")

    def timed() -> list[float]:
        values = []
        for i in range(runs):
            question = Message.objects.create(conversation=conversation, role="customer", text=f"q{i}")
            started = time.perf_counter()
            actions.record_bot_message(conversation, question, "answer", decision={})
            values.append((time.perf_counter() - started) * 1000)
        return values

    with_signal = timed()
    post_save.disconnect(signals.message_saved, sender=Message, dispatch_uid="learning.log_turn")
    without = timed()
    a, b = percentiles(with_signal), percentiles(without)
    return {"p50": round(a["p50"] - b["p50"], 2), "p95": round(a["p95"] - b["p95"], 2)}


if __name__ == "__main__":
    main()
