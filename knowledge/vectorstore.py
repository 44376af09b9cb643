"""The one seam to the vector store: Chroma on disk by default, a Chroma server when CHROMA_URL is set.

One owner per store: Chroma's on-disk client is not safe across processes (a write by one leaves the
others failing every read with "Error finding id" until they restart). `make run` therefore serves the
folder with Chroma's own server and every process is its client (settings find it through CHROMA_URL
or ``<CHROMA_PATH>.url``). A process that opens the folder itself holds an exclusive lock on
``<CHROMA_PATH>.lock`` for as long as it keeps the client; a second one gets VectorStoreInUse, which
says what to do, instead of a store that breaks later.

chromadb is imported here, inside functions, so importing models, views or settings never pays for it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

_lock = threading.Lock()
_clients: dict[tuple[str, str], ClientAPI] = {}
_folder_locks: dict[str, int] = {}  # folder -> the open file descriptor that holds its lock


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


class VectorStoreInUse(VectorStoreUnavailable):
    """Another process has the Chroma folder open on disk."""


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
    _lock_folder(path)
    try:
        return chromadb.PersistentClient(path=path, settings=chroma_settings)
    except BaseException:
        _unlock_folder(path)
        raise


def lock_file(path: str | Path) -> Path:
    folder = Path(path)
    return folder.with_name(folder.name + ".lock")


def _lock_folder(path: str) -> None:
    """Take the folder's exclusive lock for this process (released when it exits), or raise VectorStoreInUse."""
    import fcntl

    if path in _folder_locks:
        return
    target = lock_file(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise VectorStoreInUse(
            f"the Chroma folder {path} is open in {holder}; Chroma's on-disk store is not safe across "
            "processes: run the product with `make run` (it serves the folder to every process) or set CHROMA_URL"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()}".encode(), 0)
    _folder_locks[path] = fd


def _unlock_folder(path: str) -> None:
    fd = _folder_locks.pop(path, None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the lock


def forget_client(url: str, path: str | Path) -> None:
    """Drop a cached client (a throw-away index whose folder is about to be deleted) and free its folder."""
    with _lock:
        _clients.pop((url, str(path)), None)
        if not url:
            _unlock_folder(str(path))


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
