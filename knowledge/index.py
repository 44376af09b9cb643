"""The Chroma index of a knowledge base: which texts of each entry are embedded, and keeping them in step.

Each enabled, published entry is indexed as several vectors, all carrying its ``entry_id``: the
question, the question with its answer, each extra phrasing and each translated question (a FAQ),
or the section title with the chunk text (a document chunk). Learned examples are indexed as extra
phrasings of their entry. The database is the source of truth: this index can always be rebuilt.

A knowledge base's index is built with its own encoder (``KnowledgeBase.encoder``, the active routing version's).
A version trained for another encoder is evaluated on a ``shadow`` index held in memory; promoting or rolling back to
it builds a complete collection for its encoder (``build``) while the old one keeps serving, then ``switch`` points the
knowledge base at it in one update, which every process follows on its next search.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F

from knowledge.embeddings import TextEncoder, encoder_for, encoder_named, get_encoder
from knowledge.models import Entry, Example, KnowledgeBase
from knowledge.routing_model import ASK_KINDS, Hit
from knowledge.vectorstore import delete_collection, get_collection

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

logger = logging.getLogger(__name__)

BATCH = 128


@dataclass(frozen=True)
class IndexText:
    id: str
    text: str
    kind: str  # "question" | "answer" | "phrasing" | "chunk"
    is_query: bool  # embed with the query role (short customer-like text) or the passage role


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-ZÁÉÍÓÚÑ¿¡0-9*])")


def answer_sentences(answer: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_END.split(answer.strip()) if part.strip()]


def texts_for_entry(entry: Entry) -> list[IndexText]:
    """The vectors of one entry: how customers ask (query role) and what it says (passage role).

    A FAQ is indexed as its question and, for each answer sentence, "question + sentence": measured
    on soportemax this beat question-only and question+whole-answer (top-1 0.85 vs 0.77 / 0.78).
    Translations are indexed the same way, so an English customer meets the English version.
    """
    pk = entry.pk
    if entry.kind == Entry.Kind.CHUNK:
        return [IndexText(f"{pk}:c", f"{entry.question}\n{entry.answer}".strip(), "chunk", False)]
    versions = [("", entry.question, entry.answer)]
    versions += [
        (lang, str(v.get("question") or ""), str(v.get("answer") or ""))
        for lang, v in sorted(entry.translations.items())
    ]
    texts: list[IndexText] = []
    for lang, question, answer in versions:
        if question:
            texts.append(IndexText(f"{pk}:q{lang}", question, "question", True))
        for n, sentence in enumerate(answer_sentences(answer)):
            texts.append(IndexText(f"{pk}:a{lang}{n}", f"{question} {sentence}".strip(), "chunk", False))
    texts += [IndexText(f"{pk}:p{n}", text, "phrasing", True) for n, text in enumerate(entry.phrasings) if text]
    return texts


def text_for_example(example: Example) -> IndexText:
    return IndexText(f"x{example.pk}", example.text, "phrasing", True)


def collection_for(kb: KnowledgeBase) -> Collection:
    """The knowledge base's collection, rebuilt first if it was built with another model."""
    encoder = encoder_for(kb)
    if kb.index_embedding_model != encoder.name:
        rebuild(kb)
    return get_collection(kb.collection_name, {"embedding_model": encoder.name})


def _upsert(kb: KnowledgeBase, items: Sequence[tuple[int, IndexText]], follow: bool = True) -> None:
    """Embed and store ``(entry_id, text)`` pairs, in batches, each role embedded with its prefix.

    ``follow``: into the collection the database names now (another process may have switched it since ``kb`` was
    read); False for a collection being built (``build``), which the database does not name yet.
    """
    if not items:
        return
    if follow:
        _index_revision(kb)
    encoder = encoder_for(kb)
    collection = collection_for(kb)
    for start in range(0, len(items), BATCH):
        batch = items[start : start + BATCH]
        vectors = _embed(encoder, [text for _, text in batch])
        collection.upsert(
            ids=[text.id for _, text in batch],
            embeddings=vectors,
            documents=[text.text for _, text in batch],
            metadatas=[{"entry_id": entry_id, "kind": text.kind} for entry_id, text in batch],
        )
    _touch(kb)


