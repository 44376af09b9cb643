"""The light Markdown of bot and agent turns as HTML for the agent workspace: escaped first, then a small subset.

The same subset as the widget draws (chat/static/chat/widget.js, renderMarkdown): paragraphs, line breaks,
**bold**, *italics*, "-"/"*"/"•" bullets and numbered lists. Nothing else becomes markup: a Markdown link shows as
"label (url)", raw HTML shows as text.
"""

from __future__ import annotations

import re

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Embedding, override and isolate controls: in a customer's text they could make the agent read words in another
# order than they were written ("Trojan Source"). They are dropped from everything the admin shows.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
_LINK = re.compile(r"\[([^\]\n]+)\]\(\s*([^)\s]+)\s*\)")
_BOLD = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*")
_ITALIC = re.compile(r"\*([^*\s](?:[^*]*?[^*\s])?)\*")
_BULLET = re.compile(r"^\s*[-*•]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*(\d{1,4})[.)]\s+(.*)$")


def without_bidi_controls(text: str) -> str:
    return _BIDI_CONTROLS.sub("", text or "")


def _inline(line: str) -> str:
    """One line, escaped, with bold and italics. Runs on escaped text: "*" and brackets survive escaping."""
    html = str(escape(line))
    html = _LINK.sub(r"\1 (\2)", html)
    html = _BOLD.sub(r"<strong>\1</strong>", html)
    return _ITALIC.sub(r"<em>\1</em>", html)


def render_markdown(text: str) -> SafeString:
    blocks: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []
    list_tag = ""
    start = ""

    def flush_paragraph() -> None:
        if paragraph:
            blocks.append("<p>" + "<br>".join(paragraph) + "</p>")
            paragraph.clear()

    def flush_list() -> None:
        nonlocal list_tag, start
        if items:
            attrs = f' start="{start}"' if list_tag == "ol" and start not in ("", "1") else ""
            blocks.append(f"<{list_tag}{attrs}>" + "".join(f"<li>{item}</li>" for item in items) + f"</{list_tag}>")
            items.clear()
        list_tag, start = "", ""

    for line in without_bidi_controls(text).replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line.strip():
            flush_paragraph()
            flush_list()
            continue
        bullet = _BULLET.match(line)
        numbered = None if bullet else _NUMBERED.match(line)
        if bullet or numbered:
            flush_paragraph()
            tag = "ul" if bullet else "ol"
            if list_tag != tag:
                flush_list()
                list_tag = tag
                start = numbered.group(1) if numbered else ""
            items.append(_inline(bullet.group(1) if bullet else numbered.group(2)))  # type: ignore[union-attr]
            continue
        flush_list()
        paragraph.append(_inline(line))
    flush_paragraph()
    flush_list()
    return mark_safe("".join(blocks))  # noqa: S308 (every piece of text went through escape() above)
