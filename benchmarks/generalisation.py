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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
SMALL = ("soportemax", "vuelalto")


@dataclass
class Routed:
    """One set's dev questions, routed once: which were caught by the risk-and-intent stage, and the scores of the rest.

    The confidence is label-free, so a threshold pair decides every question without routing it again; this is
    ``route()`` step by step (``intents.detect``, ``score_texts``, ``decide``, ``offers_choices``).
    """

    queries: list[Any]
    caught: dict[int, str]  # query index -> hand-over reason of the risk-and-intent stage
    scored: dict[int, Any]  # query index -> Scored
    keys: dict[str, str]  # entry pk -> FAQ id
    model: Any


def route_set(name: str) -> Routed:
    from knowledge import intents, routing
    from knowledge.actions import source_for_location, sync_source
    from knowledge.evaluation import read_queries
    from knowledge.models import Entry, KnowledgeBase

    kb = KnowledgeBase.objects.create(slug=f"generalisation-{name}", name=name)
    source = source_for_location(kb, str(DATA / name / "faq.jsonl"))
    sync_source(source)
    queries = read_queries(DATA / name / "dev.jsonl")
    caught = {}
    for n, query in enumerate(queries):
        match = intents.detect(query.text)
        if match is not None:
            caught[n] = str(match.reason)
    model = routing.untrained_model(kb)
    rest = [n for n in range(len(queries)) if n not in caught]
    scored = dict(zip(rest, routing.score_texts(kb, model, [queries[n].text for n in rest]), strict=True))
    keys = {str(pk): key for key, pk in Entry.objects.filter(source=source).values_list("key", "pk")}
    return Routed(queries, caught, scored, keys, model)


def outcomes(routed: Routed, rows: list[int], answer_at: float, choices_at: float) -> list[Any]:
    from knowledge.evaluation import Outcome
    from knowledge.routing import MAX_CHOICES

    model = routed.model
    model.threshold, model.choice_threshold = answer_at, choices_at
    out = []
    for n in rows:
        query = routed.queries[n]
        if n in routed.caught:
            out.append(Outcome(query, None, routed.caught[n], 0.0))
            continue
        scored = routed.scored[n]
        if model.decide(scored):
            out.append(Outcome(query, routed.keys.get(str(scored.entry_id)), "answer", 0.0))
        elif model.offers_choices(scored):
            offered = tuple(routed.keys[e] for e, _ in scored.candidates[:MAX_CHOICES] if e in routed.keys)
            out.append(Outcome(query, None, "choices", 0.0, offered))
        else:
            out.append(Outcome(query, None, "low_confidence" if model.covers(scored) else "out_of_scope", 0.0))
    return out


def calibrate(routed: Routed, rows: list[int], target: float) -> tuple[float, float]:
    """The production calibration (``RoutingModel.calibrate``) on these rows; returns (answer, choice) thresholds."""
    from knowledge.routing_model import RoutingModel

    model = RoutingModel.from_dict(routed.model.to_dict())
    asked = [n for n in rows if n not in routed.caught]
    labels = [next((pk for pk, key in routed.keys.items() if key == routed.queries[n].faq_id), None) for n in asked]
    model.calibrate([routed.scored[n] for n in asked], labels, target_wrong_rate=target)
    return model.threshold, model.choice_threshold


MAX_CHOICE_SHARE = 0.30
"""The issue's limit on choices: offered to at most 30 % of messages."""


def fit_defaults(routed: dict[str, Routed], target: float) -> tuple[float, float]:
    """The default (answer, choices) pair fitted across both sets: the best worst-set total resolution whose direct
    answers stay within ``target`` and whose choices stay within MAX_CHOICE_SHARE of messages on every set."""
    from knowledge.evaluation import figures

    best: tuple[float, float, float] | None = None
    for answer_at in np.arange(0.60, 0.96, 0.01):
        for choices_at in np.arange(0.50, answer_at + 1e-9, 0.01):
            worst = 1.0
            for one in routed.values():
                figs = figures(outcomes(one, list(range(len(one.queries))), answer_at, choices_at))
                if (figs["wrong_answer_rate"] or 0.0) > target or (figs["choice_rate"] or 0.0) > MAX_CHOICE_SHARE:
                    worst = -1.0
                    break
                worst = min(worst, figs["total_resolution"] or 0.0)
            if worst >= 0 and (best is None or worst > best[0]):
                best = (worst, float(answer_at), float(choices_at))
    if best is None:
        raise SystemExit("no default pair meets the targets on every set")
    return round(best[1], 2), round(best[2], 2)


