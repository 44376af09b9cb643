"""Unit tests of the routing decision on small synthetic vectors (no embedding model, no vector store)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from knowledge.routing_model import FEATURES, OOS_CLASS, Hit, RoutingModel, choose_threshold, out_of_fold_confidence

DIM = 16
ENTRIES = ["a", "b", "c", "d"]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def kb() -> dict:
    """Four well-separated entry centres, 20 noisy examples each, plus out-of-scope examples along other axes."""
    rng = np.random.default_rng(0)
    centres = _unit(np.eye(DIM, dtype=np.float32)[: len(ENTRIES)] + 0.05)
    vecs: list[np.ndarray] = []
    labels: list[str | None] = []
    for i, e in enumerate(ENTRIES):
        vecs.append(_unit(centres[i] + 0.25 * rng.standard_normal((20, DIM))))
        labels += [e] * 20
    oos = _unit(np.eye(DIM, dtype=np.float32)[8:12].repeat(5, axis=0) + 0.25 * rng.standard_normal((20, DIM)))
    vecs.append(oos)
    labels += [None] * 20
    x = np.vstack(vecs)
    # the vector store: FAQ questions + in-scope examples (out-of-scope examples are never indexed)
    index = np.vstack([centres, x[:80]])
    index_ids = ENTRIES + labels[:80]
    index_kinds = ["question"] * 4 + ["phrasing"] * 80
    return {"centres": centres, "x": x, "labels": labels, "index": index, "ids": index_ids, "kinds": index_kinds}


def _hits(kb: dict, q: np.ndarray, k: int = 20) -> list[Hit]:
    sims = kb["index"] @ q
    top = np.argsort(-sims)[:k]
    return [Hit(kb["ids"][j], float(sims[j]), kb["kinds"][j]) for j in top]


def _model(kb: dict) -> RoutingModel:
    return RoutingModel.train(
        ENTRIES,
        kb["x"],
        kb["labels"],
        question_vectors=dict(zip(ENTRIES, kb["centres"], strict=True)),
        kind_weights={"question": 1.0, "phrasing": 1.0},
    )


def test_query_near_examples_is_answered_with_that_entry(kb: dict) -> None:
    model = _model(kb)
    rng = np.random.default_rng(1)
    for i, e in enumerate(ENTRIES):
        q = _unit(kb["centres"][i] + 0.2 * rng.standard_normal(DIM))
        scored = model.score(q, _hits(kb, q))
        assert scored.entry_id == e
        assert scored.candidates[0][0] == e
        assert 0.0 <= scored.confidence <= 1.0


def test_head_has_out_of_scope_class_when_oos_examples_exist(kb: dict) -> None:
    model = _model(kb)
    assert model.head is not None
    assert model.head.classes[-1] == OOS_CLASS


def test_oos_looking_query_gets_low_confidence(kb: dict) -> None:
    model = _model(kb)
    rng = np.random.default_rng(2)
    in_q = _unit(kb["centres"][0] + 0.1 * rng.standard_normal(DIM))
    far_q = _unit(np.eye(DIM, dtype=np.float32)[14] + 0.1 * rng.standard_normal(DIM))
    near = model.score(in_q, _hits(kb, in_q))
    far = model.score(far_q, _hits(kb, far_q))
    assert far.confidence < near.confidence
    assert not model.decide(far) or far.entry_id is None


def test_without_head_ranks_by_similarity() -> None:
    centres = _unit(np.eye(DIM, dtype=np.float32)[:3] + 0.05)
    model = RoutingModel.train(["x", "y", "z"], kind_weights={"question": 1.0, "chunk": 1.0})
    assert model.head is None
    q = _unit(centres[1] + 0.05)
    hits = [Hit(e, float(c @ q), kind) for e, c in zip("xyz", centres, strict=True) for kind in ("question", "chunk")]
    scored = model.score(q, hits)
    assert scored.entry_id == "y"
    assert scored.features["head_logp"] == 0.0


def test_calibration_picks_threshold_meeting_target(kb: dict) -> None:
    model = _model(kb)
    rng = np.random.default_rng(3)
    queries: list[np.ndarray] = []
    labels: list[str | None] = []
    for i, e in enumerate(ENTRIES):
        for _ in range(30):
            queries.append(_unit(kb["centres"][i] + 0.6 * rng.standard_normal(DIM)))  # noisy: some get confused
            labels.append(e)
    for _ in range(40):
        queries.append(_unit(rng.standard_normal(DIM)))
        labels.append(None)
    scored = [model.score(q, _hits(kb, q)) for q in queries]
    model.calibrate(scored, labels, target_wrong_rate=0.05, z=0.0)
    rescored = [model.score(q, _hits(kb, q)) for q in queries]
    answered = [(s, lab) for s, lab in zip(rescored, labels, strict=True) if model.decide(s)]
    assert answered, "something should be answered"
    wrong = sum(s.entry_id != lab for s, lab in answered)
    assert wrong / len(answered) <= 0.05


def test_choose_threshold_is_lowest_meeting_target() -> None:
    conf = [0.9, 0.8, 0.7, 0.6, 0.5]
    correct = [True, True, True, False, False]
    oos = [False, False, False, True, True]
    assert choose_threshold(conf, correct, oos, target_wrong_rate=0.0, z=0.0) == 0.7
    assert choose_threshold(conf, correct, oos, target_wrong_rate=0.25, z=0.0) == 0.6
    assert choose_threshold(conf, correct, oos, target_wrong_rate=0.25, min_oos_recall=1.0, z=0.0) == 0.7
    # a conservative bound needs more evidence than the point estimate
    assert choose_threshold(conf, correct, oos, target_wrong_rate=0.25, z=1.0) >= 0.7


def test_round_trip_gives_same_scores(kb: dict) -> None:
    model = _model(kb)
    restored = RoutingModel.from_dict(json.loads(json.dumps(model.to_dict())))
    rng = np.random.default_rng(4)
    for _ in range(10):
        q = _unit(rng.standard_normal(DIM))
        a, b = model.score(q, _hits(kb, q)), restored.score(q, _hits(kb, q))
        assert a.entry_id == b.entry_id
        assert a.confidence == pytest.approx(b.confidence, abs=1e-9)
        assert a.features == pytest.approx(b.features)
    assert restored.threshold == model.threshold


def test_unknown_example_label_is_rejected() -> None:
    with pytest.raises(ValueError, match="not an entry"):
        RoutingModel.train(["a"], np.ones((1, DIM), dtype=np.float32), ["zzz"])


def test_artefact_from_before_new_features_still_loads(kb: dict) -> None:
    saved = _model(kb).to_dict()
    saved["calibrator_weights"] = saved["calibrator_weights"][:6]
    model = RoutingModel.from_dict(json.loads(json.dumps(saved)))
    assert len(model.calibrator_weights) == len(FEATURES)
    assert model.calibrator_weights[6:] == [0.0] * (len(FEATURES) - 6)


def test_threshold_is_chosen_on_held_out_confidences() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 2))
    ok = x[:, 0] + 0.5 * rng.standard_normal(200) > 0
    conf = out_of_fold_confidence(x, ok)
    assert conf.shape == (200,)
    assert conf[ok].mean() > conf[~ok].mean()


def test_entry_wrong_rate_learned_from_large_calibration_sets_only(kb: dict) -> None:
    """An entry that attracts uncovered questions gets a higher wrong log-odds; small sets learn none."""
    model = _model(kb)
    rng = np.random.default_rng(5)
    queries: list[np.ndarray] = []
    labels: list[str | None] = []
    for i, e in enumerate(ENTRIES):
        for _ in range(30):
            queries.append(_unit(kb["centres"][i] + 0.3 * rng.standard_normal(DIM)))
            labels.append(e)
    for _ in range(30):  # uncovered questions that look like entry "d"
        queries.append(_unit(kb["centres"][3] + 0.3 * rng.standard_normal(DIM)))
        labels.append(None)
    scored = [model.score(q, _hits(kb, q)) for q in queries]
    model.calibrate(scored, labels, target_wrong_rate=0.05, z=0.0)
    assert model.entry_wrong["d"] > model.entry_wrong["a"] + 1.0
    restored = RoutingModel.from_dict(json.loads(json.dumps(model.to_dict())))
    s = restored.score(queries[0], _hits(kb, queries[0]))
    assert s.entry_id is not None
    assert s.features["entry_wrong"] == pytest.approx(model.entry_wrong[s.entry_id])

    small = _model(kb)
    small.calibrate(scored[::10], labels[::10], target_wrong_rate=0.05, z=0.0)
    assert small.entry_wrong == {}
    assert small.score(queries[0], _hits(kb, queries[0])).features["entry_wrong"] == 0.0


def test_rescore_uses_the_current_calibrator(kb: dict) -> None:
    model = _model(kb)
    q = kb["centres"][0]
    s = model.score(q, _hits(kb, q))
    model.calibrator_bias -= 5.0
    assert model.rescore(s).confidence == pytest.approx(model.score(q, _hits(kb, q)).confidence)
    assert model.rescore(s).confidence < s.confidence


def test_entries_are_ranked_by_centred_similarity_and_described_by_plain_cosine() -> None:
    model = RoutingModel.train(["a", "b"], kind_weights={"question": 1.0})
    hits = [Hit("a", 0.93, "question", centred=0.20), Hit("b", 0.91, "question", centred=0.45)]
    scored = model.score(np.zeros(DIM, dtype=np.float32), hits)
    assert scored.entry_id == "b"
    assert scored.features["sim"] == pytest.approx(0.91)
    assert scored.features["sim_margin"] == pytest.approx(0.91 - 0.93)
    # without centred cosines (Chroma's approximate search) the plain cosine ranks
    plain = model.score(np.zeros(DIM, dtype=np.float32), [Hit("a", 0.93, "question"), Hit("b", 0.91, "question")])
    assert plain.entry_id == "a"


@pytest.mark.parametrize(
    ("text", "languages", "crossing"),
    [
        ("How much does shipping cost for my order?", {"es"}, 1.0),
        ("¿Cuánto cuesta el envío de mi pedido?", {"es"}, 0.0),
        ("How much does shipping cost for my order?", {"es", "en"}, 0.0),  # the entry has an English version
        ("How much does shipping cost for my order?", set(), 0.0),  # language of the entry unknown
        ("ok", {"es"}, 0.0),  # language of the message unknown
    ],
)
def test_cross_lingual_feature(text: str, languages: set[str], crossing: float) -> None:
    model = RoutingModel.train(["a", "b"], kind_weights={"question": 1.0})
    model.entry_languages = {"a": frozenset(languages)}
    hits = [Hit("a", 0.9, "question"), Hit("b", 0.8, "question")]
    feats = model.score(np.zeros(DIM, dtype=np.float32), hits, text).features
    assert feats["cross_lingual"] == crossing
    assert feats["cross_lingual_sim"] == pytest.approx(crossing * 0.9)


def test_a_head_needs_a_few_examples_per_entry(kb: dict) -> None:
    few = RoutingModel.train(ENTRIES, kb["x"][:5], kb["labels"][:5], kind_weights={"question": 1.0, "phrasing": 1.0})
    assert few.head is None
    assert few.ask_counts["a"] == 6  # the examples are still indexed as phrasings: question + 5
    assert _model(kb).head is not None


def test_leaving_a_vector_out_also_leaves_the_count() -> None:
    model = RoutingModel.train(["a", "b"], kind_weights={"question": 1.0, "phrasing": 1.0})
    model.ask_counts = {"a": 3, "b": 1}
    hidden = model.without_vectors([Hit("a", 1.0, "phrasing"), Hit("b", 1.0, "phrasing")])
    assert hidden.ask_counts == {"a": 2, "b": 1}  # an entry keeps at least its question
    assert model.ask_counts == {"a": 3, "b": 1}  # the model itself is untouched


def test_a_small_calibration_set_fits_the_compact_features_only(kb: dict) -> None:
    from knowledge.routing_model import COMPACT_BELOW, COMPACT_FEATURES

    model = _model(kb)
    rng = np.random.default_rng(5)
    queries = [_unit(kb["centres"][i % 4] + 0.45 * rng.standard_normal(DIM)) for i in range(COMPACT_BELOW - 10)]
    labels: list[str | None] = [ENTRIES[i % 4] for i in range(len(queries))]
    scored = [model.score(q, _hits(kb, q)) for q in queries]
    model.calibrate(scored, labels)
    used = {f for f, w in zip(FEATURES, model.calibrator_weights, strict=True) if w != 0.0}
    assert used
    assert used <= set(COMPACT_FEATURES)
