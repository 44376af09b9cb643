"""The cross-set protocol of EVAL.md's generalisation rule, in one command: does the decision hold for a company
nobody tuned it for?

For soportemax and vuelalto (each a FAQ with a small dev file):
- ``default``: no calibration at all (what a new company gets on day one);
- ``A -> B``: thresholds calibrated on A's dev file, applied unchanged to B (``evaluate --thresholds``);
- ``cv``: 5-fold cross-validation within a set (calibrate on 4/5, measure on the other 1/5), outcomes pooled;
and, with ``--public``, clinc150 and banking77_oos with their examples (``--examples train --calibrate val``).
Every figure comes from ``manage.py evaluate``, the production decision.

    .venv/bin/python benchmarks/generalisation.py [--public] [--folds 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
SMALL = ("soportemax", "vuelalto")


def evaluate(folder: Path, name: str, faq: Path, queries: Path, *extra: str) -> dict[str, Any]:
    out = folder / f"{name}.json"
    command = [sys.executable, str(ROOT / "manage.py"), "evaluate", "--faq", str(faq), "--queries", str(queries)]
    subprocess.run([*command, *extra, "--json", str(out)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result


def pooled(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures over the outcomes of several runs together (cross-validation folds)."""
    from knowledge.evaluation import LabelledQuery, Outcome, figures

    outcomes = [
        Outcome(
            LabelledQuery(q["text"], q["faq_id"], q["lang"], q["kind"]),
            q["answered"],
            q["reason"],
            0.0,
            tuple(q["offered"]),
        )
        for result in results
        for q in result["queries"]
    ]
    figs = figures(outcomes)
    figs["per_lang"] = {
        lang: figures([o for o in outcomes if o.query.lang == lang])
        for lang in sorted({o.query.lang for o in outcomes})
    }
    others = [o for o in outcomes if o.query.kind != "handoff_request"]
    figs["human_request_false_positive_rate"] = (
        sum(1 for o in others if o.reason == "human_request") / len(others) if others else None
    )
    return figs


def folds(rows: list[str], k: int, seed: int) -> list[list[str]]:
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    return [shuffled[i::k] for i in range(k)]


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}"


def row(name: str, figs: dict[str, Any]) -> str:
    langs = figs.get("per_lang", {})
    es_en = " / ".join(pct(langs[lang]["total_resolution"]) for lang in ("es", "en") if lang in langs) or "-"
    keys = ("auto_resolution", "choice_resolution", "total_resolution", "wrong_answer_rate", "choice_rate",
            "oos_recall", "handoff_reason_recall", "human_request_false_positive_rate")  # fmt: skip
    return f"| {name} | " + " | ".join(pct(figs.get(key)) for key in keys) + f" | {es_en} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--public", action="store_true", help="also clinc150 and banking77_oos (about 30 minutes)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
    import django

    django.setup()

    lines = [
        "| set: protocol | auto | choice | total | wrong (direct) | choices offered | out of scope → person "
        "| person requests as human_request | human_request false positives | total es / en |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="generalisation-") as tmp:
        folder = Path(tmp)
        calibrated: dict[str, Path] = {}
        for name in SMALL:
            faq, dev = DATA / name / "faq.jsonl", DATA / name / "dev.jsonl"
            lines.append(row(f"{name}: default thresholds", evaluate(folder, f"{name}-default", faq, dev)))
            result = evaluate(folder, f"{name}-self", faq, dev, "--calibrate", str(dev))
            calibrated[name] = folder / f"{name}-self.json"
            lines.append(row(f"{name}: calibrated on itself (in-sample)", result))
        for source, target in (SMALL, SMALL[::-1]):
            faq, dev = DATA / target / "faq.jsonl", DATA / target / "dev.jsonl"
            result = evaluate(folder, f"{source}-to-{target}", faq, dev, "--thresholds", str(calibrated[source]))
            lines.append(row(f"{target}: thresholds from {source}", result))
        for name in SMALL:
            faq, dev = DATA / name / "faq.jsonl", DATA / name / "dev.jsonl"
            rows = [line for line in dev.read_text(encoding="utf-8").splitlines() if line.strip()]
            results = []
            parts = folds(rows, args.folds, args.seed)
            for k, held in enumerate(parts):
                train = [line for j, part in enumerate(parts) if j != k for line in part]
                (folder / f"{name}-cal{k}.jsonl").write_text("\n".join(train) + "\n", encoding="utf-8")
                (folder / f"{name}-test{k}.jsonl").write_text("\n".join(held) + "\n", encoding="utf-8")
                calibrate = ("--calibrate", str(folder / f"{name}-cal{k}.jsonl"))
                results.append(evaluate(folder, f"{name}-cv{k}", faq, folder / f"{name}-test{k}.jsonl", *calibrate))
            lines.append(row(f"{name}: {args.folds}-fold cross-validation", pooled(results)))
        if args.public:
            public = {
                "clinc150": ("train.jsonl", "val.jsonl"),
                "banking77_oos": ("train.jsonl", "valid.jsonl"),
            }
            for name, (train_file, val_file) in public.items():
                faq, val, train = DATA / name / "faq.jsonl", DATA / name / val_file, DATA / name / train_file
                extra = ("--examples", str(train), "--calibrate", str(val))
                lines.append(row(f"{name}: --examples train --calibrate val", evaluate(folder, name, faq, val, *extra)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
