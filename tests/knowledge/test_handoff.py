"""A request for a person is recognised however it is written; talk about other people is not such a request."""

from __future__ import annotations

import pytest

from knowledge.handoff import fold, reason_by_rule, risk_by_rule, wants_a_person
from knowledge.vocabulary import HandoverReason as R


@pytest.mark.parametrize(
    "sentence",
    [
        # Spanish, formal (usted) and polite
        "Buenas tardes, quisiera hablar con un agente, por favor.",
        "¿Me podría comunicar con un asesor del servicio técnico?",
        "Deseo hablar con un responsable de la empresa.",
        "Me gustaría hablar con alguien del equipo de Rodamar.",
        "¿Podrían derivarme a un operador?",
        "Necesito que me llame alguien, gracias.",
        # Spanish, informal (tú, vosotros)
        "pásame con alguien de verdad",
        "oye, ponme con una persona",
        "prefiero hablar con una persona, no con un bot",
        "necesito un humano",
        "una persona por favor",
        "operador",
        # voseo (Río de la Plata)
        "che, pasame con una persona",
        "¿Podés comunicarme con un asesor?",
        "Quiero hablar con alguien de ustedes, dale",
        # no accents, abbreviations, typos
        "quiero hablar con una persona q no sea un bot",
        "pasame con un agente porfa",
        "hablar con una persona plis",
        "qiero hablar con una persona",
        "kiero hablar con un agente",
        "necesito hablar con un asesor!!",
        # all caps
        "QUIERO HABLAR CON UNA PERSONA YA",
        "HABLAR CON UN HUMANO",
        "AGENTE",
        # English
        "Can I speak to a human?",
        "I want to talk to a real person.",
        "Please connect me with an agent.",
        "Could I please speak with somebody?",
        "get me a manager",
        "Can you put me through to a representative?",
        "i wanna talk to a person",
        "can u connect me to an agent",
        "agent!",
        "representative please",
        "TALK TO A HUMAN NOW",
        # frustration and repeated contact
        "Es la tercera vez que os escribo por lo mismo.",
        "This is the third time I'm contacting you about this.",
        "no quiero hablar con una máquina",
        "your bot is useless",
        # request forms the rules miss
        "¿Puedes pasarme con una persona?",
        "Por favor, páseme con un agente.",
        "¿Me pasás con un operador?",
        "¿me pasáis con un humano?",
        "¿Me comunicás con un agente?",
        "human pls",
        "kiero ablar con una persona",
        # call-back requests, a real person in any words, and a list of requests the older rules missed
        "¿Me podría llamar alguien esta tarde?",
        "Call me back please",
        "Could somebody from your team ring me?",
        "¿Hay alguien de carne y hueso?",
        "Is there a way to chat with an actual employee?",
        "¿Me atiende una persona, por favor?",
        "¿Una persona, por favor?",
        "connect me w/ an agent",
        "¿Me deriváis con un supervisor?",
    ],
)
def test_request_for_a_person_is_recognised(sentence):
    assert wants_a_person(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        # money or things going to another person
        "¿Cómo transfiero dinero a otra persona?",
        "Quiero transferir el pago de la cuota a otra persona.",
        "How do I transfer money to another person?",
        "How do I send money to someone?",
        "Transfer my subscription to another person, is that possible?",
        "Can I transfer the subscription to my brother?",
        "¿Puedo pasar la suscripción a mi hermano?",
        "I want to pay for someone else's subscription.",
        # an order or a bike for someone else
        "Can I send my order to someone else?",
        "¿Puedo enviar el pedido a otra persona?",
        "I want to send the bike to another person as a gift.",
        "Quiero regalar la suscripción a otra persona.",
        "Can someone else pick up the bike for me?",
        "¿Puede recoger la bici otra persona?",
        "¿Puedo compartir la bici con otra persona?",
        "Send the invoice to my manager.",
        # customer service as a topic, not a request
        "¿Cuál es el horario de atención al cliente?",
        "What are your customer service hours?",
        "Customer service hours?",
        "¿A qué hora abre el servicio de atención al cliente?",
        "Is customer service open on Saturday?",
        # "second time", but it worked
        "La segunda vez funcionó.",
        "The second time it worked.",
        "It worked the second time I tried.",
        "la segunda vez que la cargué funcionó bien",
        # people and agents mentioned in passing
        "¿Cuántas personas pueden usar la bici?",
        "Is the Cargo big enough for two people?",
        "The delivery person was very kind.",
        "My agent number is 1234.",
        "Get me the price list.",
        # talking to someone of one's own, not to the company
        "I need to talk to my manager before I sign up.",
        "Tengo que hablar con mi encargado antes de contratar.",
    ],
)
def test_talk_about_other_people_is_not_a_request_for_a_person(sentence):
    assert not wants_a_person(sentence)


