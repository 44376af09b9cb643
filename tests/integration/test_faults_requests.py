"""Requests the network sends that the API must not take at face value: a cross-site ``text/plain`` POST (no CORS
preflight needed) and X-Forwarded-For, which names the customer only when a proxy we trust wrote it."""

from __future__ import annotations

import ipaddress
import json

import pytest
from django.core.cache import cache
from django.test import RequestFactory

from chat.api import client_ip
from chat.models import Conversation, Message
from knowledge.actions import get_or_create_knowledge_base

pytestmark = pytest.mark.django_db(transaction=True)

PROXY = "10.0.0.7"


@pytest.fixture
def shop(db):
    cache.clear()  # fresh rate-limit counters
    return get_or_create_knowledge_base("shop", "Shop")


def assert_unsupported(response) -> None:
    assert response.status_code == 415
    assert response.json() == {
        "error": {
            "code": "unsupported_media_type",
            "message": "Send the request body as JSON, with the header Content-Type: application/json.",
        }
    }


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_cross_site_post_that_is_not_json_creates_no_conversation(client, shop, content_type):
    response = client.post(
        "/api/conversations",
        data=json.dumps({"kb": "shop"}),
        content_type=content_type,
        HTTP_ORIGIN="https://attacker.example",
    )
    assert_unsupported(response)
    assert not Conversation.objects.exists()


def test_a_message_that_is_not_sent_as_json_is_not_stored(client, shop):
    started = client.post("/api/conversations", data={"kb": "shop"}, content_type="application/json").json()
    response = client.post(
        f"/api/conversations/{started['id']}/messages",
        data=json.dumps({"text": "hola"}),
        content_type="text/plain;charset=UTF-8",
        HTTP_AUTHORIZATION=f"Bearer {started['token']}",
    )
    assert_unsupported(response)
    assert not Message.objects.exists()


def test_json_with_a_charset_is_json(client, shop):
    response = client.post("/api/conversations", data=b'{"kb": "shop"}', content_type="application/json; charset=utf-8")
    assert response.status_code == 201


def config(client, peer: str, forwarded: str | None = None) -> int:
    extra = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return int(client.get("/api/widget-config?kb=shop", **extra).status_code)


def test_customers_behind_a_trusted_proxy_get_their_own_rate_limit_buckets(client, shop, settings):
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.0/8")]
    settings.CHAT_IP_RATE_LIMIT_PER_MINUTE = 2
    ana, ben = "203.0.113.10", "203.0.113.11"
    assert [config(client, PROXY, ana) for _ in range(2)] == [200, 200]
    assert [config(client, PROXY, ben) for _ in range(2)] == [200, 200]  # not Ana's bucket, not the proxy's
    assert config(client, PROXY, ana) == 429


def test_forwarded_addresses_from_an_untrusted_peer_are_ignored(client, shop, settings):
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.0/8")]
    settings.CHAT_IP_RATE_LIMIT_PER_MINUTE = 2
    peer = "198.51.100.20"  # a client that writes its own X-Forwarded-For to get fresh buckets
    assert [config(client, peer, f"192.0.2.{n}") for n in range(3)] == [200, 200, 429]


def test_without_trusted_proxies_the_peer_is_the_client(shop, settings):
    settings.TRUSTED_PROXIES = []
    request = RequestFactory().get("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.10")
    assert client_ip(request) == PROXY


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("203.0.113.10", "203.0.113.10"),
        ("6.6.6.6, 203.0.113.10", "203.0.113.10"),  # the first entry is whatever the client sent: not trusted
        ("203.0.113.10, 10.1.2.3", "203.0.113.10"),  # a chain of our own proxies is skipped
        ("2001:db8::1", "2001:db8::1"),
        ("not-an-address", PROXY),  # garbage: the proxy's own address is counted
        ("", PROXY),
        ("10.1.2.3", PROXY),  # nothing but proxies
    ],
)
def test_the_client_is_the_last_forwarded_address_that_is_not_a_trusted_proxy(shop, settings, forwarded, expected):
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.0/8")]
    request = RequestFactory().get("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected
