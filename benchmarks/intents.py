"""The risk-and-intent stage: precision and recall per class, on the bank's held-out split and on the dev files.

    .venv/bin/python benchmarks/intents.py [--refit] [--show]

- held-out split: the neighbour detector built from the *train* split only (its margin was chosen there),
  alone and behind the rules, scored on the held-out phrases.
- dev files (soportemax, vuelalto): the production ``detect()`` (rules, then neighbours over the whole bank).
  ``handoff_request`` rows should come out as ``human_request``; no other row should, and no FAQ
  paraphrase should be flagged as any risk.
``--refit`` re-embeds the bank and re-chooses the margin on the train split before measuring.
``--show`` lists every dev row that is missed or flagged.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from common import SHARED_DATA, isolated_django

SETS = ("soportemax", "vuelalto")


def per_class(predicted: Sequence[str], gold: Sequence[str], classes: Sequence[str]) -> list[str]:
    lines = [f"  {'class':<16}{'n':>5}{'flagged':>9}{'precision':>11}{'recall':>8}"]
    for name in classes:
        flagged = sum(1 for p in predicted if p == name)
        n = sum(1 for g in gold if g == name)
        right = sum(1 for p, g in zip(predicted, gold, strict=True) if p == g == name)
        precision = f"{right / flagged:.1%}" if flagged else "-"
        recall = f"{right / n:.1%}" if n else "-"
        lines.append(f"  {name:<16}{n:>5}{flagged:>9}{precision:>11}{recall:>8}")
    misses = sum(1 for p, g in zip(predicted, gold, strict=True) if g == "none" and p != "none")
    negatives = sum(1 for g in gold if g == "none")
    lines.append(f"  {'none flagged':<16}{negatives:>5}{misses:>9}   ({misses / max(negatives, 1):.1%} of near misses)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--refit", action="store_true")
    parser.add_argument("--show", action="store_true")
    args = parser.parse_args()
    isolated_django()

    from knowledge import intents
    from knowledge.embeddings import get_encoder
    from knowledge.handoff import reason_by_rule

    if args.refit:
        stored = intents.refit()
        print(f"refit: margin {stored['margin']} (train leave-one-out {stored['train_leave_one_out']})")
    stored = intents.read_settings()
    print(
        f"neighbours: k={stored['k']} min_votes={stored['min_votes']} margin={stored['margin']} ({stored['chosen_on']})"
    )
    classes = [reason.value for reason in intents.DETECTED]

    phrases = intents.load_bank()
    held = [p for p in phrases if p.split == "heldout"]
    train_only = intents.build_detector(splits=("train",))
    vectors = intents.bank_vectors(held)
    gold = [p.label.value if p.label else "none" for p in held]
    by_neighbours = [m.reason.value if m else "none" for m in train_only.classify_many(vectors)]
    with_rules = []
    for phrase, neighbour in zip(held, by_neighbours, strict=True):
        rule = reason_by_rule(phrase.text)
        with_rules.append(rule.value if rule else neighbour)
    print(f"\nheld-out split ({len(held)} phrases), neighbours alone, detector from the train split:")
    print("\n".join(per_class(by_neighbours, gold, classes)))
    print("held-out split, rules then neighbours (the rules were written with the whole bank in view):")
    print("\n".join(per_class(with_rules, gold, classes)))
    for lang in ("es", "en"):
        index = [i for i, p in enumerate(held) if p.lang == lang]
        print(f"held-out split, rules then neighbours, {lang}:")
        print("\n".join(per_class([with_rules[i] for i in index], [gold[i] for i in index], classes)))

    encoder = get_encoder()
    print("\ndev files, production detect():")
    print(
        f"  {'set':<12}{'handoff rows':>13}{'as human_request':>18}{'other rows':>12}{'human_request FP':>18}"
        f"{'paraphrase flagged':>20}{'oos flagged (risk)':>20}{'neighbours alone: recall / FP':>32}"
    )
    shown: list[str] = []
    for name in SETS:
        rows = [json.loads(line) for line in (SHARED_DATA / name / "dev.jsonl").open(encoding="utf-8")]
        dev_vectors = encoder.embed([row["text"] for row in rows], is_query=True)
        found = [intents.detect(row["text"], vector) for row, vector in zip(rows, dev_vectors, strict=True)]
        alone = intents.neighbour_detector().classify_many(dev_vectors)
        kinds = [row.get("kind") == "handoff_request" for row in rows]
        alone_recall = sum(1 for m, h in zip(alone, kinds, strict=True) if h and m and m.reason == "human_request")
        alone_fp = sum(1 for m, h in zip(alone, kinds, strict=True) if not h and m and m.reason == "human_request")
        handoff = [(r, m) for r, m in zip(rows, found, strict=True) if r.get("kind") == "handoff_request"]
        others = [(r, m) for r, m in zip(rows, found, strict=True) if r.get("kind") != "handoff_request"]
        recall = sum(1 for _, m in handoff if m and m.reason == "human_request")
        false_hr = sum(1 for _, m in others if m and m.reason == "human_request")
        paraphrase_flagged = sum(1 for r, m in others if m and r.get("kind") == "paraphrase")
        paraphrases = sum(1 for r, _ in others if r.get("kind") == "paraphrase")
        oos_risk = sum(
            1 for r, m in others if m and m.reason != "human_request" and r.get("kind", "").startswith("oos")
        )
        oos = sum(1 for r, _ in others if r.get("kind", "").startswith("oos"))
        print(
            f"  {name:<12}{len(handoff):>13}{recall / len(handoff):>18.1%}{len(others):>12}"
            f"{false_hr / len(others):>18.1%}{f'{paraphrase_flagged}/{paraphrases}':>20}{f'{oos_risk}/{oos}':>20}"
            f"{f'{alone_recall / len(handoff):.1%} / {alone_fp / len(others):.1%}':>32}"
        )
        for row, match in handoff + others:
            expected = "human_request" if row.get("kind") == "handoff_request" else None
            got = match.reason.value if match else None
            if got != expected:
                how = f"{match.via} {match.score:.3f}" if match else ""
                shown.append(f"  {name[:4]} {row.get('kind', ''):<16}{got or 'none':<16}{how:<18}{row['text'][:90]}")
    if args.show and shown:
        print("\nrows missed or flagged:")
        print("\n".join(shown))


if __name__ == "__main__":
    main()
