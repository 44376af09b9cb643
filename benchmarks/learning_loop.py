"""The learning loop, measured: a learning curve, retraining cost, and what logging adds to a chat turn.

    .venv/bin/python benchmarks/learning_loop.py --set soportemax          # replay half of dev, evaluate the other half
    .venv/bin/python benchmarks/learning_loop.py --set clinc150 --limit 10000   # replay train, evaluate val
    .venv/bin/python benchmarks/learning_loop.py --seeds 10   # soportemax, 10 seeds: how often the gate promotes
    .venv/bin/python benchmarks/learning_loop.py --seeds 10 --set vuelalto --fine-tune   # the same, fine-tuning on

Learning curve: the FAQ is ingested; the held-back queries are routed (before); the replayed queries
go through the logging path as confirmed conversations (`learning.replay`, what `manage.py replay`
does); a retraining job runs (learn phrasings, train the head, recalibrate, gate, promote); the same
held-back queries are routed again (after). ``--fine-tune``: the job also fine-tunes the encoder
(LEARNING_FINE_TUNE). Logging overhead: the time to store a bot reply with
and without the learning signal that enqueues the turn log (filesystem broker).
"""

from __future__ import annotations

import argparse
import io
import json
import time
from typing import Any, cast

from common import SHARED_DATA, isolated_django, machine, percentiles, timed_retraining

SETS = {
    "soportemax": ("soportemax/faq.jsonl", "soportemax/dev.jsonl", None),
    "vuelalto": ("vuelalto/faq.jsonl", "vuelalto/dev.jsonl", None),
    "clinc150": ("clinc150/faq.jsonl", "clinc150/train.jsonl", "clinc150/val.jsonl"),
    "banking77_oos": ("banking77_oos/faq.jsonl", "banking77_oos/train.jsonl", "banking77_oos/valid.jsonl"),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", choices=sorted(SETS), default="soportemax")
    parser.add_argument("--limit", type=int, default=0, help="replay at most this many queries")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--seeds", type=int, default=0, help="this many seeds from --seed, each on a fresh knowledge base (small sets)"
    )
    parser.add_argument("--fine-tune", action="store_true", help="retraining also fine-tunes the encoder")
    args = parser.parse_args()
    isolated_django()
    from django.conf import settings

    settings.LEARNING_FINE_TUNE = args.fine_tune
    if args.seeds:
        promotion_rate(args.set, args.seed, args.seeds)
        return
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
    if held is None:  # soportemax, vuelalto: one half replayed, the other half measured
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
            offered = tuple(keys[c.entry_id] for c in decision.choices if c.entry_id in keys)
            reason = str(decision.reason or decision.outcome)
            outcomes.append(Outcome(query, answered, reason, decision.latency_ms, offered))
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


