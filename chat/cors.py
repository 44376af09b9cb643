"""CORS for the widget API: sites in CHAT_ALLOWED_ORIGINS may call /api/ from the browser (no cookies)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase

ALLOWED_HEADERS = "Authorization, Content-Type, Accept"
ALLOWED_METHODS = "GET, POST, OPTIONS"


def allowed_origin(origin: str) -> str | None:
    allowed = settings.CHAT_ALLOWED_ORIGINS
    if not origin:
        return None
    if "*" in allowed:
        return "*"
    return origin if origin in allowed else None


class WidgetCorsMiddleware:
    """Answers preflights and labels responses of /api/ paths; other paths are untouched."""

    async_capable = True
    sync_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(self.get_response):
            markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if not request.path.startswith("/api/"):
            return await self.get_response(request)
        origin = allowed_origin(request.headers.get("Origin", ""))
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response: HttpResponseBase = HttpResponse(status=204 if origin else 403)
        else:
            response = await self.get_response(request)
        if origin:
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response["Access-Control-Max-Age"] = "600"
            if origin != "*":
                response["Vary"] = "Origin"
        return response
