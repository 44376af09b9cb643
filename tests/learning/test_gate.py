"""The gate compares both versions question by question and refuses only what it is sure is worse."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib import admin
from django.core.management import call_command

from knowledge import routing
from learning import actions, gate
from learning.admin import RetrainingJobAdmin
from learning.models import RetrainingJob
from learning.replay import pick_half, replay


def figures(verdicts: str) -> dict:
    """The part of ``retraining.evaluate``'s figures the gate reads, for these per-question verdicts."""
    oos = [v for v in verdicts if v in "EA"]
    return {"n": len(verdicts), "verdicts": verdicts, "oos_recall": oos.count("E") / len(oos) if oos else None}


def test_the_exact_paired_test_on_the_questions_where_the_versions_differ():
    assert gate.worse_p(0, 0) == 1.0
    assert gate.worse_p(1, 0) == 0.5  # one wrong answer more is a coin flip, not evidence
    assert gate.worse_p(4, 0) == 0.0625
    assert gate.worse_p(5, 1) == pytest.approx(7 / 64)
    assert gate.worse_p(0, 3) == 1.0


def test_a_candidate_that_resolves_more_with_one_wrong_answer_more_on_a_small_holdout_is_promoted():
    live = "MMMMMMMMRRRRRREEEE"  # 18 held-out questions: 6 resolved, 4 uncovered kept from an answer
    candidate = "RRRRCCMWRRRRRREEEE"  # 6 more resolved (one by a choice), one wrong answer

    decision = gate.decide({"holdout": figures(live)}, {"holdout": figures(candidate)})

    assert decision.promote, decision.reasons
    assert decision.evidence == [
        "holdout: candidate resolves 6 more of 18 questions (12 vs 6, p=0.016); "
        "wrong answers 1 vs 0, not significant (p=0.5); out-of-scope questions kept from an answer 4/4"
    ]


def test_a_candidate_with_a_new_encoder_must_be_shown_better_not_just_no_worse():
    live = "MMMMMRRRRRRRRREEEEEE"  # 20 held-out questions
    small_gain = "RRRMMRRRRRRRRWEEEEEE"  # 2 more resolved (3 gained, 1 lost: p=0.31), 1 wrong answer more
    clear_gain = "RRRRRRRRRRRRRREEEEEE"  # 5 more resolved (p=0.031)
    before = {"holdout": figures(live)}

    assert gate.decide(before, {"holdout": figures(small_gain)}).promote  # the same candidate, same encoder
    refused = gate.decide(before, {"holdout": figures(small_gain)}, require_evidence=True)
    assert not refused.promote
    assert refused.reasons == [
        "holdout: a new encoder must be shown better, and is not: resolves 11 vs 9 of 20 questions (p=0.31), "
        "wrong answers 1 vs 0 (p=1)"
    ]
    assert gate.decide(before, {"holdout": figures(clear_gain)}, require_evidence=True).promote


def risk(caught: dict[str, int], flagged: int) -> dict:
    """``knowledge.intents.held_out_figures`` as a dict: 10 held-out phrases per class, 40 near misses."""
    return {"caught": caught, "positives": dict.fromkeys(caught, 10), "near_misses_flagged": flagged, "near_misses": 40}


def test_a_new_encoder_must_keep_the_risk_stage_on_the_intent_banks_held_out_split():
    live = "MMMMMRRRRRRRRREEEEEE"
    clear_gain = {"holdout": figures("RRRRRRRRRRRRRREEEEEE")}
    before = {"holdout": figures(live)}
    live_stage = risk({"human_request": 9, "safety": 8}, flagged=0)

    kept = gate.decide(before, clear_gain, True, (live_stage, risk({"human_request": 10, "safety": 8}, flagged=0)))
    assert kept.promote, kept.reasons
    assert kept.evidence[0] == (
        "risk stage (intent bank, held out): candidate hands over 18 of 20 risk and person-request phrases "
        "(live 17), 0 of 40 ordinary questions (live 0)"
    )

    # one safety phrase fewer is refused though the hold-out gain is clear: no significance for who reaches a person
    fewer = gate.decide(before, clear_gain, True, (live_stage, risk({"human_request": 10, "safety": 7}, flagged=0)))
    assert not fewer.promote
    assert fewer.reasons == ["risk stage: the new encoder hands over 7 of 10 held-out 'safety' phrases, the live one 8"]
    # ordinary questions handed to a person cost agents' time: refused only when significantly more
    one_more = gate.decide(before, clear_gain, True, (live_stage, risk({"human_request": 9, "safety": 8}, flagged=1)))
    assert one_more.promote, one_more.reasons
    noisier = gate.decide(before, clear_gain, True, (live_stage, risk({"human_request": 9, "safety": 8}, flagged=4)))
    assert noisier.reasons == [
        "risk stage: the new encoder hands over 4 of 40 held-out ordinary questions, the live one 0"
    ]


