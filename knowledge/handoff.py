"""Does this one message ask for a person? Spanish and English, formal and informal.

Rule-based on purpose: a request for a human must never depend on retrieval confidence, it must be
instant, and its mistakes must be explainable. Two kinds of message count:
- a request: a contact verb ("hablar con", "pásame con", "transfer me to", "get me") near a person
  ("una persona", "un agente", "a human", "a manager"), or a bare person noun as the whole message
  ("operador", "agent please");
- strong frustration or repeated contact ("es la tercera vez que escribo", "your bot is useless").
"""

from __future__ import annotations

import re
import unicodedata

_PERSON = (
    r"(?:persona|personas|humano|humana|ser\s+humano|agente|agentes|operador|operadora|asesor|asesora|"
    r"ejecutivo|ejecutiva|supervisor|supervisora|responsable|encargado|encargada|companero|companera|"
    r"representante|alguien|human|humans|human\s+being|person|people|agent|operator|representative|manager|"
    r"supervisor|someone|somebody|staff|advisor|adviser)\b"
)
# People no one asks for by accident: "I need a human", "quiero un agente".
_STRICT_PERSON = (
    r"(?:humano|humana|ser\s+humano|agente|operador|operadora|supervisor|supervisora|representante|persona\s+real|"
    r"human|human\s+being|agent|operator|representative|manager|real\s+person|live\s+person)\b"
)
_CONTACT = (
    r"(?:(?:h?ablar|h?ablo|h?able|h?abla|pasar|pasarme|pasame|pasadme|pasenme|pase|paseme|pasas|pasais|pasan|"
    r"ponme|ponedme|poner|ponerme|pongan|pongais|poneme|comunicar|comunicarme|comuniquen|comunicarnos|comunicas|"
    r"comunicais|contactar|contacto|chatear)\s+con"
    r"|(?:derivar|derivarme|derivadme|derivame|transferir|transferirme|transfiereme)\s+a"
    r"|(?:que|q)\s+me\s+(?:llame|llamen|atienda|atiendan)"
    r"|(?:speak|talk|chat)\s+(?:to|with)|(?:transfer|connect|put)\s+me\s+(?:to|with|through)|get\s+me"
    r"|escalate\s+(?:this|to|me))"
)
_WANT = r"(?:quiero|kiero|necesito|queremos|want|need|like|prefer)"
_REQUEST = re.compile(
    rf"\b{_CONTACT}\b(?:\W+(?!mi\b|mis\b|my\b|our\b|nuestro\b|nuestra\b)\w+){{0,3}}?\W+{_PERSON}|\b{_CONTACT}\s+(?:alguien|someone|somebody)\b"
    rf"|\b{_WANT}\b(?:\W+\w+){{0,2}}?\W+{_STRICT_PERSON}"
)
_BARE = re.compile(
    rf"^\W*(?:(?:please|por\s+favor|porfa|quiero|i\s+want|un|una|an?|the)\s+)?(?:customer\s+service\s+)?{_PERSON}"
    r"(?:\s+(?:humano|humana|real|de\s+verdad|please|pls|plz|por\s+favor|porfa|ya|now))*\W*$"
)
_FRUSTRATION = re.compile(
    r"(?:\b(?:segunda|tercera|cuarta|quinta)\s+vez\s+que\s+(?:os\s+|te\s+|les\s+)?(?:escribo|llamo|contacto|reclamo)\b|"
    r"\b(?:second|third|fourth|fifth)\s+time\s+(?:i\W?m|i\s+am|i\W?ve|i\s+have)\s+(?:contact|writ|call|been)|"
    r"\bhasta\s+las\s+narices\b|\bme\s+teneis\s+(?:harto|harta|hartos|hartas)\b|\bincompetentes?\b|"
    r"\b(?:bot|chat|chatbot|robot)\s+(?:is|es)\s+(?:useless|inutil)\b|\buseless\b|\binutil\b|"
    r"\bgoing\s+(?:round|around)\s+in\s+circles\b|\bdando\s+vueltas\b|\bescalate\s+this\b|"
    r"\bno\s+me\s+estas?\s+entendiendo\b|\bbasta\s+de\s+respuestas\s+automaticas\b|"
    r"\bno\s+quiero\s+(?:hablar\s+con\s+)?una\s+maquina\b|\bstop\s+sending\s+me\b)"
)


def fold(text: str) -> str:
    """Lower case without accents, so "pásame" and "pasame" read the same."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def wants_a_person(text: str) -> bool:
    folded = fold(text)
    return bool(_BARE.match(folded) or _REQUEST.search(folded) or _FRUSTRATION.search(folded))
