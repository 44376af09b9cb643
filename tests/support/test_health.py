"""/healthz reports each dependency, and says which one is down."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

pytestmark = pytest.mark.django_db


def test_all_dependencies_up(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {name for name, check in body["checks"].items() if check["ok"]} == {"database", "broker", "vector_store"}


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
