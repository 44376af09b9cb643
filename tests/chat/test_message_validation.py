"""The message body: NULs are dropped, an empty message says so, and a long one names the message limit."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from pydantic import ValidationError

from chat.models import Message
from chat.schemas import Body, PostMessage
from tests.chat.conftest import Chat


# --- the schema ------------------------------------------------------------------------------------
def test_nul_characters_are_dropped_and_the_rest_is_kept():
    assert PostMessage.model_validate({"text": "ho\x00la\x00 "}).text == "hola"


@pytest.mark.parametrize("text", ["", "   \n\t ", "\x00", " \x00 \x00\n"], ids=["empty", "blank", "nul", "blank-nul"])
def test_an_empty_message_says_the_message_is_empty(text):
    with pytest.raises(ValidationError) as caught:
        PostMessage.model_validate({"text": text})
    (error,) = caught.value.errors()
    assert error["type"] == "empty_message"
    assert error["msg"] == "The message is empty."
    assert error["loc"] == ("text",)


def test_a_message_over_the_byte_cap_names_the_message_limit(settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 1234
    assert "1234 characters" in PostMessage.too_large(64 * 1024)
    assert "kB" not in PostMessage.too_large(64 * 1024)
    assert Body.too_large(64 * 1024) == "The request body is larger than 64 kB."


# --- through the API ---------------------------------------------------------------------------------
@sync_to_async
def stored_texts(conversation_id: str) -> list[str]:
    return list(Message.objects.filter(conversation_id=conversation_id).order_by("id").values_list("text", flat=True))


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_message_with_nul_characters_is_stored_without_them(chat: Chat):
    response = await chat.post("/messages", {"text": "¿Cuánto cuesta\x00 la suscripción?"})
    assert response.status_code == 201, response.text
    assert (await stored_texts(chat.id))[0] == "¿Cuánto cuesta la suscripción?"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_whitespace_only_message_gets_the_empty_message_error(chat: Chat):
    response = await chat.post("/messages", {"text": " \n\t "})
    assert response.status_code == 400
    assert response.json() == {"error": {"code": "invalid_request", "message": "text: The message is empty."}}
    assert await stored_texts(chat.id) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_message_over_the_body_cap_names_the_message_limit(chat: Chat, settings):
    response = await chat.post("/messages", {"text": "a" * 100_000})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert f"{settings.CHAT_MAX_MESSAGE_CHARS} characters" in response.json()["error"]["message"]
    assert await stored_texts(chat.id) == []
