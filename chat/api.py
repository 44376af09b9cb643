"""The widget's JSON API. Thin: validate, authorise, call actions, shape the response.

Errors always look like ``{"error": {"code": ..., "message": ...}}`` with a fitting status; the
conversation's secret token (``Authorization: Bearer``) replaces cookies, hence ``csrf_exempt``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from functools import wraps
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from pydantic import ValidationError

from chat import actions, hours, push, ratelimit
from chat.errors import ChatError, InvalidRequest, NotFound
from chat.models import Conversation
from chat.schemas import (
    Body,
    Close,
    Contact,
    Feedback,
    Handoff,
    PickChoice,
    PostMessage,
    Rating,
    StartConversation,
)
from chat.serializers import PUBLIC_ROLES, conversation_dict, message_dict
from chat.turns import Event, answer_pick, respond
from knowledge.models import KnowledgeBase

logger = logging.getLogger(__name__)

View = Callable[..., Coroutine[Any, Any, HttpResponseBase]]
B = TypeVar("B", bound=Body)

MAX_BODY_BYTES = 64 * 1024
EVENTS_WINDOW_S = 3600.0  # an events stream ends after this long; the widget reconnects and resumes
EVENTS_HEARTBEAT_S = 20.0  # a comment line this often: the widget gives up on a stream silent for 60 s
EVENTS_POLL_S = 2.0  # how often a stream re-reads while the push bus is unreachable


def error_response(code: str, message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def api(methods: tuple[str, ...]) -> Callable[[View], View]:
    """Method check, rate limit per client IP, and every failure as the one JSON error shape."""

    def decorate(view: View) -> View:
        @csrf_exempt
        @wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                return error_response("method_not_allowed", f"Use {' or '.join(methods)}.", 405)
            try:
                await sync_to_async(ratelimit.hit)("ip", client_ip(request), settings.CHAT_IP_RATE_LIMIT_PER_MINUTE)
                return await view(request, *args, **kwargs)
            except ChatError as exc:
                return error_response(exc.code, exc.message, exc.status)
            except Exception:
                logger.exception("API error", extra={"path": request.path})
                return error_response("internal_error", "Something went wrong on our side. Please try again.", 500)

        return wrapper

    return decorate


def client_ip(request: HttpRequest) -> str:
    """The customer's address: the peer's, or - when the peer is a trusted proxy (TRUSTED_PROXIES) - the last
    address in X-Forwarded-For that is not one of ours. Earlier entries are the client's to write: never trusted."""
    peer = str(request.META.get("REMOTE_ADDR") or "unknown")
    if not _trusted(peer):
        return peer
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    for address in reversed(forwarded):
        if not _trusted(address):
            try:
                return str(ipaddress.ip_address(address))
            except ValueError:
                return peer  # garbage where the proxy wrote the client's address: count the proxy
    return peer


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.TRUSTED_PROXIES)


def parse(request: HttpRequest, schema: type[B]) -> B:
    # A cross-site form or fetch() may send text/plain without a CORS preflight; JSON needs one.
    if request.content_type != "application/json":
        raise ChatError(
            "Send the request body as JSON, with the header Content-Type: application/json.",
            code="unsupported_media_type",
            status=415,
        )
    if len(request.body) > MAX_BODY_BYTES:
        raise ChatError(schema.too_large(MAX_BODY_BYTES), code="too_large", status=413)
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidRequest(f"{where}: {first['msg']}") from None