def evaluate_public(name: str, train_file: str, val_file: str) -> dict[str, Any]:
    """clinc150 / banking77_oos through ``manage.py evaluate`` itself (a throw-away database of its own)."""
    with tempfile.TemporaryDirectory(prefix="generalisation-") as folder:
        out = Path(folder) / "result.json"
        faq, val, train = DATA / name / "faq.jsonl", DATA / name / val_file, DATA / name / train_file
        command = [sys.executable, str(ROOT / "manage.py"), "evaluate", "--faq", str(faq), "--queries", str(val)]
        command += ["--examples", str(train), "--calibrate", str(val), "--json", str(out)]
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return result


def summarise(outs: list[Any]) -> dict[str, Any]:
    from knowledge.evaluation import figures

    figs = figures(outs)
    figs["per_lang"] = {lang: figures([o for o in outs if o.query.lang == lang]) for lang in ("es", "en")}
    others = [o for o in outs if o.query.kind != "handoff_request"]
    figs["human_request_false_positive_rate"] = (
        sum(1 for o in others if o.reason == "human_request") / len(others) if others else None
    )
    return figs


def folds(rows: list[int], k: int, seed: int) -> list[list[int]]:
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
    parser.add_argument(
        "--fit-defaults",
        action="store_true",
        help="print the default (answer, choices) thresholds fitted across both sets, and use them",
    )
    args = parser.parse_args()
    lines = [
        "| set: protocol | auto | choice | total | wrong (direct) | choices offered | out of scope → person "
        "| person requests as human_request | human_request false positives | total es / en |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="generalisation-") as tmp:
        # a throw-away database and index, like `evaluate`'s
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/db.sqlite3"
        os.environ["CHROMA_URL"] = ""
        os.environ["CHROMA_PATH"] = f"{tmp}/chroma"
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
        import django
        from django.conf import settings
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0, interactive=False)
        target = settings.TARGET_WRONG_ANSWER_RATE
        routed = {name: route_set(name) for name in SMALL}
        if args.fit_defaults:
            fitted = fit_defaults(routed, target)
            print("default thresholds fitted across both sets (answer, choices):", fitted)
            for one in routed.values():
                one.model.threshold, one.model.choice_threshold = fitted
        thresholds = {}
        for name in SMALL:
            every = list(range(len(routed[name].queries)))
            default = (routed[name].model.threshold, routed[name].model.choice_threshold)
            lines.append(row(f"{name}: default thresholds", summarise(outcomes(routed[name], every, *default))))
            thresholds[name] = calibrate(routed[name], every, target)
            own = summarise(outcomes(routed[name], every, *thresholds[name]))
            lines.append(row(f"{name}: calibrated on itself (in-sample)", own))
        for source, name in (SMALL, SMALL[::-1]):
            every = list(range(len(routed[name].queries)))
            crossed = summarise(outcomes(routed[name], every, *thresholds[source]))
            lines.append(row(f"{name}: thresholds from {source}", crossed))
        for name in SMALL:
            every = list(range(len(routed[name].queries)))
            pooled = []
            parts = folds(every, args.folds, args.seed)
            for k, held in enumerate(parts):
                train = [n for j, part in enumerate(parts) if j != k for n in part]
                pooled += outcomes(routed[name], held, *calibrate(routed[name], train, target))
            lines.append(row(f"{name}: {args.folds}-fold cross-validation", summarise(pooled)))
        print("thresholds (answer, choices):", {k: tuple(round(t, 3) for t in v) for k, v in thresholds.items()})
    if args.public:
        for name, files in {
            "clinc150": ("train.jsonl", "val.jsonl"),
            "banking77_oos": ("train.jsonl", "valid.jsonl"),
        }.items():
            lines.append(row(f"{name}: --examples train --calibrate val", evaluate_public(name, *files)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