def _embed(encoder: TextEncoder, texts: Sequence[IndexText]) -> np.ndarray:
    """Each text embedded in its role (query or passage), in the given order."""
    vectors = np.zeros((len(texts), 0), dtype=np.float32)
    for is_query in (True, False):
        picked = [i for i, text in enumerate(texts) if text.is_query is is_query]
        if picked:
            embedded = encoder.embed([texts[i].text for i in picked], is_query=is_query)
            if vectors.shape[1] == 0:
                vectors = np.zeros((len(texts), embedded.shape[1]), dtype=np.float32)
            vectors[picked] = embedded
    return vectors


def _everything(kb: KnowledgeBase) -> tuple[list[Entry], list[Example], list[tuple[int, IndexText]]]:
    """The answerable entries, their labelled examples, and every text the index holds for them."""
    entries = list(Entry.objects.filter(knowledge_base=kb).answerable())
    examples = list(Example.objects.filter(knowledge_base=kb, entry__isnull=False, entry__in=[e.pk for e in entries]))
    items = [(entry.pk, text) for entry in entries for text in texts_for_entry(entry)]
    items += [(int(ex.entry_id), text_for_example(ex)) for ex in examples if ex.entry_id is not None]
    return entries, examples, items


def index_entries(kb: KnowledgeBase, entries: Iterable[Entry]) -> int:
    """(Re)index these entries with their learned phrasings; disabled or draft ones are removed from the index
    instead. (Editing an answer once dropped its entry's phrasings from the index until the next retraining.)"""
    entries = list(entries)
    remove_entries(kb, [e.pk for e in entries])
    live = [e for e in entries if e.enabled and e.status == Entry.Status.PUBLISHED]
    items = [(entry.pk, text) for entry in live for text in texts_for_entry(entry)]
    phrasings = Example.objects.filter(knowledge_base=kb, entry__in=[entry.pk for entry in live])
    items += [(int(ex.entry_id), text_for_example(ex)) for ex in phrasings if ex.entry_id is not None]
    _upsert(kb, items)
    with transaction.atomic():
        for entry in entries:
            Entry.objects.filter(pk=entry.pk).update(indexed_hash=entry.content_hash)
    return len(live)


def index_examples(kb: KnowledgeBase, examples: Iterable[Example]) -> None:
    """Learned phrasings become extra vectors of their entry (out-of-scope examples are not indexed)."""
    _upsert(kb, [(ex.entry_id, text_for_example(ex)) for ex in examples if ex.entry_id is not None])


def remove_entries(kb: KnowledgeBase, entry_ids: Sequence[int]) -> None:
    if not entry_ids:
        return
    _index_revision(kb)  # the collection in use now (see _upsert)
    collection = collection_for(kb)
    for start in range(0, len(entry_ids), 500):
        where: Any = {"entry_id": {"$in": list(entry_ids[start : start + 500])}}
        collection.delete(where=where)
    _touch(kb)


def remove_examples(kb: KnowledgeBase, example_ids: Sequence[int]) -> None:
    if example_ids:
        _index_revision(kb)
        collection_for(kb).delete(ids=[f"x{pk}" for pk in example_ids])
        _touch(kb)


@dataclass(frozen=True)
class Built:
    """A complete collection for one encoder, not yet the one ``kb`` uses (``switch``)."""

    encoder: str  # the EMBEDDING_MODEL spec; blank = the deployment's
    model: str  # the encoder's name (``KnowledgeBase.index_embedding_model``)
    generation: int
    collection: str  # the collection it was built in
    replaces: str  # the collection in use while it was built ("" if none)
    entries: list[Entry]  # as they were read for it
    examples: frozenset[int] = frozenset()  # the learned phrasings indexed in it


def build(kb: KnowledgeBase, spec: str) -> Built:
    """Index every answerable entry and example of ``kb`` with ``spec``'s encoder in a new collection, while the
    current one keeps serving. Never a mixed index: vectors of two models are not comparable."""
    encoder = encoder_named(spec) if spec else get_encoder()
    target = copy.copy(kb)
    target.encoder, target.index_embedding_model = spec, encoder.name
    target.index_generation = kb.index_generation + 1
    logger.info("building index", extra={"kb": kb.slug, "model": encoder.name, "collection": target.collection_name})
    entries, examples, items = _everything(kb)
    _upsert(target, items, follow=False)
    replaces = kb.collection_name if kb.index_embedding_model else ""
    examples_in = frozenset(ex.pk for ex in examples)
    return Built(spec, encoder.name, target.index_generation, target.collection_name, replaces, entries, examples_in)


