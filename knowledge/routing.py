"""The routing decision: answer this message from entry X, or escalate it, with a calibrated confidence.

``route()`` is the one function the chat and ``manage.py evaluate`` both call. The learned state
(``RoutingModel``: head, calibrator, threshold) lives in the knowledge base's active
``RoutingVersion``; ``train_version`` and ``calibrate_version`` are the routines that
``evaluate --examples/--calibrate`` and the learning loop's retraining share.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone

from knowledge import index, intents
from knowledge.embeddings import TextEncoder
from knowledge.language import detect_language
from knowledge.models import Entry, Example, KnowledgeBase, RoutingVersion
from knowledge.routing_model import FloatArray, RoutingModel, Scored
from knowledge.vocabulary import HandoverReason, Outcome

# How many indexed vectors the scorer sees per query (several per entry: question, sentences, phrasings).
SEARCH_K = 50


def kind_weights(kb: KnowledgeBase) -> dict[str, float]:
    """Which indexed kinds the entry similarity averages: answer text counts only where entries have some."""
    weights = {"question": 1.0, "phrasing": 1.0}
    if Entry.objects.filter(knowledge_base=kb).answerable().exclude(answer="").exists():
        # what the answer says counts three times what the question says: top-1 on soportemax dev 89.2 -> 90.0 %,
        # confirmed on vuelalto dev 71.0 -> 79.0 % (centred cosines; 1:1 before)
        weights["chunk"] = 3.0
    return weights


@dataclass(frozen=True)
class Candidate:
    entry_id: int
    question: str
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"entry_id": self.entry_id, "question": self.question, "score": round(self.score, 4)}


MAX_CHOICES = 3


@dataclass(frozen=True)
class Decision:
    """What to do with one customer message: answer from ``entry``, offer ``choices``, or hand over for ``reason``."""

    outcome: Outcome
    confidence: float
    entry: Entry | None = None
    choices: list[Candidate] = field(default_factory=list)
    reason: HandoverReason | None = None
    candidates: list[Candidate] = field(default_factory=list)
    latency_ms: float = 0.0
    version: int | None = None

    @property
    def answer(self) -> bool:
        return self.outcome == Outcome.ANSWER

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": str(self.outcome),
            # "reason" keeps the shape stored turns always had: "answer", "choices" or the hand-over reason
            "reason": str(self.reason) if self.reason is not None else str(self.outcome),
            "confidence": round(self.confidence, 4),
            "entry_id": self.entry.pk if self.entry else None,
            "choices": [c.as_dict() for c in self.choices],
            "candidates": [c.as_dict() for c in self.candidates],
            "latency_ms": round(self.latency_ms, 2),
            "routing_version": self.version,
        }


# --- the active model, reloaded when ops promote or roll back a version (no restart) -------------
_models: dict[int, tuple[tuple[Any, ...], RoutingModel]] = {}
_models_lock = threading.Lock()


def active_model(kb: KnowledgeBase) -> tuple[int | None, RoutingModel]:
    """The live version's model, knowing every answerable entry (also those published since it was trained)."""
    row = RoutingVersion.objects.filter(knowledge_base=kb, is_active=True).values_list("pk", "number").first()
    pk, number = row if row is not None else (None, None)
    entries = Entry.objects.filter(knowledge_base=kb).answerable()
    state = entries.aggregate(n=Count("pk"), latest=Max("updated_at"))
    key = (pk, state["n"], state["latest"], settings.CONFIDENCE_THRESHOLD)
    with _models_lock:
        cached = _models.get(kb.pk)
        if cached is not None and cached[0] == key:
            return number, cached[1]
    if pk is None:
        model = untrained_model(kb)
    else:
        model = load_model(kb, RoutingVersion.objects.values_list("model", flat=True).get(pk=pk))
    with _models_lock:
        _models[kb.pk] = (key, model)
    return number, model


def load_model(kb: KnowledgeBase, artefact: dict[str, Any]) -> RoutingModel:
    """A saved version's model, knowing the entries published since and every entry's languages."""
    model = RoutingModel.from_dict(artefact)
    answerable = Entry.objects.filter(knowledge_base=kb).answerable()
    model.include_entries(str(entry_id) for entry_id in answerable.values_list("pk", flat=True))
    return deployed(kb, model)


def forget_cached_models() -> None:
    with _models_lock:
        _models.clear()


