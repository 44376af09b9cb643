"""Domain errors: each carries a machine code and an HTTP status; the API turns them into one JSON shape."""

from __future__ import annotations


class ChatError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class InvalidRequest(ChatError):
    code, status = "invalid_request", 400


class Unauthorized(ChatError):
    code, status = "unauthorized", 401


class NotFound(ChatError):
    code, status = "not_found", 404


class TooLarge(ChatError):
    code, status = "too_large", 413


class RateLimited(ChatError):
    code, status = "rate_limited", 429


class Conflict(ChatError):
    code, status = "conflict", 409


class Unavailable(ChatError):
    code, status = "unavailable", 503


class NoChoices(ChatError):
    code, status = "no_choices", 422


class UnknownChoice(ChatError):
    code, status = "unknown_choice", 422


class AlreadyChosen(ChatError):
    code, status = "already_chosen", 409


class ChoicesExpired(ChatError):
    code, status = "choices_expired", 409
