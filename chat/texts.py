"""What the bot says to customers itself (not generated), in each supported language."""

from __future__ import annotations

from dataclasses import dataclass

from knowledge.vocabulary import HandoverReason

TEXTS: dict[str, dict[str, str]] = {
    # The place in the queue and the wait are not in the text: the widget shows them live, under the log.
    "queued": {
        "es": "Te paso con una persona del equipo: estás en la cola. Puedes seguir escribiendo aquí mientras esperas.",
        "en": "I'm passing you to a person on our team: you're in the queue. You can keep writing here while you wait.",
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
    "choices": {
        "es": "¿Te refieres a una de estas?",
        "en": "Did you mean one of these?",
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
    "resolved_csat": {
        "es": "La conversación se ha marcado como resuelta. ¿Qué tal te hemos ayudado? Puntúanos de 1 a 5. "
        "Si necesitas algo más, escribe aquí.",
        "en": "This conversation has been marked as resolved. How well did we help? Rate us from 1 to 5. "
        "If you need anything else, write here.",
    },
    # Only agents see this one: the customer has already started a new conversation.
    "customer_left": {
        "es": "El cliente ha cerrado esta conversación y ha empezado otra.",
        "en": "The customer closed this conversation and started a new one.",
    },
    "sorry_not_helpful": {
        "es": "Siento que no te haya servido.",
        "en": "Sorry that didn't help.",
    },
    # Said before the queue notice when the risk-and-intent stage hands a first message over (handover_preface).
    "handover_safety": {
        "es": "Si tú u otra persona estáis en peligro ahora mismo, llama al {emergency}.",
        "en": "If you or someone else is in danger right now, call {emergency}.",
    },
    "handover_crisis_line": {
        "es": "Si estás pensando en hacerte daño, puedes llamar al {crisis} a cualquier hora: te atenderá una persona.",
        "en": "If you are thinking about harming yourself, you can call {crisis} at any time and talk to someone.",
    },
    "handover_fraud": {
        "es": "Para proteger tu cuenta, una persona del equipo revisará lo que ha pasado. Si ves cargos que no "
        "reconoces, llama también a tu banco para bloquear la tarjeta.",
        "en": "To protect your account, a person on our team will look into what happened. If you see charges "
        "you don't recognise, call your bank too so they can block the card.",
    },
    "handover_legal": {
        "es": "Una persona del equipo atenderá tu reclamación.",
        "en": "A person on our team will handle your complaint.",
    },
    "handover_compensation": {
        "es": "Una persona del equipo revisará tu caso y tu solicitud.",
        "en": "A person on our team will review your case and your request.",
    },
    "handover_data_protection": {
        "es": "Una persona del equipo gestionará tu solicitud sobre tus datos personales.",
        "en": "A person on our team will handle your request about your personal data.",
    },
    # business hours as the customer reads them (chat.hours.describe)
    "hours_days": {"es": "{first} a {last}", "en": "{first} to {last}"},
    "hours_zone": {"es": "hora de {zone}", "en": "{zone} time"},
}

DAY_NAMES: dict[str, tuple[str, ...]] = {  # Monday first, as chat.hours.DAYS
    "es": ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}


def text(key: str, language: str, **values: object) -> str:
    variants = TEXTS[key]
    return variants.get(language, variants["en"]).format(**values)


@dataclass(frozen=True)
class EmergencyNumbers:
    emergency: str  # police, ambulance, fire
    crisis: str | None  # a national suicide and emotional crisis line, where we know one for certain


# Only numbers we are sure of; a country without a crisis line here still gets its emergency number.
# settings.SUPPORT_COUNTRY accepts exactly these codes.
EMERGENCY_NUMBERS: dict[str, EmergencyNumbers] = {
    "ES": EmergencyNumbers("112", "024"),  # 024: Línea 024, atención a la conducta suicida
    "GB": EmergencyNumbers("999", "116 123"),  # 116 123: Samaritans
    "IE": EmergencyNumbers("112", "116 123"),  # 999 works too; 116 123: Samaritans
    "US": EmergencyNumbers("911", "988"),  # 988: Suicide & Crisis Lifeline
    "CA": EmergencyNumbers("911", "988"),  # 988: Suicide Crisis Helpline
    "FR": EmergencyNumbers("112", "3114"),  # 3114: numéro national de prévention du suicide
    "DE": EmergencyNumbers("112", "0800 111 0 111"),  # TelefonSeelsorge
    "MX": EmergencyNumbers("911", None),
    "AR": EmergencyNumbers("911", None),
}

_PREFACES: dict[str, str] = {  # StrEnum members hash as their value, so a plain string finds them
    HandoverReason.FRAUD: "handover_fraud",
    HandoverReason.LEGAL: "handover_legal",
    HandoverReason.COMPENSATION: "handover_compensation",
    HandoverReason.DATA_PROTECTION: "handover_data_protection",
}


def handover_preface(reason: str, language: str, country: str | None = None) -> str:
    """What to say before the queue notice when a message is handed over for ``reason``; "" when nothing.

    Safety and crisis replies carry the emergency numbers of ``country`` (default ``settings.SUPPORT_COUNTRY``).
    """
    if reason == HandoverReason.SAFETY:
        from django.conf import settings

        numbers = EMERGENCY_NUMBERS[(country or settings.SUPPORT_COUNTRY).upper()]
        preface = text("handover_safety", language, emergency=numbers.emergency)
        if numbers.crisis:
            preface += " " + text("handover_crisis_line", language, crisis=numbers.crisis)
        return preface
    key = _PREFACES.get(reason)
    return text(key, language) if key else ""
