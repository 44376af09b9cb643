"""The explainable rules of the risk-and-intent stage: a request for a person, and the risk classes.

Rules come first because a request for a human, or a risky message, must never depend on retrieval
confidence, must be instant, and its mistakes must be explainable (a regular expression names the
words that fired). ``knowledge.intents`` adds a learned detector behind them for wordings the rules
miss; ``detect()`` there is the entry point. The rules work on folded text (lower case, no accents).

A request for a person is:
- a contact verb ("hablar con", "pásame con", "transfer me to", "get me", "atender") near a person
  ("una persona", "un agente", "a human", "a manager"), or a bare person noun as the whole message
  ("operador", "agent please");
- a call-back request ("call me back", "¿me puede llamar alguien?"), or "a real person" in any form;
- strong frustration or repeated contact ("es la tercera vez que escribo", "your bot is useless").

Risk rules catch the unambiguous wordings of each class; each pattern says what crosses the line from an
FAQ question to a case for a person:
- safety: self-harm or suicide, no point or meaning left in one's own life; a device that smokes, burns,
  sparks, explodes, swells or shocks;
- fraud: account taken over, charges or orders the customer did not make, identity theft, SIM swap;
- data protection: a named GDPR right, the regulator, a breach, erasure of *all* data;
- legal: the customer's lawyer or one being brought in (not a lawyer merely mentioned), a court, a lawsuit,
  a report to the police or a consumer authority, the official complaints form demanded;
- compensation: a demand for compensation or damages, a chargeback or a bank reversal.
Questions *about* these topics ("am I entitled to compensation?", "how do I report a phishing e-mail?",
"¿tenéis hoja de reclamaciones?") are FAQ questions and must not match.
"""

from __future__ import annotations

import re
import unicodedata

from knowledge.vocabulary import HandoverReason

