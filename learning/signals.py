"""Every bot or system reply to a customer message is logged for learning after its transaction commits.

``chat`` never imports ``learning``: this receiver is connected in ``LearningConfig.ready``. The chat
request never waits: the task is enqueued once the reply is committed, without publish retries, and a
broker that is down costs a lost log line, never a failed answer.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from typing import Any

from django.db import transaction

from chat.models import Message

logger = logging.getLogger(__name__)

_suppressed: contextvars.ContextVar[bool] = contextvars.ContextVar("learning_log_suppressed", default=False)


@contextlib.contextmanager
def logging_inline() -> Iterator[None]:
    """For callers that log turns themselves (the replay command): no task per reply."""
    token = _suppressed.set(True)
    try:
        yield
    finally:
        _suppressed.reset(token)


def _enqueue(message_id: int) -> None:
    from learning.tasks import log_turn

    try:
        log_turn.apply_async((message_id,), retry=False)
    except Exception:  # the answer has been given; losing one log line must not turn into an error
        logger.exception("could not enqueue the turn log", extra={"message_id": message_id})


def message_saved(sender: Any, instance: Message, created: bool, **kwargs: Any) -> None:
    if not created or _suppressed.get() or kwargs.get("raw"):
        return
    if instance.role in (Message.Role.BOT, Message.Role.SYSTEM) and instance.reply_to_id is not None:
        message_id = instance.pk
        # robust: whatever goes wrong while enqueueing, the reply that was just stored is still sent
        transaction.on_commit(lambda: _enqueue(message_id), robust=True)