def switch(kb: KnowledgeBase, built: Built) -> None:
    """Point ``kb`` at a built collection: one update, inside the caller's transaction if there is one (promotion
    switches the encoder and the routing version together). Every process follows it on its next search
    (``_index_revision``). Then ``retire`` the old collection, once committed."""
    kb.encoder, kb.index_embedding_model, kb.index_generation = built.encoder, built.model, built.generation
    KnowledgeBase.objects.filter(pk=kb.pk).update(
        encoder=kb.encoder, index_embedding_model=kb.index_embedding_model, index_generation=kb.index_generation
    )
    _touch(kb)


def abandon(kb: KnowledgeBase, built: Built) -> None:
    """A built collection that will not be switched to (the promotion it was built for was called off): dropped."""
    if built.collection != KnowledgeBase.objects.get(pk=kb.pk).collection_name:
        delete_collection(built.collection)


def retire(kb: KnowledgeBase, built: Built) -> None:
    """After ``switch`` committed: the entries are marked indexed, what other processes wrote while it was built is
    written again (``_catch_up``), and the replaced collection is dropped."""
    for entry in built.entries:
        Entry.objects.filter(pk=entry.pk).update(indexed_hash=entry.content_hash)
    _catch_up(kb, built)
    if built.replaces and built.replaces != kb.collection_name:
        delete_collection(built.replaces)


def _catch_up(kb: KnowledgeBase, built: Built) -> None:
    """Entries and learned phrasings that changed while ``built`` was being built (a source sync, an edit in the
    admin, in another process) were written to the collection it replaces: (re)index them in the new one. A write
    still in flight at the switch follows it by itself (``_upsert``)."""
    read = {entry.pk: (entry.content_hash, entry.enabled, entry.status) for entry in built.entries}
    now = {
        pk: (content_hash, enabled, status)
        for pk, content_hash, enabled, status in Entry.objects.filter(knowledge_base=kb).values_list(
            "pk", "content_hash", "enabled", "status"
        )
    }
    changed = {pk for pk, state in now.items() if read.get(pk) != state}
    gone = set(read) - set(now)
    if gone:
        remove_entries(kb, sorted(gone))
    if changed:
        index_entries(kb, Entry.objects.filter(pk__in=sorted(changed)))
    current = dict(
        Example.objects.filter(
            knowledge_base=kb, entry__enabled=True, entry__status=Entry.Status.PUBLISHED
        ).values_list("pk", "entry_id")
    )
    learned = [pk for pk, entry_id in current.items() if pk not in built.examples and entry_id not in changed]
    if learned:  # (the changed entries' phrasings came with them)
        index_examples(kb, Example.objects.filter(pk__in=learned))
    if built.examples - set(current):
        remove_examples(kb, sorted(built.examples - set(current)))


def rebuild(kb: KnowledgeBase) -> None:
    """A clean index for the knowledge base's encoder in a new collection, then drop the old one."""
    built = build(kb, kb.encoder)
    switch(kb, built)
    retire(kb, built)


# Up to this many vectors a knowledge base is searched exactly, over a copy of its Chroma collection
# held in memory (10,000 × 384 floats: 15 MB, about 1 ms a query). Chroma's approximate (HNSW) search
# lost true neighbours here: the same 289-vector FAQ index built twice returned different results,
# and sometimes missed ~17 vectors even when asked for all of them, moving `evaluate` by points.
EXACT_SEARCH_MAX = 50_000


