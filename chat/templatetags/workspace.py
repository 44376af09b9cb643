"""Filters of the agent workspace and queue: safe Markdown, bidi-safe text, readable hand-over reasons."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from chat.markdown import render_markdown, without_bidi_controls
from knowledge.vocabulary import HandoverReason

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    return render_markdown(text)


@register.filter
def bidi_safe(text: str) -> str:
    return without_bidi_controls(str(text or ""))


@register.filter
def reason_label(code: str) -> str:
    """``low_confidence`` → "Low confidence"; an unknown code is shown as it is."""
    try:
        return HandoverReason(code).label
    except ValueError:
        return str(code or "")
