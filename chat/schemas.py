"""Request bodies of the widget API, validated by pydantic; unknown fields are refused."""

from __future__ import annotations

from typing import Literal

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from pydantic import BaseModel, ConfigDict, Field, field_validator


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class StartConversation(Body):
    kb: str = Field(default="default", max_length=50, pattern=r"^[-a-zA-Z0-9_]+$")
    language: Literal["es", "en"] | None = None
    page_url: str = Field(default="", max_length=1000)
    customer_name: str = Field(default="", max_length=200)
    customer_email: str = Field(default="", max_length=254)
    customer_ref: str = Field(default="", max_length=200)

    @field_validator("customer_email")
    @classmethod
    def valid_email(cls, value: str) -> str:
        if value:
            try:
                validate_email(value)
            except ValidationError:
                raise ValueError("not a valid e-mail address") from None
        return value


class PostMessage(Body):
    # The length limit is a setting, checked by the action so the error can name it.
    text: str = Field(min_length=1)
    client_id: str = Field(default="", max_length=64, pattern=r"^[-a-zA-Z0-9_]*$")

    @field_validator("text")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the message is empty")
        return value


class Feedback(Body):
    helpful: bool


class Handoff(Body):
    reason: str = Field(default="", max_length=200)