def promotion_rate(name: str, first: int, count: int) -> None:
    """The supported path, once per seed on a fresh knowledge base: ingest the set's FAQ, ``manage.py replay``
    half of dev, ``manage.py retrain``. The other half measures the live version before, the candidate (promoted
    or not) and the live version after, with the gate's own decision function (total resolution = direct +
    choices). A candidate is "really better" when it resolves more of the other half without more wrong answers.
    A refused candidate with its own encoder is measured on that encoder's index (its file is kept for it).
    """
    from django.conf import settings
    from django.core.management import call_command

    from knowledge import index, routing
    from knowledge.actions import get_or_create_knowledge_base, source_for_location, sync_source
    from knowledge.evaluation import LabelledQuery, read_queries
    from knowledge.models import Entry, RoutingVersion
    from learning import actions, finetune, replay, retraining
    from learning.models import RetrainingJob

    faq, dev = SHARED_DATA / name / "faq.jsonl", SHARED_DATA / name / "dev.jsonl"
    queries = read_queries(dev)
    finetune.discard = lambda version: None  # keep a refused candidate's encoder: it is measured below
    rows: list[tuple[int, str, bool, dict[str, Any], dict[str, Any], dict[str, Any]]] = []
    print(
        f"machine: {machine()}; {name}: replay half of dev, retrain (fine-tuning the encoder: "
        f"{settings.LEARNING_FINE_TUNE}), measure the other half; seeds {first}.."
    )
    for seed in range(first, first + count):
        kb = get_or_create_knowledge_base(f"{name}-{seed}")
        source = source_for_location(kb, str(faq))
        sync_source(source)
        pks = dict(Entry.objects.filter(source=source).values_list("key", "pk"))
        other = [
            LabelledQuery(q.text, str(pks[q.faq_id]) if q.faq_id else None, q.lang, q.kind)
            for q in replay.pick_half(queries, "second", seed)
        ]
        started = time.perf_counter()
        call_command("replay", str(dev), "--kb", kb.slug, "--half", "first", "--seed", str(seed), stdout=io.StringIO())
        _, live = routing.active_model(kb)
        before = retraining.evaluate(kb, live, other)
        call_command("retrain", "--kb", kb.slug, stdout=io.StringIO())
        seconds = time.perf_counter() - started
        job = RetrainingJob.objects.filter(knowledge_base=kb).latest("pk")
        _, live = routing.active_model(kb)
        after = retraining.evaluate(kb, live, other)
        candidate = after
        if job.candidate is not None and job.status != RetrainingJob.Status.PROMOTED:
            actions.sync_learned_examples(kb, actions.learned_examples_of(job.candidate))
            own = index.shadow(kb, job.candidate.encoder) if job.candidate.encoder != kb.encoder else None
            candidate = retraining.evaluate(kb, routing.load_model(kb, job.candidate.model), other, own)
            active = RoutingVersion.objects.filter(knowledge_base=kb, is_active=True).first()
            actions.sync_learned_examples(kb, actions.learned_examples_of(active))
        better = resolved(candidate) > resolved(before) and wrong(candidate) <= wrong(before)
        rows.append((seed, job.status, better, before, candidate, after))
        gate = job.metrics.get("gate", {})
        encoder = "fine-tuned encoder" if job.candidate and job.candidate.encoder else "deployment encoder"
        print(
            f"seed {seed}: {job.status} ({encoder}) in {seconds:.0f}s; other half ({len(other)}): total resolution "
            f"{before['total_resolution']:.3f} -> candidate {candidate['total_resolution']:.3f}, wrong answers "
            f"{wrong(before)} -> {wrong(candidate)}; really better: {better}; live after: "
            f"{after['total_resolution']:.3f}",
            flush=True,
        )
        for line in [*gate.get("evidence", []), *gate.get("reasons", [])]:
            print(f"    gate: {line}", flush=True)
    promoted = sum(1 for row in rows if row[1] == RetrainingJob.Status.PROMOTED)
    really_better = [row for row in rows if row[2]]
    promoted_better = sum(1 for row in really_better if row[1] == RetrainingJob.Status.PROMOTED)
    refused_worse = sum(1 for row in rows if not row[2] and row[1] != RetrainingJob.Status.PROMOTED)

    def mean(key: str, at: int) -> float:
        values = [cast(dict[str, Any], row[at])[key] for row in rows]
        return sum(float(value) for value in values) / len(values)

    print(
        f"promoted {promoted} of {len(rows)} seeds; really better in {len(really_better)}, of which promoted "
        f"{promoted_better}; not better and refused: {refused_worse} of {len(rows) - len(really_better)}; mean total "
        f"resolution on the other half {mean('total_resolution', 3):.3f} -> candidate "
        f"{mean('total_resolution', 4):.3f}, live after {mean('total_resolution', 5):.3f}"
    )


def resolved(figures: dict) -> int:
    return figures["verdicts"].count("R") + figures["verdicts"].count("C")


def wrong(figures: dict) -> int:
    return figures["verdicts"].count("W") + figures["verdicts"].count("A")


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
