"""``/healthz``: can this process answer? 200 when every part works, 503 naming the ones that do not.

Each check uses what a customer's turn uses, from this process: the database connection, the broker,
the cache (when it is Redis: the rate limiter's counters live there) and the vector store, which is
asked a real vector query against every built knowledge-base index. The vector store's verdict is kept
for VECTOR_CHECK_TTL_S seconds, so a load balancer polling every second costs Chroma little.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)

VECTOR_CHECK_TTL_S = 5.0


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_broker() -> None:
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        folder = Path(str(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]))
        if not folder.is_dir():
            raise ConnectionError(f"broker folder {folder} does not exist")
        return
    from support.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def check_cache() -> None:
    """A write and a read through Django's cache; the in-process cache of a fresh checkout needs none."""
    if not settings.CACHE_URL:
        return
    key, value = "healthz:probe", secrets.token_hex(8)
    cache.set(key, value, timeout=30)
    if cache.get(key) != value:
        raise ConnectionError("the cache did not return what was just written")


def probe_indexes() -> None:
    """The store answers, and each built knowledge-base index answers a vector query with its own vector.

    The probe vector is one the index stores, read back through this process's client: nothing is
    embedded, nothing is created (a missing collection is a failure, not something to make again).
    """
    import numpy as np

    from knowledge.models import KnowledgeBase
    from knowledge.vectorstore import VectorStoreUnavailable, get_client, heartbeat

    heartbeat()
    for kb in KnowledgeBase.objects.exclude(index_embedding_model="").order_by("pk"):
        try:
            collection = get_client().get_collection(kb.collection_name, embedding_function=None)
            stored = collection.get(limit=1, include=["embeddings"])
            embeddings = stored.get("embeddings")
            if embeddings is None or not len(embeddings):
                continue  # an empty knowledge base: nothing to find, nothing broken
            vector: np.ndarray = np.asarray(embeddings[0], dtype=np.float32)
            found = collection.query(query_embeddings=[vector], n_results=1, include=["distances"])
            if not (found.get("ids") or [[]])[0]:
                raise VectorStoreUnavailable("a query for a stored vector found nothing")
        except Exception as exc:
            raise VectorStoreUnavailable(f"knowledge base {kb.slug!r}: {type(exc).__name__}: {exc}") from exc


_vector_verdict: dict[tuple[str, str], tuple[float, Exception | None]] = {}
_vector_lock = threading.Lock()


def check_vector_store() -> None:
    key = (settings.CHROMA_URL, str(settings.CHROMA_PATH))
    now = time.monotonic()
    with _vector_lock:
        cached = _vector_verdict.get(key)
    if cached is None or cached[0] <= now:
        error: Exception | None = None
        try:
            probe_indexes()
        except Exception as exc:
            error = exc
        cached = (time.monotonic() + VECTOR_CHECK_TTL_S, error)
        with _vector_lock:
            _vector_verdict[key] = cached
    if cached[1] is not None:
        raise cached[1]


def forget_verdicts() -> None:
    """Check again on the next request (tests)."""
    with _vector_lock:
        _vector_verdict.clear()


def check_encoders() -> None:
    """Every knowledge base whose live version has a fine-tuned encoder can load it: its file is on this machine
    (``DATA_DIR/encoders``, shared by web and worker)."""
    from knowledge.embeddings import spec_path
    from knowledge.models import KnowledgeBase

    for slug, spec in KnowledgeBase.objects.exclude(encoder="").values_list("slug", "encoder"):
        path = spec_path(spec)
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"knowledge base {slug!r}: its encoder file {path} is missing")


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "broker": check_broker,
    "cache": check_cache,
    "vector_store": check_vector_store,
    "encoders": check_encoders,
}


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    results: dict[str, dict[str, object]] = {}
    healthy = True
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # any failure of a dependency means "down", and says why
            healthy = False
            logger.warning("health check failed", extra={"check": name, "error": str(exc)})
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        else:
            results[name] = {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}
    return JsonResponse({"status": "ok" if healthy else "down", "checks": results}, status=200 if healthy else 503)
