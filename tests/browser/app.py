"""The product's ASGI application for the browser tests, with routing made to offer choices for a few messages.

The browser drives a real uvicorn process, so the seam is replaced here, where that process imports the app:
the messages in ``OFFERS`` get a CHOICES decision over those demo entries; every other message is routed for real.
"""

from __future__ import annotations

from typing import Any

from support.asgi import application  # sets Django up: the product's modules can be imported after this

__all__ = ["application"]

OFFERS = {
    "lo de la bici mensual": ("rd-price", "rd-pause", "rd-cancel"),
    "the monthly bike thing": ("rd-price", "rd-pause", "rd-cancel"),
}


def _offer_choices_for_fixed_messages() -> None:
    from chat import chain
    from knowledge.models import Entry
    from knowledge.routing import Candidate, Decision
    from knowledge.vocabulary import Outcome

    real_route = chain.route

    def route(kb: Any, text: str, model: Any = None) -> Decision:
        keys = OFFERS.get(text.strip())
        if keys is None:
            return real_route(kb, text, model)
        entries = [Entry.objects.get(knowledge_base=kb, key=key) for key in keys]
        offered = [Candidate(e.pk, e.question, 0.62 - 0.04 * i) for i, e in enumerate(entries)]
        return Decision(Outcome.CHOICES, 0.55, choices=offered, candidates=offered)

    chain.route = route


_offer_choices_for_fixed_messages()