def bearer(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


async def conversation_for(request: HttpRequest, conversation_id: str) -> Conversation:
    conversation = await sync_to_async(actions.authorised_conversation)(conversation_id, bearer(request))
    await sync_to_async(ratelimit.hit)("conversation", str(conversation.pk), settings.CHAT_RATE_LIMIT_PER_MINUTE * 3)
    return conversation


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def sse_response(stream: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(stream, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass tokens through as they come
    return response


# --- endpoints -----------------------------------------------------------------------------------
@api(("GET",))
async def widget_config(request: HttpRequest) -> HttpResponseBase:
    slug = request.GET.get("kb", "default")
    kb = await KnowledgeBase.objects.filter(slug=slug).afirst()
    if kb is None:
        raise NotFound(f"There is no knowledge base called {slug!r}.")
    return JsonResponse(
        {
            "kb": kb.slug,
            "title": kb.name,
            "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
            "greeting": {
                "es": f"¡Hola! Soy el asistente de {kb.name}. ¿En qué te ayudo?",
                "en": f"Hi! I'm the {kb.name} assistant. How can I help?",
            },
            "color": "#0b5fff",
            "team": hours.availability(),  # away outside BUSINESS_HOURS: the widget offers the contact card first
        }
    )


@api(("POST",))
async def start(request: HttpRequest) -> HttpResponseBase:
    data = parse(request, StartConversation)
    conversation, token, identity = await sync_to_async(actions.start_conversation)(data)
    return JsonResponse(
        {
            "id": str(conversation.pk),
            "token": token,
            "status": conversation.status,
            "language": conversation.language,
            "identity": identity,
        },
        status=201,
    )


@api(("GET",))
async def detail(request: HttpRequest, conversation_id: str) -> HttpResponseBase:
    conversation = await conversation_for(request, conversation_id)
    queue = await sync_to_async(actions.queue_info)(conversation)
    return JsonResponse(await sync_to_async(conversation_dict)(conversation, queue))


@api(("POST",))
async def post_message(request: HttpRequest, conversation_id: str) -> HttpResponseBase:
    conversation = await conversation_for(request, conversation_id)
    data = parse(request, PostMessage)
    await sync_to_async(ratelimit.hit)("messages", str(conversation.pk), settings.CHAT_RATE_LIMIT_PER_MINUTE)
    message, created = await sync_to_async(actions.add_customer_message)(conversation, data.text, data.client_id)
    turn = respond(conversation, message, is_retry=not created)
    if wants_stream(request):
        return sse_response(stream_turn(turn, conversation_id))
    events = [(event, payload) async for event, payload in turn]
    return JsonResponse({"message": message_dict(message), **outcome(events, conversation)}, status=201)


@api(("POST",))
async def choose(request: HttpRequest, conversation_id: str, message_id: int) -> HttpResponseBase:
    """The customer's pick among the choices a bot message offered: answered (an entry) or handed over."""
    conversation = await conversation_for(request, conversation_id)
    data = parse(request, PickChoice)
    await sync_to_async(ratelimit.hit)("messages", str(conversation.pk), settings.CHAT_RATE_LIMIT_PER_MINUTE)
    pick = await sync_to_async(actions.choose)(conversation, message_id, data.choice)
    turn = answer_pick(conversation, pick)
    if wants_stream(request):
        return sse_response(stream_turn(turn, conversation_id))
    events = [(event, payload) async for event, payload in turn]
    return JsonResponse({"picked": pick.choice, **outcome(events, conversation)})


def wants_stream(request: HttpRequest) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


async def stream_turn(turn: AsyncIterator[Event], conversation_id: str) -> AsyncIterator[bytes]:
    try:
        async for event, payload in turn:
            yield sse(event, payload)
    except Exception:  # the turn already escalates on model/store failures; this is the last resort
        logger.exception("stream failed", extra={"conversation": conversation_id})
        yield sse("error", {"code": "internal_error", "message": "Something went wrong; please retry."})
        return
    yield sse("done", {})


def outcome(events: list[Event], conversation: Conversation) -> dict[str, Any]:
    """A whole turn's events as one JSON body: the replies, the choices offered, the conversation's status."""
    replies = [payload for event, payload in events if event == "message" and payload["role"] != "customer"]
    status = next((payload for event, payload in reversed(events) if event == "status"), None)
    choices = next((payload for event, payload in events if event == "choices"), None)
    return {"replies": replies, "choices": choices, "status": status or {"status": conversation.status}}


@api(("GET",))
async def events(request: HttpRequest, conversation_id: str) -> HttpResponseBase:
    """New public messages and status changes, as SSE, pushed as they are stored (chat/push.py).

    Resumes after the message id ``after``; each message is sent once, in id order. An idle stream costs no
    queries: it sleeps until its conversation (or, while waiting, the queue) changes, with a comment line
    every EVENTS_HEARTBEAT_S to keep proxies and the widget's idle timer content. It ends after
    EVENTS_WINDOW_S; the widget reconnects.
    """
    conversation = await conversation_for(request, conversation_id)
    try:
        after = int(request.GET.get("after", "0"))
    except ValueError:
        raise InvalidRequest("after: must be a message id (an integer)") from None
    return sse_response(_conversation_events(conversation, after))


async def _conversation_events(conversation: Conversation, after: int) -> AsyncIterator[bytes]:
    topic = push.conversation_topic(conversation.pk)
    news = _News(conversation, after)
    stream = push.watch([topic], window_s=EVENTS_WINDOW_S, heartbeat_s=EVENTS_HEARTBEAT_S, poll_s=EVENTS_POLL_S)
    connected = False
    async for woken in stream:
        if not connected:  # subscribed: from here on, whatever is stored wakes this stream (chat/push.watch)
            connected = True
            yield b": connected\n\n"
        if woken is None:
            yield b": keepalive\n\n"
            continue
        for chunk in await push.read(news.read):
            yield chunk
        # A waiting customer's place in the queue moves when tickets ahead are claimed or closed.
        woken.listen_to([topic, push.QUEUE] if news.status == Conversation.Status.WAITING else [topic])
    yield sse("done", {})


class _News:
    """What a conversation's stream has sent so far, and the reads that find what it has not."""

    def __init__(self, conversation: Conversation, after: int) -> None:
        self.conversation = conversation
        self.last_id = after
        self.status: str = conversation.status
        self.queue: dict[str, Any] | None = None

    def read(self) -> list[bytes]:
        out = []
        fresh = self.conversation.messages.filter(id__gt=self.last_id, role__in=PUBLIC_ROLES)
        for message in fresh.select_related("author").order_by("id"):
            self.last_id = message.pk
            out.append(sse("message", message_dict(message)))
        status = Conversation.objects.filter(pk=self.conversation.pk).values_list("status", flat=True).first()
        status = status or self.status
        queue = actions.queue_info(self.conversation) if status == Conversation.Status.WAITING else None
        if (status, queue) != (self.status, self.queue):
            self.status, self.queue = status, queue
            out.append(sse("status", {"status": status, "queue": queue}))
        return out


@api(("POST",))
async def feedback(request: HttpRequest, conversation_id: str, message_id: int) -> HttpResponseBase:
    conversation = await conversation_for(request, conversation_id)
    data = parse(request, Feedback)
    message, notice = await sync_to_async(actions.give_feedback)(conversation, message_id, data.helpful)
    await sync_to_async(conversation.refresh_from_db)()
    queue = await sync_to_async(actions.queue_info)(conversation)
    return JsonResponse(
        {
            "message": message_dict(message),
            "status": conversation.status,
            "queue": queue,
            "notice": message_dict(notice) if notice else None,
        }
    )


@api(("POST",))
async def handoff(request: HttpRequest, conversation_id: str) -> HttpResponseBase:
    conversation = await conversation_for(request, conversation_id)
    parse(request, Handoff)
    _, notice = await sync_to_async(actions.request_handoff)(conversation)
    await sync_to_async(conversation.refresh_from_db)(fields=["status"])
    queue = await sync_to_async(actions.queue_info)(conversation)
    return JsonResponse({"status": conversation.status, "queue": queue, "notice": message_dict(notice)})


@api(("POST",))
async def contact(request: HttpRequest, conversation_id: str) -> HttpResponseBase:
    """The name and e-mail the customer leaves, so the team can reply after they have gone."""
    conversation = await conversation_for(request, conversation_id)
    data = parse(request, Contact)
    conversation = await sync_to_async(actions.set_contact)(conversation, data)
    return JsonResponse(
        {
            "customer": {
                "name": conversation.customer_name,
                "email": conversation.customer_email,
                "verified": conversation.identity_verified,
            }
        }
    )


@api(("POST",))
async def close(request: HttpRequest, conversation_id: str) -> HttpResponseBase:
    """The customer starts over: the conversation and its open ticket are closed."""
    conversation = await conversation_for(request, conversation_id)
    parse(request, Close)
    await sync_to_async(actions.close_by_customer)(conversation)
    return JsonResponse({"status": conversation.status})


@api(("POST",))
async def rate(request: HttpRequest, conversation_id: str, message_id: int) -> HttpResponseBase:
    """The customer's 1-5 satisfaction rating, answering the closing message ``message_id``."""
    conversation = await conversation_for(request, conversation_id)
    data = parse(request, Rating)
    message = await sync_to_async(actions.rate_resolution)(conversation, message_id, data.rating)
    return JsonResponse({"message": message_dict(message)})


async def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
    return error_response("not_found", "No such API endpoint.", 404)