def untrained_model(kb: KnowledgeBase) -> RoutingModel:
    """Before any training: the entries as they are, default calibration, the configured threshold."""
    entry_ids = [str(pk) for pk in Entry.objects.filter(knowledge_base=kb).answerable().values_list("pk", flat=True)]
    model = RoutingModel.train(entry_ids, kind_weights=kind_weights(kb))
    model.threshold = settings.CONFIDENCE_THRESHOLD
    return deployed(kb, model)


def deployed(kb: KnowledgeBase, model: RoutingModel, encoder: TextEncoder | None = None) -> RoutingModel:
    """``model`` knowing what it is not saved with: the languages of every entry (``aligned``), and below which
    similarity the encoder (default the knowledge base's) puts unrelated text (``RoutingModel.min_similarity``)."""
    model.entry_languages = entry_languages(kb)
    model.min_similarity = (encoder or index.encoder_of(kb)).unrelated_similarity
    return model


def entry_languages(kb: KnowledgeBase) -> dict[str, frozenset[str]]:
    """The languages each answerable entry is written in: its own and its translations'."""
    rows = Entry.objects.filter(knowledge_base=kb).answerable().values_list("pk", "language", "translations")
    return {
        str(pk): frozenset(code for code in (language, *(translations or {})) if code)
        for pk, language, translations in rows
    }


# --- deciding -------------------------------------------------------------------------------------
SELF_SIMILARITY = 0.9999
"""A learned phrasing this close to a message is the message itself (see ``score_texts``)."""


def aligned(model: RoutingModel, text: str, vector: FloatArray, encoder: TextEncoder | None = None) -> FloatArray:
    """The message's vector moved into the knowledge base's language when it is written in another one.

    Cross-lingual cosines run lower and flatter for an equally good match (a Spanish question on an English FAQ),
    so the confidence under-trusted them. Subtracting the difference between the two languages' mean vectors (from
    the intent phrase bank, no FAQ data involved) fixes much of that. At default thresholds, total resolution went
    85.0 -> 85.8 % on soportemax dev (English questions 82.6 -> 87.0 %) and 66.0 -> 73.0 % on vuelalto dev
    (Spanish questions 53 -> 65 %), direct wrong answers 1.7 -> 1.6 % and 5.3 -> 5.0 %.
    """
    language = detect_language(text) if text else None
    languages = model.entry_languages
    if not language or not languages:
        return vector
    coverage: dict[str, int] = {}
    for codes in languages.values():
        for code in codes:
            coverage[code] = coverage.get(code, 0) + 1
    if coverage.get(language, 0) * 2 >= len(languages):
        return vector  # most entries are written in the message's language (or translated into it)
    target = max(coverage, key=lambda code: coverage[code])
    means = intents.language_means(encoder)  # in the space of the encoder that embedded ``vector``
    if language not in means or target not in means:
        return vector
    moved = vector - (means[language] - means[target])
    result: FloatArray = (moved / max(float(np.linalg.norm(moved)), 1e-12)).astype(np.float32)
    return result


def score_texts(
    kb: KnowledgeBase,
    model: RoutingModel,
    texts: Sequence[str],
    *,
    leave_self_out: bool = False,
    shadow: index.Shadow | None = None,
) -> list[Scored]:
    """Score many texts at once (calibration, evaluation of a candidate version).

    ``leave_self_out``: the texts were learned as phrasings, and each is scored as if its own phrasing were
    not indexed (leave-one-out), so that a calibration on them sees what an unseen message would get.
    ``shadow``: search that in-memory index (a candidate version's encoder) instead of the knowledge base's own.
    """
    encoder = shadow.encoder if shadow is not None else index.encoder_of(kb)
    vectors = encoder.embed(list(texts), is_query=True)
    scored = []
    for raw, text in zip(vectors, texts, strict=True):
        vector = aligned(model, text, raw, encoder)
        hits = index.search(kb, vector, SEARCH_K + 1 if leave_self_out else SEARCH_K, shadow)
        scorer = model
        if leave_self_out:
            # its own phrasing is the raw vector: found where the (possibly moved) vector meets it
            own_similarity = min(float(vector @ raw), SELF_SIMILARITY)
            own = [h for h in hits if h.kind == "phrasing" and h.similarity >= own_similarity - 1e-4]
            hits = [h for h in hits if h not in own]
            scorer = model.without_vectors(own) if own else model
        scored.append(scorer.score(vector, hits, text))
    return scored