def test_a_candidate_with_significantly_more_wrong_answers_is_refused():
    live = "MMMMMMRRRRRREEEEEE"
    candidate = "WWWWWRRRRRRRAAEEEE"  # 5 wrong answers and 2 uncovered answered where the live version had none

    decision = gate.decide({"holdout": figures(live)}, {"holdout": figures(candidate)})

    assert not decision.promote
    assert decision.reasons[0] == "holdout: wrong answers rise from 0 to 7 of 18 questions (p=0.0078)"


def test_a_candidate_that_resolves_significantly_fewer_is_refused():
    live = "RRRRRRRRRRMMMMEEEE"
    candidate = "MMMMMMRRRRMMMMEEEE"

    decision = gate.decide({"holdout": figures(live)}, {"holdout": figures(candidate)})

    assert not decision.promote
    assert "holdout: resolves fewer questions, 4 against 10 of 18 (p=0.016)" in decision.reasons


def test_a_candidate_that_changes_nothing_measurable_stays_out():
    same = "RRRRMMMMEE"
    decision = gate.decide({"holdout": figures(same)}, {"holdout": figures(same)})
    assert not decision.promote
    assert decision.reasons == ["holdout: no gain: resolves 4 of 10 questions (live 4), wrong answers 0 (live 0)"]


def test_out_of_scope_recall_under_its_floor_counts_only_when_the_bound_is_under_it(settings):
    settings.LEARNING_MIN_OOS_RECALL = 0.85
    small = gate.decide({"holdout": figures("MMMMEEE")}, {"holdout": figures("RRRREEA")})
    assert small.promote, small.reasons  # 2 of 3 kept: recall may well be 0.85 or more (bound 0.97)
    many = gate.decide({"holdout": figures("MMMM" + "E" * 40)}, {"holdout": figures("RRRR" + "E" * 20 + "A" * 20)})
    assert not many.promote
    assert any(r.startswith("holdout: out-of-scope recall 20/40 is under 0.850") for r in many.reasons)


def test_the_benchmark_files_weigh_in_and_the_sets_are_pooled():
    holdout_live, holdout_candidate = "MMMMRREE", "RRRRRRWE"  # better, one wrong answer more: not evidence
    bench_live, bench_candidate = "RRRRRRRRRRMMEE", "RRRRRRRRRRMMAE"  # one uncovered question answered
    live = {"holdout": figures(holdout_live), "benchmark:dev.jsonl": figures(bench_live)}
    candidate = {"holdout": figures(holdout_candidate), "benchmark:dev.jsonl": figures(bench_candidate)}

    decision = gate.decide(live, candidate)

    assert [line.split(":")[0] for line in decision.evidence] == ["holdout", "benchmark", "all sets"]
    assert decision.reasons == []  # 2 more wrong answers pooled (p=0.25): not significant at 90 %
    worse_bench = {**candidate, "benchmark:dev.jsonl": figures("WWWWWRRRRRMMAE")}
    refused = gate.decide(live, worse_bench)
    assert not refused.promote
    assert any(r.startswith("benchmark:dev.jsonl: wrong answers rise from 0 to 6") for r in refused.reasons)
    assert any(r.startswith("all sets: wrong answers rise from 0 to 7") for r in refused.reasons)


def test_figures_without_verdicts_fall_back_to_the_rates():
    live = {"holdout": {"n": 50, "auto_resolution": 0.4, "wrong_answer_rate": 0.05, "oos_recall": 1.0}}
    candidate = {"holdout": {"n": 50, "auto_resolution": 0.3, "wrong_answer_rate": 0.05, "oos_recall": 1.0}}
    assert gate.decide(live, candidate).reasons == ["holdout: auto-resolution falls from 0.400 to 0.300"]


@pytest.mark.django_db
def test_a_promoted_job_says_on_its_page_how_sure_the_gate_was(kb, queries):
    actions.activate_version(routing.save_version(kb, routing.untrained_model(kb), {}, notes="before learning"))
    replay(kb, pick_half(queries, "first", seed=0))

    call_command("retrain", "--kb", kb.slug, stdout=StringIO())

    job = RetrainingJob.objects.filter(knowledge_base=kb).latest("pk")
    evidence = job.metrics["gate"]["evidence"]
    assert evidence
    assert evidence[0].startswith("holdout: candidate resolves")
    page = RetrainingJobAdmin(RetrainingJob, admin.site).figures(job)
    assert evidence[0].split(" (")[0] in page
    assert "refuses only when at least 90% sure the candidate is worse" in page
