from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.simple_tag(takes_context=True)
def queue_counts(context: dict[str, Any]) -> dict[str, int] | None:
    request = context.get("request")
    if request is None or not request.user.has_perm("chat.view_ticket"):
        return None
    from chat.admin import waiting_counts

    return waiting_counts()
