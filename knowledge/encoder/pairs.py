"""Training pairs for fine-tuning the encoder from a FAQ alone (no customer yet): each question against what its
answer says, in the roles the index embeds them with ("query: " for how customers ask, "passage: " for text).

Each entry gives its question paired with each answer sentence and with the whole answer. A batch holds at most one
pair per entry: another sentence of the same entry among the in-batch negatives would be a right answer marked
wrong. A hard negative is a passage of one of the entry's nearest other entries (by question), never of an entry
that already has a pair in the batch, for the same reason.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from knowledge.encoder.convert import PASSAGE_PREFIX, QUERY_PREFIX


@dataclass(frozen=True)
class Pair:
    entry: str  # the FAQ id both sides come from
    query: str  # prefixed with "query: "
    passage: str  # prefixed with "passage: "


def faq_pairs(rows: Sequence[Mapping[str, str]], sentences: Callable[[str], list[str]]) -> list[Pair]:
    """Question <-> each answer sentence and question <-> whole answer, for every FAQ row with an answer.

    ``sentences`` splits an answer as the index does (``knowledge.index.answer_sentences``).
    """
    pairs = []
    for row in rows:
        question, answer = row["question"].strip(), (row.get("answer") or "").strip()
        if not question or not answer:
            continue
        parts = sentences(answer)
        for text in dict.fromkeys([*parts, answer] if len(parts) > 1 else [answer]):
            pairs.append(Pair(row["id"], QUERY_PREFIX + question, PASSAGE_PREFIX + text))
    return pairs


def nearest_entries(
    rows: Sequence[Mapping[str, str]], encode: Callable[[list[str]], npt.ArrayLike], count: int
) -> dict[str, list[str]]:
    """Each entry's ``count`` nearest other entries by question cosine (``encode``: unprefixed texts -> vectors in
    the query role, normalised)."""
    vectors = np.asarray(encode([row["question"] for row in rows]), dtype=np.float32)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    ids = [row["id"] for row in rows]
    return {ids[i]: [ids[j] for j in np.argsort(-similarity[i])[:count]] for i in range(len(ids))}


def batches(
    pairs: Sequence[Pair],
    size: int,
    seed: int,
    neighbours: Mapping[str, Sequence[str]] | None = None,
) -> Iterator[tuple[list[Pair], list[str] | None]]:
    """Endless batches of ``size`` pairs from distinct entries; with ``neighbours``, one hard-negative passage per
    pair (from a near entry outside the batch, else any entry outside it)."""
    rng = random.Random(seed)
    by_entry: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_entry.setdefault(pair.entry, []).append(pair)
    entries = sorted(by_entry)
    size = min(size, len(entries) - (1 if neighbours is not None else 0))
    while True:
        chosen = rng.sample(entries, size)
        batch = [rng.choice(by_entry[entry]) for entry in chosen]
        if neighbours is None:
            yield batch, None
            continue
        inside = set(chosen)
        negatives = []
        for entry in chosen:
            near = [other for other in neighbours.get(entry, ()) if other not in inside]
            pool = near or [other for other in entries if other not in inside]
            negatives.append(rng.choice(by_entry[rng.choice(pool)]).passage)
        yield batch, negatives
