"""Request bodies of the widget API, validated by pydantic; unknown fields are refused."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @classmethod
    def too_large(cls, max_bytes: int) -> str:
        """What a body over the API's byte cap is told; a body whose limit is another one names that one."""
        return f"The request body is larger than {max_bytes // 1024} kB."


def _valid_email(value: str) -> str:
    if value:
        try:
            validate_email(value)
        except ValidationError:
            raise ValueError("not a valid e-mail address") from None
    return value


class StartConversation(Body):
    """``customer_name``/``customer_email``: what the customer typed (shown to agents as given).
    ``user_id``/``user_email``/``user_hmac``: who the host site says its logged-in customer is, signed with the
    site's secret (chat.actions.identity_signature); stored only when the signature verifies."""

    kb: str = Field(default="default", max_length=50, pattern=r"^[-a-zA-Z0-9_]+$")
    language: Literal["es", "en"] | None = None
    page_url: str = Field(default="", max_length=1000)
    customer_name: str = Field(default="", max_length=200)
    customer_email: str = Field(default="", max_length=254)
    user_id: str = Field(default="", max_length=200)
    user_email: str = Field(default="", max_length=254)
    user_hmac: str = Field(default="", max_length=128)

    @field_validator("page_url")
    @classmethod
    def web_page(cls, value: str) -> str:
        # Agents get it as a link: only a web page's address, never javascript: or data:.
        return value if re.match(r"^https?://", value, re.IGNORECASE) else ""

    @field_validator("customer_email", "user_email")
    @classmethod
    def valid_email(cls, value: str) -> str:
        return _valid_email(value)


class Contact(Body):
    """The name and e-mail a customer leaves in the widget (before chatting, or while nobody is online)."""

    name: str = Field(default="", max_length=200)
    email: str = Field(default="", max_length=254)

    @field_validator("email")
    @classmethod
    def valid_email(cls, value: str) -> str:
        return _valid_email(value)


class Close(Body):
    """Closing a conversation takes no fields."""


class Rating(Body):
    """The customer's answer to "how well did we help?" after an agent resolved the conversation."""

    rating: int = Field(ge=1, le=5, strict=True)


def message_too_long(length: int | None = None) -> str:
    """The customer's message is over CHAT_MAX_MESSAGE_CHARS (also when its body is over the API's byte cap)."""
    limit = f"Messages can be at most {settings.CHAT_MAX_MESSAGE_CHARS} characters"
    return f"{limit} (this one has {length})." if length is not None else f"{limit}."


class PostMessage(Body):
    # The length limit is a setting, checked by the action so the error can name it (413 too_large).
    text: str
    client_id: str = Field(default="", max_length=64, pattern=r"^[-a-zA-Z0-9_]*$")

    @field_validator("text", mode="before")
    @classmethod
    def without_nul(cls, value: object) -> object:
        # A NUL cannot be stored (PostgreSQL refuses it) and means nothing: drop it, keep the message.
        return value.replace("\x00", "") if isinstance(value, str) else value

    @field_validator("text")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value:  # already stripped of whitespace
            raise PydanticCustomError("empty_message", "The message is empty.")
        return value

    @classmethod
    def too_large(cls, max_bytes: int) -> str:
        return message_too_long()


class Feedback(Body):
    helpful: bool


class Handoff(Body):
    reason: str = Field(default="", max_length=200)


class OtherChoice(StrEnum):
    """What a customer may pick besides an offered entry."""

    NONE = "none"  # none of these fits: hand over
    PERSON = "person"  # talk to a person: hand over


class PickChoice(Body):
    """``choice``: an offered entry's id (a string of digits, or a number), ``"none"`` or ``"person"``."""

    choice: str = Field(max_length=20)

    @field_validator("choice", mode="before")
    @classmethod
    def entry_id_or_keyword(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            return value  # pydantic names the wrong type
        value = value.strip()
        if re.fullmatch(r"[0-9]{1,18}", value):
            return str(int(value))
        if value not in tuple(OtherChoice):
            raise ValueError('must be an offered entry id, "none" or "person"')
        return value