@dataclass(frozen=True)
class _Centring:
    """Cosines after removing each role's mean, computed from the plain ones (one pass over the matrix, not two).

    For a row d of role r (query-side or passage-side texts, mean m_r) and a message q (centred by the query-side
    mean m_q): (d - m_r)·(q - m_q) = d·q - (d·m_q - m_r·m_q) - m_r·q, so only ``shift`` and ``scale`` per row and the
    two means are kept.
    """

    means: np.ndarray  # (2, dim): query-side mean, passage-side mean
    role: np.ndarray  # per row: 0 query-side, 1 passage-side
    shift: np.ndarray  # per row: d·m_q - m_r·m_q
    scale: np.ndarray  # per row: |d - m_r|

    def cosines(self, similarities: np.ndarray, query: np.ndarray) -> np.ndarray:
        query_norm = max(float(np.linalg.norm(query - self.means[0])), 1e-12)
        by_role = self.means @ query
        out: np.ndarray = (similarities - self.shift - by_role[self.role]) / (self.scale * query_norm)
        return out


def _centre(matrix: np.ndarray, kinds: Sequence[str]) -> _Centring | None:
    """The knowledge base's means, per role, and what each row needs to be compared after removing them.

    multilingual-e5 puts every text in a narrow cone (cosines 0.75-0.95): the direction all texts
    share says nothing about which entry a message is about. Removing the knowledge base's own mean
    (no labels involved) and comparing what is left ranks entries better: on soportemax dev the right
    entry came first for 89% of covered questions instead of 85%, Spanish 89% instead of 84%.
    """
    if not len(matrix):
        return None
    asking = np.array([kind in ASK_KINDS for kind in kinds])
    query_mean = matrix[asking].mean(axis=0) if asking.any() else matrix.mean(axis=0)
    passage_mean = matrix[~asking].mean(axis=0) if (~asking).any() else query_mean
    means = np.vstack([query_mean, passage_mean]).astype(np.float32)
    role = (~asking).astype(np.intp)
    row_means = means[role]
    shift = matrix @ means[0] - row_means @ means[0]
    scale = np.maximum(np.linalg.norm(matrix - row_means, axis=1), 1e-12)
    return _Centring(means, role, shift.astype(np.float32), scale.astype(np.float32))


@dataclass
class _Snapshot:
    revision: tuple[str, int, int]
    entry_ids: list[str]
    kinds: list[str]
    matrix: np.ndarray
    centring: _Centring | None = None  # None only when empty or too big
    too_big: bool = False  # over EXACT_SEARCH_MAX: search through Chroma


_snapshots: dict[int, _Snapshot] = {}
_snapshots_lock = threading.Lock()


def _touch(kb: KnowledgeBase) -> None:
    """Record a write to the index; every process's in-memory copy of it becomes stale."""
    KnowledgeBase.objects.filter(pk=kb.pk).update(index_revision=F("index_revision") + 1)


def _index_revision(kb: KnowledgeBase) -> tuple[str, int, int]:
    """Where the index is and which version of it the database names: read on every search, so a write
    by any process (the worker, a command) is seen by this one on its next search."""
    row = (
        KnowledgeBase.objects.filter(pk=kb.pk)
        .values_list("index_generation", "index_revision", "index_embedding_model", "encoder")
        .first()
    )
    if row and (kb.index_generation, kb.index_embedding_model, kb.encoder) != (row[0], row[2], row[3]):
        # Another process built, rebuilt or switched the index since ``kb`` was read: follow it to its collection
        # (an old one is gone, and opening it by its old name would create it again, empty).
        kb.index_generation, kb.index_embedding_model, kb.encoder = row[0], row[2], row[3]
    # Where the collection lives is part of the key: a rolled-back knowledge base (evaluate, tests) can
    # leave its primary key and revision to a later one whose index is elsewhere.
    location = settings.CHROMA_URL or str(settings.CHROMA_PATH)
    return (location, int(row[0]), int(row[1])) if row else (location, 0, 0)


def _snapshot(kb: KnowledgeBase, revision: tuple[str, int, int]) -> _Snapshot:
    """The in-memory copy of the collection; Chroma is only read when the index changed since the last copy."""
    with _snapshots_lock:
        cached = _snapshots.get(kb.pk)
    if cached is not None and cached.revision == revision:
        return cached
    collection = collection_for(kb)
    if collection.count() > EXACT_SEARCH_MAX:
        snapshot = _Snapshot(revision, [], [], np.zeros((0, 0), dtype=np.float32), too_big=True)
    else:
        data = collection.get(include=["embeddings", "metadatas"])
        metadatas = data.get("metadatas") or []
        embeddings = data.get("embeddings")
        kinds = [str(meta.get("kind", "")) for meta in metadatas]
        matrix = np.asarray(embeddings if embeddings is not None else np.zeros((0, 0)), dtype=np.float32)
        centring = _centre(matrix, kinds)
        snapshot = _Snapshot(revision, [str(meta["entry_id"]) for meta in metadatas], kinds, matrix, centring)
    with _snapshots_lock:
        _snapshots[kb.pk] = snapshot
    return snapshot


