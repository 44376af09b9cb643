"""The one seam to the vector store: Chroma on disk by default, a Chroma server when CHROMA_URL is set.

chromadb is imported here, inside functions, so importing models, views or settings never pays for it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

_lock = threading.Lock()
_clients: dict[tuple[str, str], ClientAPI] = {}


# Cosine space; a deterministic build (one thread) and a wide beam. Knowledge bases up to
# knowledge.index.EXACT_SEARCH_MAX vectors are searched exactly anyway (HNSW lost true neighbours there).
HNSW: dict[str, Any] = {
    "space": "cosine",
    "ef_construction": 200,
    "ef_search": 400,
    "max_neighbors": 32,
    "num_threads": 1,
}


class VectorStoreUnavailable(Exception):
    """Chroma could not be reached or answered with an error."""


def get_client() -> ClientAPI:
    """One client per location, shared by the process (Chroma refuses two differently-configured ones)."""
    key = (settings.CHROMA_URL, str(settings.CHROMA_PATH))
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = _connect(*key)
        return client


def _connect(url: str, path: str) -> ClientAPI:
    import chromadb
    from chromadb.config import Settings

    chroma_settings = Settings(anonymized_telemetry=False, allow_reset=False)
    if url:
        parts = urlsplit(url)
        return chromadb.HttpClient(
            host=parts.hostname or "localhost",
            port=parts.port or (443 if parts.scheme == "https" else 8000),
            ssl=parts.scheme == "https",
            settings=chroma_settings,
        )
    return chromadb.PersistentClient(path=path, settings=chroma_settings)


def forget_client(url: str, path: str) -> None:
    """Drop a cached client (a throw-away index whose folder is about to be deleted)."""
    with _lock:
        _clients.pop((url, str(path)), None)


def heartbeat() -> None:
    try:
        get_client().heartbeat()
    except Exception as exc:
        raise VectorStoreUnavailable(str(exc)) from exc


def get_collection(name: str, metadata: dict[str, Any]) -> Collection:
    """The collection ``name`` in cosine space, created with ``metadata`` if it does not exist."""
    return get_client().get_or_create_collection(
        name=name,
        metadata=metadata,
        configuration={"hnsw": HNSW},  # type: ignore[arg-type]  # keys as in CreateHNSWConfiguration
        embedding_function=None,
    )


def delete_collection(name: str) -> None:
    client = get_client()
    if any(c.name == name for c in client.list_collections()):
        client.delete_collection(name)
