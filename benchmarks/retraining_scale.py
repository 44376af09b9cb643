"""Retraining cost at scale: wall time and peak memory of one job over 10,000 or 100,000 logged turns.

    .venv/bin/python benchmarks/retraining_scale.py --turns 10000
    .venv/bin/python benchmarks/retraining_scale.py --turns 100000

The knowledge base is clinc150's FAQ (150 entries). The turns are clinc150 training queries, confirmed
as their label says (an entry, or not covered), like `manage.py replay` leaves them. They are written
straight to the database in the shape the logging task writes (conversation, customer message, the
bot's escalation notice, turn log): going through the chat, as the replay does, takes 28 ms a turn.
Beyond the 15,000 real queries, each one comes back with a greeting and/or a closing ("hi, … thanks"),
so that every turn is a distinct text the job must embed. The job then runs as "Retrain now" runs it:
read again the turns whose conversation changed since they were logged (``--changed``), derive labels,
learn phrasings, train the head, calibrate, evaluate against the live version, export, gate.

With ``LEARNING_FINE_TUNE=true`` the job also fine-tunes the encoder, and learns the same on the bundled encoder to
compare the two (gate rule 7): every job with fine-tuning takes that path.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
import uuid

from common import SHARED_DATA, isolated_django, machine, timed_retraining

OPENINGS = ["", "hi, ", "hello, ", "hey there, ", "good morning, ", "excuse me, ", "quick question: "]
CLOSINGS = ["", " thanks", " please", " thank you!", " asap", " cheers", " if you can"]


def variants(texts: list[str], count: int) -> list[tuple[str, str]]:
    """``count`` distinct (text, original) pairs: the originals first, then each with an opening and/or a closing."""
    out: list[tuple[str, str]] = []
    for opening, closing in itertools.product(OPENINGS, CLOSINGS):
        out += [(f"{opening}{t}{closing}", t) for t in texts]
        if len(out) >= count:
            break
    return out[:count]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument(
        "--changed", type=float, default=0.1, help="share of conversations an agent writes in after they were logged"
    )
    args = parser.parse_args()
    isolated_django()
    from django.db import transaction

    from chat.models import Conversation, Message
    from knowledge.actions import get_or_create_knowledge_base, source_for_location, sync_source
    from knowledge.models import Entry
    from learning import actions
    from learning.models import TurnLog

    kb = get_or_create_knowledge_base("clinc150")
    source = source_for_location(kb, str(SHARED_DATA / "clinc150" / "faq.jsonl"))
    sync_source(source)
    entries = {e.key: e for e in Entry.objects.filter(source=source)}
    rows = [json.loads(line) for line in (SHARED_DATA / "clinc150" / "train.jsonl").open()]
    labels = {r["text"]: r.get("faq_id") for r in rows}
    texts = variants(list(labels), args.turns)

    started = time.perf_counter()
    with transaction.atomic():
        for start in range(0, len(texts), 2000):
            batch = texts[start : start + 2000]
            conversations = [
                Conversation(
                    id=uuid.uuid4(), knowledge_base=kb, channel="api", status="resolved", language="en", token_hash="x"
                )
                for _ in batch
            ]
            Conversation.objects.bulk_create(conversations)
            pairs = zip(conversations, batch, strict=True)
            questions = Message.objects.bulk_create(
                [Message(conversation=c, role="customer", text=text) for c, (text, _) in pairs]
            )
            replies = Message.objects.bulk_create(
                [
                    Message(
                        conversation=c,
                        role="system",
                        text="A person will reply here.",
                        reply_to=q,
                        decision={"reason": "low_confidence"},
                    )
                    for c, q in zip(conversations, questions, strict=True)
                ]
            )
            logs = []
            for c, q, r, (text, original) in zip(conversations, questions, replies, batch, strict=True):
                entry = entries.get(labels[original] or "")
                logs.append(
                    TurnLog(
                        knowledge_base=kb,
                        conversation=c,
                        question=q,
                        reply=r,
                        text=text,
                        language="en",
                        decision_reason="low_confidence",
                        resolution_entry=entry,
                        confirmed_out_of_scope=entry is None,
                        resolved=True,
                        split=actions.split_for(c.pk),
                    )
                )
            TurnLog.objects.bulk_create(logs)
        # after logging, an agent writes in some conversations: only those turns are read again by the job
        changed = Conversation.objects.filter(knowledge_base=kb).order_by("?")[: int(len(texts) * args.changed)]
        Message.objects.bulk_create(
            [Message(conversation=c, role="agent", text="Anything else I can help with?") for c in changed]
        )
    written_s = time.perf_counter() - started

    job, job_line = timed_retraining(kb)
    print(
        f"machine: {machine()}; turns: {len(texts)}, {args.changed:.0%} of them changed after logging "
        f"(written in {written_s:.0f}s)"
    )
    print(job_line)
    print("stage times (from the job log):\n" + job.log)


if __name__ == "__main__":
    main()
