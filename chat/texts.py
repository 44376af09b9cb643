"""What the bot says to customers itself (not generated), in each supported language."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "queued": {
        "es": "Te paso con una persona del equipo. Estás en la cola (posición {position}); "
        "la espera estimada es de unos {wait} minutos. Puedes seguir escribiendo aquí.",
        "en": "I'm passing you to a person on our team. You're in the queue (position {position}); "
        "the expected wait is about {wait} minutes. You can keep writing here.",
    },
    "queued_by_email": {
        "es": "Ahora mismo no hay nadie del equipo conectado ({hours}). Hemos abierto una consulta y te "
        "responderemos por correo electrónico{email}. Si quieres, escribe aquí tu correo y más detalles.",
        "en": "Nobody from our team is online right now ({hours}). We've opened a ticket and will reply "
        "by e-mail{email}. You can leave your e-mail address and more details here.",
    },
    "clarify": {
        "es": "No estoy seguro de haberte entendido. ¿Puedes contármelo con otras palabras? "
        "Si lo prefieres, pulsa «Hablar con una persona».",
        "en": "I'm not sure I understood. Could you put it another way? If you prefer, press “Talk to a person”.",
    },
    "clarify_with_suggestion": {
        "es": "No estoy seguro de haberte entendido. ¿Te refieres a «{suggestion}»? "
        "Cuéntamelo con otras palabras o pulsa «Hablar con una persona».",
        "en": "I'm not sure I understood. Do you mean “{suggestion}”? "
        "Tell me in other words, or press “Talk to a person”.",
    },
    "system_error": {
        "es": "Lo siento, ahora mismo tengo un problema técnico. Tu mensaje está guardado y una persona "
        "del equipo lo atenderá.",
        "en": "Sorry, I'm having a technical problem right now. Your message is saved and a person from "
        "our team will take care of it.",
    },
    "waiting": {
        "es": "Tu mensaje ha llegado al equipo; una persona te responderá aquí.",
        "en": "Your message has reached the team; a person will reply here.",
    },
    "agent_joined": {
        "es": "{name} se ha unido a la conversación.",
        "en": "{name} has joined the conversation.",
    },
    "handed_back": {
        "es": "Vuelves a hablar con el asistente virtual. Escribe «persona» si necesitas al equipo otra vez.",
        "en": "You're back with the virtual assistant. Type “person” if you need the team again.",
    },
    "resolved": {
        "es": "La conversación se ha marcado como resuelta. Si necesitas algo más, escribe aquí.",
        "en": "This conversation has been marked as resolved. If you need anything else, write here.",
    },
    "sorry_not_helpful": {
        "es": "Siento que no te haya servido.",
        "en": "Sorry that didn't help.",
    },
}


def text(key: str, language: str, **values: object) -> str:
    variants = TEXTS[key]
    return variants.get(language, variants["en"]).format(**values)