_PERSON = (
    r"(?:persona|personas|humano|humana|ser\s+humano|agente|agentes|operador|operadora|asesor|asesora|"
    r"ejecutivo|ejecutiva|supervisor|supervisora|responsable|encargado|encargada|companero|companera|"
    r"representante|alguien|empleado|empleada|tecnico|especialista|human|humans|human\s+being|person|people|"
    r"agent|operator|representative|manager|supervisor|someone|somebody|staff|member\s+of\s+staff|advisor|"
    r"adviser|employee|colleague|specialist|jefe|jefa|boss)\b"
)
# People no one asks for by accident: "I need a human", "quiero un agente".
_STRICT_PERSON = (
    r"(?:humano|humana|ser\s+humano|agente|operador|operadora|supervisor|supervisora|representante|persona\s+real|"
    r"human|human\s+being|agent|operator|representative|manager|real\s+person|live\s+person)\b"
)
_CONTACT = (
    r"(?:(?:h?ablar|h?ablo|h?able|h?abla|pasar|pasarme|pasame|pasadme|pasenme|pase|paseme|pasas|pasais|pasan|"
    r"ponme|ponedme|poner|ponerme|pongan|pongais|poneme|comunicar|comunicarme|comuniquen|comunicarnos|comunicas|"
    r"comunicais|comunica|comunican|contactar|contacto|chatear)\s+con"
    r"|(?:derivar|derivarme|derivadme|derivame|deriven|derivan|derivas|derivais|transferir|transferirme|transfiereme)"
    r"\s+(?:a|con)"
    r"|(?:que|q)\s+me\s+(?:llame|llamen|atienda|atiendan)"
    r"|(?:me\s+)?(?:puede|pueden|podria|podrian|podeis|puedes|podes)\s+atender(?:me)?|atenderme|me\s+atienden?"
    r"|(?:speak|talk|chat)\s+(?:to|with|w/)|(?:transfer|connect|put)\s+me\s+(?:to|with|w/|through)|get\s+me"
    r"|escalate\s+(?:this|to|me))"
)
_WANT = r"(?:quiero|kiero|necesito|queremos|want|need|like|prefer)"
_REQUEST = re.compile(
    rf"\b{_CONTACT}(?:\W+(?!mi\b|mis\b|my\b|our\b|nuestro\b|nuestra\b)\w+){{0,3}}?\W+{_PERSON}"
    rf"|\b{_CONTACT}\s+(?:alguien|someone|somebody)\b"
    rf"|\b{_WANT}\b(?:\W+\w+){{0,2}}?\W+{_STRICT_PERSON}"
)
_BARE = re.compile(
    rf"^\W*(?:(?:please|por\s+favor|porfa|quiero|i\s+want|un|una|an?|the)\s+)?(?:customer\s+service\s+)?{_PERSON}"
    r"(?:[\s,]+(?:humano|humana|real|de\s+verdad|please|pls|plz|por\s+favor|porfa|ya|now))*\W*$"
)
# Asking to be called, or for a real person in any words: nobody says these about an FAQ topic.
_CALL_OR_REAL = re.compile(
    r"\b(?:call|ring|phone)\s+me\s+(?:back|later|today|tomorrow|please|asap|now)\b|\bcall\s?back\b"
    r"|\bgive\s+me\s+a\s+(?:call|ring|bell)\b|\b(?:someone|somebody|anyone)\s+(?:\w+\s+){0,4}(?:call|ring|phone)\s+me\b"
    r"|\bllam(?:arme|adme|enme|eme)\b|\bme\s+(?:puede|pueden|podeis|podria|podrian|podes)\s+llamar\b"
    r"|\bdevolver(?:me)?\s+la\s+llamada\b"
    r"|\b(?:actual|real|live)\s+(?:human|person|people|agent|employee|staff)"
    r"|\b(?:persona|humano|agente)\s+(?:real|de\s+verdad)\b|\balguien\s+(?:real|de\s+verdad)\b|\bde\s+carne\s+y\s+hueso\b"
    r"|\bque\s+no\s+(?:sea|seas|sean)\s+(?:una\s+maquina|un\s+(?:ro)?bot)\b|\binstead\s+of\s+(?:you|a\s+bot|the\s+bot)\b"
    r"|\b(?:necesito|quiero)\s+a\s+alguien\b|\balguien\s+de(?:l)?\s+(?:vuestro|su|tu)\s+(?:equipo|empresa)\b"
    r"|\bsomeone\s+from\s+your\s+(?:team|support|staff)\b"
)
_FRUSTRATION = re.compile(
    r"(?:\b(?:segunda|tercera|cuarta|quinta)\s+vez\s+que\s+(?:os\s+|te\s+|les\s+)?(?:escribo|llamo|contacto|reclamo)\b|"
    r"\b(?:second|third|fourth|fifth)\s+time\s+(?:i\W?m|i\s+am|i\W?ve|i\s+have)\s+(?:contact|writ|call|been)|"
    r"\bhasta\s+las\s+narices\b|\bhasta\s+el\s+(?:mono|gorro)\b|\bme\s+(?:estais|estan)\s+tomando\s+el\s+pelo\b|"
    r"\bme\s+teneis\s+(?:harto|harta|hartos|hartas)\b|\bincompetentes?\b|\bi\W?m\s+fed\s+up\b|\bfed\s+up\s+with\b|"
    r"\b(?:bot|chat|chatbot|robot)\s+(?:is|es)\s+(?:useless|inutil)\b|\buseless\b|\binutil\b|"
    r"\bgoing\s+(?:round|around)\s+in\s+circles\b|\bdando\s+vueltas\b|\bescalate\s+this\b|"
    r"\bno\s+me\s+estas?\s+entendiendo\b|\bbasta\s+de\s+respuestas\s+automaticas\b|"
    r"\bno\s+quiero\s+(?:hablar\s+con\s+)?una\s+maquina\b|\bstop\s+sending\s+me\b)"
)