def route(kb: KnowledgeBase, text: str, model: RoutingModel | None = None) -> Decision:
    """Decide one message: hand over (a request for a person, a risk), answer from an entry, or offer choices."""
    started = time.perf_counter()
    # one embedding, by the knowledge base's encoder, serves both stages (a fine-tuned encoder's risk stage is
    # checked by the retraining gate before it goes live)
    at = index.current(kb)
    encoder = at.encoder
    vector = encoder.embed([text], is_query=True)[0]
    # the risk-and-intent stage comes first: a request for a person or a risk is never answered from an entry
    match = intents.detect(text, vector, encoder)
    if match is not None:
        return Decision(Outcome.HANDOVER, 0.0, reason=match.reason, latency_ms=(time.perf_counter() - started) * 1000)
    version: int | None = None
    if model is None:
        version, model = active_model(kb)
    vector = aligned(model, text, vector, encoder)
    scored = model.score(vector, index.search(kb, vector, SEARCH_K, at=at), text)
    entries = Entry.objects.in_bulk([int(eid) for eid, _ in scored.candidates[: settings.RETRIEVAL_K]])
    candidates = [
        Candidate(int(eid), entries[int(eid)].question, score)
        for eid, score in scored.candidates[: settings.RETRIEVAL_K]
        if int(eid) in entries and entries[int(eid)].enabled and entries[int(eid)].status == Entry.Status.PUBLISHED
    ]
    entry = entries.get(int(scored.entry_id)) if scored.entry_id is not None else None
    latency = (time.perf_counter() - started) * 1000
    if entry is not None and model.decide(scored) and entry.enabled and entry.status == Entry.Status.PUBLISHED:
        return Decision(
            Outcome.ANSWER, scored.confidence, entry, candidates=candidates, latency_ms=latency, version=version
        )
    if model.offers_choices(scored) and candidates:
        return Decision(
            Outcome.CHOICES,
            scored.confidence,
            choices=candidates[:MAX_CHOICES],
            candidates=candidates,
            latency_ms=latency,
            version=version,
        )
    return Decision(
        Outcome.HANDOVER,
        scored.confidence,
        reason=HandoverReason.LOW_CONFIDENCE if model.covers(scored) else HandoverReason.OUT_OF_SCOPE,
        candidates=candidates,
        latency_ms=latency,
        version=version,
    )


# --- training and calibration (shared by `evaluate` and the learning loop) ------------------------
def add_examples(kb: KnowledgeBase, pairs: Sequence[tuple[str, Entry | None]], origin: str) -> list[Example]:
    """Store labelled phrasings (entry None = out of scope) and index the in-scope ones."""
    existing = set(Example.objects.filter(knowledge_base=kb).values_list("entry_id", "text"))
    fresh = [
        Example(knowledge_base=kb, entry=entry, text=text.strip(), origin=origin)
        for text, entry in pairs
        if text.strip() and ((entry.pk if entry else None), text.strip()) not in existing
    ]
    created = Example.objects.bulk_create(fresh, batch_size=500)
    if any(ex.pk is None for ex in created):  # backends without RETURNING: read the ids back
        created = list(Example.objects.filter(knowledge_base=kb, origin=origin).order_by("-pk")[: len(fresh)])
    index.index_examples(kb, created)
    return created


def train_model(
    kb: KnowledgeBase, examples: Sequence[Example] | None = None, encoder: TextEncoder | None = None
) -> RoutingModel:
    """A new routing model from the knowledge base's entries and labelled examples (``encoder``: the one it is
    trained for, by default the knowledge base's own)."""
    entries = list(Entry.objects.filter(knowledge_base=kb).answerable().only("pk", "question"))
    examples = list(Example.objects.filter(knowledge_base=kb)) if examples is None else list(examples)
    encoder = encoder or index.encoder_of(kb)
    live = {entry.pk for entry in entries}
    examples = [ex for ex in examples if ex.entry_id is None or ex.entry_id in live]
    example_vectors = encoder.embed([ex.text for ex in examples], is_query=True) if examples else None
    question_vectors = encoder.embed([e.question for e in entries], is_query=True) if entries else None
    model = RoutingModel.train(
        [str(e.pk) for e in entries],
        example_vectors=example_vectors,
        example_labels=[str(ex.entry_id) if ex.entry_id is not None else None for ex in examples],
        question_vectors=(
            {str(e.pk): question_vectors[i] for i, e in enumerate(entries)} if question_vectors is not None else None
        ),
        kind_weights=kind_weights(kb),
    )
    deployed(kb, model, encoder)
    model.threshold = settings.CONFIDENCE_THRESHOLD  # until calibrate_model chooses one, as for an untrained model
    return model