def test_folding_drops_case_and_accents_only():
    assert fold("PÁSAME Con Él, ¿SÍ?") == "pasame con el, ¿si?"


@pytest.mark.parametrize(
    ("sentence", "reason"),
    [
        ("Sale humo del cargador", R.SAFETY),
        ("No quiero seguir viviendo", R.SAFETY),
        ("The power bank caught fire", R.SAFETY),
        ("Alguien ha entrado en mi cuenta y ha cambiado mi correo", R.FRAUD),
        ("There are charges on my card I didn't make", R.FRAUD),
        ("Solicito la supresión de todos mis datos, en virtud del RGPD", R.DATA_PROTECTION),
        ("This is a subject access request", R.DATA_PROTECTION),
        ("Os voy a denunciar a la OCU", R.LEGAL),
        ("Dadme la hoja de reclamaciones", R.LEGAL),
        ("My solicitor will write to you", R.LEGAL),
        ("Voy a contratar un abogado", R.LEGAL),
        ("I'm going to get a lawyer involved", R.LEGAL),
        # no point or meaning left in one's own life is a crisis, however it is put
        ("No le veo sentido a la vida", R.SAFETY),
        ("Mi vida ya no tiene sentido", R.SAFETY),
        ("What's the point of living anymore", R.SAFETY),
        ("I don't see any meaning in my life anymore", R.SAFETY),
        ("No hay ninguna razón para seguir viviendo", R.SAFETY),
        ("I see no reason to keep living", R.SAFETY),
        ("Exijo una compensación por el retraso", R.COMPENSATION),
        ("I'm filing a chargeback with my bank", R.COMPENSATION),
        # a risk beats a plain request for a person
        ("Quiero hablar con una persona, me han hackeado la cuenta", R.FRAUD),
    ],
)
def test_risk_rules_name_their_class(sentence, reason):
    assert reason_by_rule(sentence) == reason


@pytest.mark.parametrize(
    "sentence",
    [
        # questions about the topic are FAQ questions
        "¿Tengo derecho a una indemnización si se cancela el vuelo?",
        "Am I entitled to compensation if my flight is delayed?",
        "How do I claim compensation for a delay?",
        "¿Cómo denuncio un correo de phishing que usa vuestro nombre?",
        "¿Tenéis hoja de reclamaciones en las tiendas?",
        "¿Cómo puedo pedir una copia de mis datos personales?",
        "What is your privacy policy?",
        "Me habéis cobrado dos veces el pedido",
        "I was charged twice for my order",
        "Me han robado el móvil, ¿cómo bloqueo la SIM?",
        "How do I protect my account from being stolen?",
        "¿Puedo llevar una batería externa en cabina?",
        "Can I smoke on the plane?",
        "La batería me dura muy poco",
        "¿Cuál es el consumo de datos de mi tarifa?",
        "A mi juicio, la tarifa es cara",
        "¿Cómo anulo un pedido?",
        "¿Hay mucha demanda de este móvil?",
        # a lawyer merely mentioned is not a legal threat
        "Can you tell me a joke about a lawyer?",
        "Cuéntame un chiste de abogados",
        "Do I need a lawyer to claim a refund?",
        # life in general is not one's own life
        "What is the meaning of life?",
        "¿Cuál es el sentido de la vida?",
        "There's no point in going on hold again",
        "Is there no reason to live in the city centre now that fibre reaches the suburbs?",
        "No hay razón para vivir en el centro si la fibra llega igual",
        "No tiene sentido pagar dos veces",
    ],
)
def test_questions_about_a_risky_topic_are_not_risks(sentence):
    assert risk_by_rule(sentence) is None