_SAFETY = re.compile(
    # self-harm and suicide
    r"\bsuicid|\bquitarme\s+la\s+vida\b|\bacabar\s+con\s+(?:todo|mi\s+vida)\b|\bme\s+quiero\s+morir\b|\bquiero\s+morirme\b"
    r"|\bhacerme\s+dano\b|\bautolesion|\bno\s+quiero\s+(?:seguir\s+)?(?:vivir|viviendo)\b|\bkill\s+myself\b|\bend(?:ing)?\s+my\s+life\b"
    r"|\bend\s+it\s+all\b|\bself[\s-]?harm|\bhurt(?:ing)?\s+myself\b|\bcutting\s+myself\b"
    r"|\b(?:don\W?t|do\s+not)\s+want\s+to\s+(?:live|be\s+alive)\b"
    # no point or meaning in living: despair said of one's own life, not a question about life in general
    r"|\b(?:no|what\W?s\s+the|whats\s+the)\s+(?:point|reason|meaning)\s+(?:in\s+|of\s+|to\s+)?(?:keep\s+)?"
    r"(?:living|live|being\s+alive|going\s+on|carrying\s+on)\b(?!\s+(?:in|near|at|with|on|there|here|hold|a|an|the|to)\b)"
    r"|\b(?:point|meaning|reason)\s+in\s+my\s+life\s+any\s?more\b"
    r"|\bmy\s+life\s+(?:has\s+no|is\s+without|doesn\W?t\s+have\s+any)\s+(?:meaning|point)\b"
    r"|\bno\s+(?:le\s+)?(?:veo|encuentro|tiene)\s+(?:ningun\s+)?sentido\s+(?:a\s+|en\s+)?(?:la\s+vida|vivir|seguir\s+viviendo|mi\s+vida)\b"
    r"|\bmi\s+vida\s+(?:ya\s+)?no\s+tiene\s+(?:ningun\s+)?sentido\b"
    r"|\bno\s+(?:hay|tengo|encuentro|veo)\s+(?:ninguna\s+|ningun\s+)?(?:razon|razones|motivo|motivos)\s+para\s+"
    r"(?:vivir|seguir(?:\s+viviendo)?)\b(?!\s+(?:en|cerca|con|aqui|alli|ahi|asi)\b)"
    r"|\bno\s+tiene\s+(?:ningun\s+)?sentido\s+(?:seguir\s+)?vivir\b(?!\s+(?:en|cerca|con|aqui|alli|ahi)\b)"
    # a dangerous device
    r"|\b(?:echa|echando|sale|salen|saliendo|suelta|soltando|da|dando)\s+(?:mucho\s+|un\s+poco\s+de\s+)?(?:humo|chispas)\b"
    r"|\b(?:ardiendo|en\s+llamas|incendiad[oa]|incendiado|incendio|prendido\s+fuego|prendio\s+fuego)\b"
    r"|\bexplot(?:o|ado|ada|ando)\b|\bdescarga\s+electrica\b|\bcalambre|\belectrocut|\belectrocucion\b"
    r"|\b(?:huele|olor|oliendo|olia)\s+a\s+(?:quemado|gas)\b|\bbateria\s+(?:\w+\s+){0,3}hinchad"
    r"|\bsmoke\s+(?:is\s+)?coming\b|\b(?:is|started|keeps|was|it\W?s)\s+smoking\b|\bgiving\s+off\s+(?:\w+\s+)?smoke\b"
    r"|\bsmoke\s+(?:from|out\s+of)\s+(?:my|the)\b|\bspark(?:ing|ed)\b|\b(?:it|that|which|and|of|off|throws?|giving|gives|charger|cable|plug|socket|outlet|phone|battery|device|laptop|adapter|wire|screen)\s+sparks\b|\bsparks\s+(?:came|come|coming|fly|flew|flying|from|out)\b|\b(?:caught|catch|on|set)\s+fire\b|\bin\s+flames\b"
    r"|\bexplod(?:ed|ing|es)\b|\belectric(?:al)?\s+shock\b|\b(?:got|gave\s+me|giving\s+me)\s+(?:an?\s+)?shock\b"
    r"|\bburning\s+smell\b|\bsmells?\s+(?:of\s+|like\s+)?burn|\bsmell\s+(?:of\s+)?gas\b|\bbattery\s+(?:\w+\s+){0,2}(?:swollen|bulging)\b"
    r"|\bmedical\s+emergency\b|\bemergencia\s+medica\b|\b(?:can\W?t|cannot)\s+breathe\b|\bno\s+puedo\s+respirar\b"
)
_FRAUD = re.compile(
    r"\bme\s+han\s+(?:hackeado|jaqueado|pirateado|suplantado|clonado|robado\s+(?:la\s+cuenta|la\s+identidad|el\s+perfil))"
    r"|\bsuplant\w*\s+(?:de\s+)?(?:la\s+|mi\s+)?identidad\b|\b(?:cuenta|perfil|correo)\s+(?:\w+\s+)?(?:hackead|pirate)"
    r"|\b(?:cargos?|compras?|cobros?|pedidos?|movimientos?)\s+(?:\w+\s+){0,4}?(?:que\s+)?(?:yo\s+)?(?:no\s+(?:he\s+hecho|hice|"
    r"reconozco|son\s+mios|es\s+mio|he\s+autorizado|autorice)|desconocid|fraudulent|sin\s+(?:mi\s+)?(?:permiso|consentimiento|"
    r"autorizacion))"
    r"|\balguien\s+(?:esta\s+usando|usa|ha\s+usado|ha\s+entrado\s+en|ha\s+accedido\s+a|se\s+ha\s+metido\s+en|ha\s+cambiado|"
    r"ha\s+contratado|ha\s+pedido|ha\s+hecho)\s+(?:\w+\s+){0,3}?(?:mi|mis|a\s+mi\s+nombre)\b"
    r"|\b(?:he|hemos)\s+caido\s+en\s+(?:una|un)\s+(?:estafa|timo|phishing)\b"
    r"|\b(?:hacked|compromised)\b|\bidentity\s+(?:theft|stolen|fraud)\b|\bstole\w*\s+my\s+identity\b|\bsim\s+swap"
    r"|\bcard\s+(?:was\s+|has\s+been\s+|got\s+)?(?:cloned|skimmed)\b|\bunauthori[sz]ed\s+(?:charge|transaction|payment|purchase|order|access)"
    r"|\bfraudulent\s+(?:charge|transaction|payment|purchase|order)|\bcard\s+fraud\b"
    r"|\b(?:charges?|transactions?|orders?|purchases?|payments?)\s+(?:\w+\s+){0,4}?i\s+(?:didn\W?t|did\s+not|never)\s+"
    r"(?:make|made|place|placed|authori[sz]e|order|buy|recogni[sz]e)\b"
    r"|\bsomeone\s+(?:is\s+|has\s+been\s+|has\s+|was\s+|keeps\s+)?(?:using|used|logged\s+into|accessed|got\s+into|broke\s+into|"
    r"changed|opened|ordered|stealing|redeeming)\s+(?:\w+\s+){0,3}?(?:my|in\s+my\s+name)\b"
    r"|\b(?:fell|fallen)\s+for\s+(?:a|the)\s+(?:scam|phishing)\b|\bi\W?ve\s+been\s+scammed\b|\bgot\s+scammed\b"
)
_DATA_PROTECTION = re.compile(
    r"\bderechos?\s+(?:de|al|a\s+la)\s+(?:acceso|supresion|olvido|rectificacion|oposicion|portabilidad|limitacion)\b"
    r"|\bderechos\s+arco\b|\baepd\b|\bagencia\s+(?:espanola\s+)?de\s+proteccion\s+de\s+datos\b"
    r"|\bdelegado\s+de\s+proteccion\s+de\s+datos\b|\bbrecha\s+de\s+(?:seguridad|datos)\b|\bfiltra\w*\s+(?:\w+\s+){0,2}datos\b"
    r"|\bretiro\s+(?:mi|el)\s+consentimiento\b|\bme\s+opongo\s+al\s+tratamiento\b"
    r"|\b(?:borr|elimin|suprim|destru)\w*\s+(?:\w+\s+){0,3}?(?:todos\s+mis\s+datos|toda\s+mi\s+informacion)"
    r"|\b(?:borrad|eliminad|suprimid|destruid)\s+(?:\w+\s+){0,2}?(?:mis\s+datos|mi\s+informacion)"
    r"|\b(?:rgpd|gdpr|lopd|lopdgdd|ccpa)\b.*\b(?:solicit|exij|ejerz|ejerc|envi|mand|borr|elimin|supres|acceso|copia|"
    r"request|demand|invok|exercis|send|delet|eras|access|copy)"
    r"|\b(?:solicit|exij|ejerz|ejerc|envi|mand|borr|elimin|supres|acceso|copia|request|demand|invok|exercis|send|delet|"
    r"eras|access|copy)\w*\b.*\b(?:rgpd|gdpr|lopd|lopdgdd|ccpa)\b"
    r"|\bright\s+(?:to|of)\s+(?:erasure|be\s+forgotten|access|rectification|object|data\s+portability|restrict)"
    r"|\bsubject\s+access\s+request\b|\bdsar\b|\bdata\s+subject\s+request\b|\bdata\s+protection\s+(?:officer|authority)\b"
    r"|\bdpo\b|\bico\b|\bdata\s+(?:breach|leak)\b|\bleaked\s+my\b|\bwithdraw\s+my\s+consent\b"
    r"|\b(?:delete|erase|wipe|remove|destroy)\s+all\s+(?:of\s+)?(?:my|the)\s+(?:personal\s+)?(?:data|information|details)"
    r"|\b(?:erase|wipe|destroy)\s+my\s+(?:personal\s+)?(?:data|information)\b"
)
_LEGAL = re.compile(
    # a lawyer of the customer's, or one being brought in: not a lawyer merely mentioned ("un chiste de abogados")
    r"\b(?:mi|mis|nuestro|nuestra|nuestros|nuestras)\s+abogad"
    r"|\b(?:contrat\w*|llam\w*|consult\w*|hablar\w*\s+con|acudir\w*\s+a|ir\s+a|poner\w*\s+en\s+manos\s+de)\s+(?:un|una|mi|nuestro)\s+abogad"
    r"|\b(?:os|les|te)\s+(?:voy\s+a\s+|vamos\s+a\s+|pienso\s+)?denunci"
    r"|\b(?:voy\s+a|vamos\s+a|pienso|pensamos|he|hemos)\s+(?:poner|presentar|interponer|puesto|presentado)\s+(?:una\s+)?denuncia"
    r"|\b(?:voy\s+a|vamos\s+a|pienso|pensamos|lo\s+voy\s+a)\s+denunciar|\bdenunciar(?:os|les|te|lo)\b"
    r"|\b(?:os|les|te)\s+(?:voy\s+a\s+|vamos\s+a\s+)?demand|\b(?:poner|presentar|interponer)\s+una\s+demanda\b|\bdemandar(?:os|les)\b"
    r"|\bllevar\w*\s+a\s+juicio\b|\bir\s+a\s+juicio\b|\btribunales\b|\bjuzgado\b|\bvia\s+judicial\b|\bacciones?\s+legal"
    r"|\bprocedimiento\s+judicial\b|\bpleito\b|\bburofax\b|\bocu\b|\bfacua\b|\bomic\b|\bcnmc\b"
    r"|\b(?:oficina|agencia|direccion\s+general|junta\s+arbitral|arbitraje)\s+(?:\w+\s+)?(?:de(?:l)?\s+)?consum"
    r"|\b(?:ante|a|en)\s+consumo\b|\breclama\w*\s+ante\s+(?:aesa|consumo|la\s+administracion)"
    r"|\b(?:quiero|dame|deme|dadme|denme|exijo|pido|pedir|poner|rellenar)\s+(?:\w+\s+){0,2}hoja\s+de\s+reclamaciones\b"
    r"|\b(?:i\W?ll|i\s+will|going\s+to|gonna|we\W?ll|we\s+will)\s+sue\b|\bsuing\b|\blawsuit\b"
    r"|\b(?:my|our)\s+(?:lawyer|attorney|solicitor)|\b(?:lawyers?|attorneys?|solicitors?)\s+(?:will|would|is|are|has|have)\b"
    r"|\b(?:instruct\w*|hir\w*|get|getting|call\w*|contact\w*|consult\w*|involv\w*|speak\w*\s+(?:to|with)|talk\w*\s+(?:to|with)"
    r"|see|seeing|go\s+to|going\s+to)\s+(?:a|an|my|our)\s+(?:lawyer|attorney|solicitor)"
    r"|\blegal\s+(?:action|proceedings|team|notice)\b|\bin\s+court\b|\bto\s+court\b|\bsmall\s+claims\b|\btrading\s+standards\b"
    r"|\bombudsman\b|\bbetter\s+business\s+bureau\b|\bftc\b|\bcfpb\b|\bofcom\b|\bpress\s+charges\b|\bletter\s+before\s+action\b"
    r"|\breport(?:ing)?\s+(?:you|this|it)\s+to\s+(?:the\s+)?(?:police|authorities|regulator|consumer|aviation)"
    r"|\b(?:taking|take)\s+(?:this|it|you)\s+to\s+(?:the\s+)?(?:regulator|arbitration)\b|\bconsumer\s+protection\s+(?:agency|authority)\b"
)
_COMPENSATION = re.compile(
    r"\b(?:quiero|exijo|reclamo|pido|solicito|exigimos|queremos|reclamamos|merezco)\s+(?:\w+\s+){0,3}?"
    r"(?:indemnizacion|compensacion)"
    r"|\b(?:exijo|quiero)\s+que\s+me\s+(?:indemnic|compens)|\bindemnizadme\b|\bcompensadme\b|\bme\s+deb\w+\s+una\s+compensacion\b"
    r"|\bdanos\s+y\s+perjuicios\b|\bcontracargo|\bretrocargo|\bchargeback|\bcharge\s+(?:it\s+)?back\b"
    r"|\b(?:devolucion|retrocesion|anular|anulacion|anule|anulen|devuelva|devuelvan)\s+(?:\w+\s+){0,3}?(?:del?\s+)?"
    r"(?:el\s+)?(?:cargo|pago|recibo)\b(?:\s+\w+){0,4}\s+(?:banco|tarjeta)"
    r"|\b(?:banco|tarjeta)\b(?:\s+\w+){0,4}\s+(?:anul\w+|devolver|devuelva|retroced\w+)\s+(?:el|los|la)\s+(?:cargo|pago|recibo)"
    r"|\bdevolver\w*\s+el\s+recibo\b|\bdevolvere\s+el\s+recibo\b"
    r"|\bdisput\w*\s+(?:the|a|this|that)\s+(?:charge|payment|transaction)|\bdispute\s+with\s+my\s+(?:bank|card)"
    r"|\breverse\s+the\s+(?:charge|payment)|\bclaw\s+back\b"
    r"|\b(?:i|we)\s+(?:demand|want|expect|deserve|formally\s+request)\s+(?:\w+\s+){0,3}?(?:compensation|damages)\b"
    r"|\b(?:i\W?m|i\s+am|we\W?re|we\s+are)\s+claiming\s+(?:\w+\s+){0,2}?(?:compensation|damages)\b"
    r"|\bcompensate\s+me\b|\bpay\s+me\s+what\b|\bpay\s+up\b|\bgoodwill\s+(?:payment|gesture)\b|\bowe\s+me\s+(?:\w+\s+)?compensation\b"
)

