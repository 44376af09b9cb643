"""Guess whether a customer wrote in Spanish or English from cheap textual cues.

Customer messages are short, informal and often unaccented ("q pasa con mi pedido", "human pls"), which defeats
statistical detectors trained on clean prose, and the answer path cannot afford a model call per message. So this is
a scoring of cues each language leaves: its own characters, its function words (formal and chat spellings, Spain and
Latin America), and word endings typical of it. A language is a `LanguageProfile`; adding one means adding a profile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Only the start of a long text is looked at: the language is clear long before, and detection must stay cheap.
_MAX_CHARS = 2000
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")  # letters only, with one optional apostrophe part (don't, it's)
_CODE = re.compile(r"\S*\d\S*")  # order numbers and the like ("ES-4471-ZX") say nothing about the language
_STOPWORD_WEIGHT = 1.0
_SPECIAL_CHARACTER_WEIGHT = 1.5
_SPECIAL_PUNCTUATION_WEIGHT = 2.0
_SUFFIX_WEIGHT = 0.5
_MIN_SCORE = 0.5  # one typical word ending is weak, but still better than no guess at all


@dataclass(frozen=True)
class LanguageProfile:
    """The cues one language leaves in short informal text."""

    code: str
    stopwords: frozenset[str]
    special_characters: frozenset[str] = frozenset()  # letters other supported languages do not use
    special_punctuation: frozenset[str] = frozenset()  # marks only this language uses (¿ ¡)
    suffixes: tuple[str, ...] = ()  # endings of content words typical of the language
    contraction_endings: tuple[str, ...] = ()  # what follows an apostrophe inside a word (don't, I'm)


# Words common to both languages ("a", "no", "me", "he", "son", "email", "ok") are deliberately absent: they would
# only add noise to both sides ("he pedido" is Spanish, "he said" English).
SPANISH = LanguageProfile(
    code="es",
    stopwords=frozenset(
        """
        de la que el en y los se del las un por con una su para es al lo como mas más o pero sus le ya este
        porque esta está estas están estos ese esa eso esto entre cuando muy sin sobre tambien también hasta hay
        donde dónde quien quién desde todo toda todos nos les ni otro otra otros qué cual cuál cuales cuáles
        cuanto cuánto cuanta cuánta cuantos cuántos cuando cuándo como cómo yo tú tu tus mi mis te ti os
        usted ustedes ud uds vosotros vuestro vuestra vuestros nosotros ella ellas ellos él si sí
        soy eres estoy estamos ser estar fue sido tengo tiene tienen tenemos teneis tenéis tenes tenés
        puedo puede pueden podeis podéis podes podés quiero quieres queres querés quería necesito necesita
        hago hace hacer hacen dar dame dime decir sabe saber sé van voy vamos ir llega llegó llegado
        hola buenas buenos dias días tardes noches gracias favor porfa porfavor xfa vale adios adiós chao chau
        hoy ayer mañana ahora aun aún todavia todavía nunca siempre nada algo alguien bien mal mucho poco
        pedido pedidos compra envio envío factura cuenta contraseña devolver devolucion devolución precio
        cuesta tarifa cambiar cancelar persona agente hablar ayuda problema tienda dinero pago cobro funciona
        funcionan sirve recibido recibí
        q xq pq porq tb tmb vos sos che celular plata acá aca ahorita mande pasadme pasame pásame
        ha han había hemos habeis habéis
        """.split()  # noqa: SIM905 -- a block of words reads and diffs better than hundreds of quoted strings
    ),
    special_characters=frozenset("ñáéíóúü"),
    special_punctuation=frozenset("¿¡"),
    suffixes=("cion", "ción", "ciones", "mente", "dad", "ado", "ada", "ido", "ida", "amos", "emos", "ais", "éis"),
)

ENGLISH = LanguageProfile(
    code="en",
    stopwords=frozenset(
        """
        the be to of and in that have it for not on with as you do at this but his by from they we she or an
        will my one all would there their what so up out if about who get which go when make can like just
        him know take into your some could them see other than then now only its over think also back after
        use how our well way even new want because any these give day most us is are was were has had does
        did am been being i i'm im i've ive don't dont can't cant won't wont isn't isnt hasn't hasnt haven't
        havent doesn't doesnt didn't didnt it's where why whats what's there's please pls plz thanks thank
        thx ty hello hi hey yes yeah nope u ur order orders arrived arrive help need refund account password
        shipping delivery delivered human agent someone speak talk person still yet never should must here
        money payment charged charge cancel change store invoice bill price cost problem wrong broken
        """.split()  # noqa: SIM905 -- a block of words reads and diffs better than hundreds of quoted strings
    ),
    suffixes=("ing", "tion", "ly", "ght", "ould", "ness", "ship", "ment", "ive", "ful", "less"),
    contraction_endings=("t", "s", "m", "re", "ve", "ll", "d"),
)

PROFILES: tuple[LanguageProfile, ...] = (SPANISH, ENGLISH)


def detect_language(text: str, default: str | None = None) -> str | None:
    """Return the code of the language `text` is most likely in, or `default` when the cues are absent or tied.

    "ok", "123" or an order number carry no evidence; the caller then keeps the conversation's language.
    """
    sample = text[:_MAX_CHARS].lower()
    words = _WORD.findall(_CODE.sub(" ", sample))
    scores = {profile.code: _score(profile, sample, words) for profile in PROFILES}
    best_code, best_score = max(scores.items(), key=lambda item: item[1])
    if best_score < _MIN_SCORE:
        return default
    if sum(1 for score in scores.values() if score == best_score) > 1:
        return default
    return best_code


def _score(profile: LanguageProfile, sample: str, words: list[str]) -> float:
    score = _SPECIAL_PUNCTUATION_WEIGHT * sum(1 for mark in profile.special_punctuation if mark in sample)
    for word in words:
        if word in profile.stopwords or _is_contraction(profile, word):
            score += _STOPWORD_WEIGHT
        elif len(word) > 4 and word.endswith(profile.suffixes):
            score += _SUFFIX_WEIGHT
        if profile.special_characters and not profile.special_characters.isdisjoint(word):
            score += _SPECIAL_CHARACTER_WEIGHT
    return score


def _is_contraction(profile: LanguageProfile, word: str) -> bool:
    _, apostrophe, ending = word.partition("'")
    return bool(apostrophe) and ending in profile.contraction_endings
