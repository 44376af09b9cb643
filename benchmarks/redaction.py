"""Redaction before learning, scored span by span on the bilingual PII set (``knowledge/data/pii/pii.jsonl``).

    .venv/bin/python -m benchmarks.redaction [--errors]

Per type: precision (predicted spans of that type that overlap an expected span of that type), recall (expected
spans overlapped by a predicted span of the same type) and "whole" (expected spans entirely under a placeholder
of any type: nothing of the value is left in the text). Look-alikes (order numbers, prices, dates, flights, ...)
survive when no placeholder touches them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from knowledge.redaction import Span, find_personal_data

DATA = Path(__file__).resolve().parents[1] / "knowledge" / "data" / "pii" / "pii.jsonl"


def _overlaps(a: Span | dict[str, Any], b: Span | dict[str, Any]) -> bool:
    a_start, a_end = (a.start, a.end) if isinstance(a, Span) else (a["start"], a["end"])
    b_start, b_end = (b.start, b.end) if isinstance(b, Span) else (b["start"], b["end"])
    return a_start < b_end and b_start < a_end


def score(rows: list[dict[str, Any]]) -> dict[str, Any]:
    true_pos: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    expected: Counter[str] = Counter()
    found: Counter[str] = Counter()
    whole: Counter[str] = Counter()
    kept = total_keep = 0
    errors: list[str] = []
    for row in rows:
        text = row["text"]
        spans = find_personal_data(text)
        for span in spans:
            predicted[span.kind] += 1
            if any(g["type"] == span.kind and _overlaps(span, g) for g in row["spans"]):
                true_pos[span.kind] += 1
            elif not any(_overlaps(span, k) for k in row["keep"]):
                errors.append(f"extra {span.kind}: {text[span.start : span.end]!r} in {text!r}")
        for gold in row["spans"]:
            expected[gold["type"]] += 1
            if any(s.kind == gold["type"] and _overlaps(s, gold) for s in spans):
                found[gold["type"]] += 1
            else:
                errors.append(f"missed {gold['type']}: {gold['value']!r} in {text!r}")
            covered: set[int] = set()
            for s in spans:
                covered.update(range(s.start, s.end))
            if all(i in covered for i in range(gold["start"], gold["end"])):
                whole[gold["type"]] += 1
        for keep in row["keep"]:
            total_keep += 1
            hit = [s for s in spans if _overlaps(s, keep)]
            if hit:
                errors.append(f"look-alike lost ({keep['what']}): {keep['value']!r} as {hit[0].kind} in {text!r}")
            else:
                kept += 1
    types = sorted(expected | predicted)
    table = {
        kind: {
            "expected": expected[kind],
            "precision": true_pos[kind] / predicted[kind] if predicted[kind] else None,
            "recall": found[kind] / expected[kind] if expected[kind] else None,
            "whole": whole[kind] / expected[kind] if expected[kind] else None,
        }
        for kind in types
    }
    all_tp, all_pred, all_found, all_exp = (sum(c.values()) for c in (true_pos, predicted, found, expected))
    return {
        "rows": len(rows),
        "languages": dict(Counter(row["lang"] for row in rows)),
        "types": table,
        "micro": {"precision": all_tp / all_pred, "recall": all_found / all_exp, "expected": all_exp},
        "lookalikes": {"kept": kept, "total": total_keep},
        "errors": errors,
    }


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--errors", action="store_true", help="list every miss, extra span and lost look-alike")
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    result = score(rows)
    languages = ", ".join(f"{n} {lang}" for lang, n in sorted(result["languages"].items()))
    print(f"{result['rows']} rows ({languages})\n")
    print("| type | spans | precision | recall | whole value hidden |")
    print("|---|---:|---:|---:|---:|")
    for kind, row in result["types"].items():
        print(
            f"| {kind} | {row['expected']} | {_pct(row['precision'])} | {_pct(row['recall'])} | {_pct(row['whole'])} |"
        )
    micro = result["micro"]
    print(f"| all | {micro['expected']} | {_pct(micro['precision'])} | {_pct(micro['recall'])} | |")
    looks = result["lookalikes"]
    print(f"\nLook-alikes kept: {looks['kept']}/{looks['total']} ({_pct(looks['kept'] / looks['total'])})")
    if args.errors:
        print("\n" + "\n".join(result["errors"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