@dataclass(frozen=True)
class Shadow:
    """A knowledge base's index under another encoder, in memory only: a routing version trained for a new encoder
    is scored on it before it goes live (``routing.score_texts``)."""

    encoder: TextEncoder
    snapshot: _Snapshot


def shadow(kb: KnowledgeBase, spec: str) -> Shadow:
    encoder = encoder_named(spec) if spec else get_encoder()
    _, _, items = _everything(kb)
    matrix = _embed(encoder, [text for _, text in items]) if items else np.zeros((0, 0), dtype=np.float32)
    kinds = [text.kind for _, text in items]
    snapshot = _Snapshot(
        ("shadow", 0, 0), [str(entry_id) for entry_id, _ in items], kinds, matrix, _centre(matrix, kinds)
    )
    return Shadow(encoder, snapshot)


def encoder_of(kb: KnowledgeBase) -> TextEncoder:
    """The encoder ``kb``'s index uses now (read from the database: another process may have switched it)."""
    return current(kb).encoder


@dataclass(frozen=True)
class Current:
    """The index as the database names it at one moment: a message is embedded by this encoder and searched in this
    revision (one read per message, so a switch by another process cannot fall between the two)."""

    encoder: TextEncoder
    revision: tuple[str, int, int]


def current(kb: KnowledgeBase) -> Current:
    revision = _index_revision(kb)
    return Current(encoder_for(kb), revision)


def search(
    kb: KnowledgeBase, vector: np.ndarray, k: int, shadow: Shadow | None = None, at: Current | None = None
) -> list[Hit]:
    """The ``k`` nearest indexed texts to ``vector``, best first: exact up to EXACT_SEARCH_MAX vectors.

    Exact search returns the ``k`` nearest by plain cosine together with the ``k`` nearest by centred cosine
    (``_centre``; the scorer ranks entries by it), ordered by plain cosine, each hit carrying both. The calibrator's
    features are computed over the plain-cosine neighbourhood: computed over the centred top ``k`` alone, they lost
    10 points of auto-resolution on soportemax dev (cross-validated).
    ``at``: the index as ``current`` read it when ``vector`` was embedded (else it is read now).
    """
    if shadow is not None:
        return _exact(shadow.snapshot, vector, k)
    revision = at.revision if at is not None else _index_revision(kb)
    if kb.index_embedding_model != encoder_for(kb).name:
        rebuild(kb)  # never search vectors of another model
        revision = _index_revision(kb)
    snapshot = _snapshot(kb, revision)
    if not snapshot.too_big:
        return _exact(snapshot, vector, k)
    # Beyond the exact-search size the hits are Chroma's, by plain cosine, without the centred score.
    result = collection_for(kb).query(query_embeddings=[vector], n_results=k, include=["metadatas", "distances"])
    metadatas = (result.get("metadatas") or [[]])[0]
    distances = (result.get("distances") or [[]])[0]
    return [
        Hit(entry_id=str(meta["entry_id"]), similarity=1.0 - float(distance), kind=str(meta.get("kind", "")))
        for meta, distance in zip(metadatas, distances, strict=True)
    ]


def _exact(snapshot: _Snapshot, vector: np.ndarray, k: int) -> list[Hit]:
    if not snapshot.entry_ids or snapshot.centring is None:  # centring is None only when empty
        return []
    query = np.asarray(vector, dtype=np.float32)
    similarities = snapshot.matrix @ query
    centred = snapshot.centring.cosines(similarities, query)
    k = min(k, len(similarities))
    best = np.union1d(np.argpartition(-similarities, k - 1)[:k], np.argpartition(-centred, k - 1)[:k])
    best = best[np.argsort(-similarities[best], kind="stable")]
    return [Hit(snapshot.entry_ids[i], float(similarities[i]), snapshot.kinds[i], float(centred[i])) for i in best]