# Order matters: the most urgent class wins when one message matches several ("I want a person, my card was
# cloned" is fraud), and any risk beats a plain request for a person.
_RISK_RULES: tuple[tuple[HandoverReason, re.Pattern[str]], ...] = (
    (HandoverReason.SAFETY, _SAFETY),
    (HandoverReason.FRAUD, _FRAUD),
    (HandoverReason.DATA_PROTECTION, _DATA_PROTECTION),
    (HandoverReason.LEGAL, _LEGAL),
    (HandoverReason.COMPENSATION, _COMPENSATION),
)


def fold(text: str) -> str:
    """Lower case without accents, so "pásame" and "pasame" read the same."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _asks_for_a_person(folded: str) -> bool:
    return bool(
        _BARE.match(folded) or _REQUEST.search(folded) or _CALL_OR_REAL.search(folded) or _FRUSTRATION.search(folded)
    )


def risk_by_rule(text: str) -> HandoverReason | None:
    """The risk class whose rule this message matches, most urgent first; None when no risk rule fires."""
    folded = fold(text)
    for reason, pattern in _RISK_RULES:
        if pattern.search(folded):
            return reason
    return None


def reason_by_rule(text: str) -> HandoverReason | None:
    """A risk class, else HUMAN_REQUEST for a request for a person (or strong frustration), else None."""
    risk = risk_by_rule(text)
    if risk is not None:
        return risk
    return HandoverReason.HUMAN_REQUEST if _asks_for_a_person(fold(text)) else None


def wants_a_person(text: str) -> bool:
    """Does this message ask for a person (or show the frustration that calls for one)? Risks aside."""
    return _asks_for_a_person(fold(text))