def calibrate_model(
    kb: KnowledgeBase,
    model: RoutingModel,
    labelled: Sequence[tuple[str, Entry | None]],
    target: float,
    *,
    leave_self_out: bool = False,
    shadow: index.Shadow | None = None,
) -> dict[str, float]:
    """Fit ``model``'s calibrator and threshold on labelled queries; returns the calibration-set figures.

    ``leave_self_out``: some queries are also learned phrasings; ``shadow``: another encoder's index (``score_texts``).
    """
    caught = intents.detect_many([text for text, _ in labelled], shadow.encoder if shadow else index.encoder_of(kb))
    rows = [(text, entry) for (text, entry), match in zip(labelled, caught, strict=True) if match is None]
    scored = score_texts(kb, model, [text for text, _ in rows], leave_self_out=leave_self_out, shadow=shadow)
    labels = [str(entry.pk) if entry is not None else None for _, entry in rows]
    model.calibrate(scored, labels, target_wrong_rate=target)
    # the confidences in `scored` came from the calibrator before this fit: decide on the new one
    rescored = [model.rescore(s) for s in scored]
    answered = [(s, lab) for s, lab in zip(rescored, labels, strict=True) if model.decide(s)]
    wrong = sum(1 for s, lab in answered if s.entry_id != lab)
    in_scope = sum(1 for lab in labels if lab is not None)
    return {
        "threshold": model.threshold,
        "n": len(rows),
        "auto_resolution": sum(1 for s, lab in answered if s.entry_id == lab) / in_scope if in_scope else 0.0,
        "wrong_answer_rate": wrong / len(answered) if answered else 0.0,
    }


@transaction.atomic
def save_version(
    kb: KnowledgeBase, model: RoutingModel, metrics: dict[str, Any], notes: str = "", encoder: str = ""
) -> RoutingVersion:
    last = RoutingVersion.objects.select_for_update().filter(knowledge_base=kb).order_by("-number").first()
    return RoutingVersion.objects.create(
        knowledge_base=kb,
        number=(last.number + 1) if last else 1,
        model=model.to_dict(),
        metrics=metrics,
        notes=notes,
        encoder=encoder,
    )


def index_for(version: RoutingVersion) -> index.Built | None:
    """The collection ``version``'s encoder needs, built now (while the current one serves) if the knowledge base
    uses another encoder; None if it already uses that one. Call it before ``activate_version``'s transaction."""
    kb = version.knowledge_base
    index.encoder_of(kb)  # its encoder as the database has it now
    return index.build(kb, version.encoder) if version.encoder != kb.encoder else None


def lock_live_version(kb: KnowledgeBase) -> int | None:
    """The live version's number, read under the knowledge base's row lock, held until the transaction ends.

    Every switch of the live version takes this lock first (``activate_version``, a retraining job's last check), so
    two switches never interleave and each reads the other's result. Locking the active version's row instead did
    not hold on PostgreSQL: a switch waiting for it re-read only that row, missed the version the other switch had
    made live, and failed on the one-active-version constraint (tests/learning/test_activation_race.py).
    """
    KnowledgeBase.objects.select_for_update().filter(pk=kb.pk).values_list("pk", flat=True).first()
    return RoutingVersion.objects.filter(knowledge_base=kb, is_active=True).values_list("number", flat=True).first()


def activate_version(version: RoutingVersion, built: index.Built | None = None) -> None:
    """Make ``version`` the one the chat uses (promotion and rollback alike); takes effect on the next message.

    A version trained for another encoder than the knowledge base uses switches the index to its collection
    (``built`` by ``index_for``, or built here) in the same transaction: no message sees the new version with the
    old encoder's vectors, or the reverse.
    """
    kb = version.knowledge_base
    if built is None:
        built = index_for(version)
    with transaction.atomic():
        lock_live_version(kb)
        RoutingVersion.objects.filter(knowledge_base=kb, is_active=True).exclude(pk=version.pk).update(is_active=False)
        RoutingVersion.objects.filter(pk=version.pk).update(is_active=True, activated_at=timezone.now())
        if built is not None:
            index.switch(kb, built)
            transaction.on_commit(partial(index.retire, kb, built))
    version.is_active = True
