"""Retraining end to end in eager mode: replayed conversations → candidate → gate → promotion, refusal, rollback."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from knowledge import routing
from knowledge.models import Example, RoutingVersion
from learning import actions, retraining
from learning.models import RetrainingJob
from learning.replay import pick_half, replay

from .conftest import FAQ, QUERIES

pytestmark = pytest.mark.django_db


def retrain(kb) -> RetrainingJob:
    call_command("retrain", "--kb", kb.slug, stdout=StringIO())
    return RetrainingJob.objects.filter(knowledge_base=kb).latest("pk")


def live_figures(kb) -> dict:
    _, model = routing.active_model(kb)
    return retraining.evaluate(kb, model, retraining.holdout_set(kb, None).queries)


def baseline_version(kb) -> RoutingVersion:
    version = routing.save_version(kb, routing.untrained_model(kb), {}, notes="before learning")
    actions.activate_version(version)
    return version


def test_promotion_then_rollback_and_the_chat_follows_without_restart(kb):
    v1 = baseline_version(kb)
    call_command("replay", str(QUERIES), "--kb", kb.slug, stdout=StringIO())
    before = live_figures(kb)
    assert routing.route(kb, "is delivery free?").version == v1.number

    job = retrain(kb)

    assert job.status == RetrainingJob.Status.PROMOTED, job.log
    v2 = job.candidate
    assert v2 is not None
    v2.refresh_from_db()
    assert v2.is_active
    assert job.baseline_version == v1.number
    gate, live = job.metrics["candidate"]["holdout"], job.metrics["live"]["holdout"]
    # the gate's contract (learning.gate): more resolved or fewer wrong answers; here, no more wrong answers either
    assert gate["total_resolution"] > live["total_resolution"] or gate["wrong_answer_rate"] < live["wrong_answer_rate"]
    assert gate["wrong_answer_rate"] <= live["wrong_answer_rate"]
    assert routing.route(kb, "is delivery free?").version == v2.number  # the next message uses v2
    learned = Example.objects.filter(knowledge_base=kb, origin="conversation").count()
    assert learned == len(job.artefacts["examples"]) > 0
    assert live_figures(kb) == job.metrics["candidate"]["holdout"]
    holdout_texts = set(q.text for q in retraining.holdout_set(kb, None).queries)
    assert not holdout_texts & set(text for text, _ in job.artefacts["examples"])  # never trained on

    actions.activate_version(v1)  # rollback, as the admin action does

    assert routing.route(kb, "is delivery free?").version == v1.number
    assert not Example.objects.filter(knowledge_base=kb, origin="conversation").exists()
    assert live_figures(kb) == before

    actions.activate_version(v2)  # and forward again
    assert live_figures(kb) == job.metrics["candidate"]["holdout"]


def test_a_refused_job_leaves_the_index_as_the_version_live_at_its_end_has_it(kb, monkeypatch):
    """A version made live by another process while the job ran (its check passed just before the job started): the
    refused job puts back that version's phrasings, not those of the version that was live when it started."""
    from learning import gate

    v1 = baseline_version(kb)
    call_command("replay", str(QUERIES), "--kb", kb.slug, stdout=StringIO())
    assert retrain(kb).status == RetrainingJob.Status.PROMOTED  # v2, with learned phrasings, is live

    def rolled_back_meanwhile(live, candidate, require_evidence=False, risk_stage=None):
        routing.activate_version(v1)  # another process, past its check (actions.check_available)
        return gate.Decision(promote=False, reasons=["refused for the test"])

    monkeypatch.setattr(retraining, "decide", rolled_back_meanwhile)
    job = retrain(kb)

    assert job.status == RetrainingJob.Status.REFUSED, job.log
    assert routing.active_model(kb)[0] == v1.number
    assert not Example.objects.filter(knowledge_base=kb, origin="conversation").exists()  # v1 learned none
    assert routing.route(kb, "is delivery free?").version == v1.number


def test_a_promoted_candidate_goes_live_with_its_phrasings_even_if_another_version_was_made_live_meanwhile(
    kb, monkeypatch
):
    from learning import gate

    v1 = baseline_version(kb)
    call_command("replay", str(QUERIES), "--kb", kb.slug, stdout=StringIO())

    def v1_made_live_meanwhile(live, candidate, require_evidence=False, risk_stage=None):
        actions.sync_learned_examples(kb, [])  # another process makes v1 live, as actions.activate_version does
        routing.activate_version(v1)
        return gate.Decision(promote=True)

    monkeypatch.setattr(retraining, "decide", v1_made_live_meanwhile)
    job = retrain(kb)

    assert job.status == RetrainingJob.Status.PROMOTED, job.log
    assert job.candidate is not None
    assert routing.active_model(kb)[0] == job.candidate.number
    learned = Example.objects.filter(knowledge_base=kb, origin="conversation")
    assert sorted(learned.values_list("text", flat=True)) == sorted(text for text, _ in job.artefacts["examples"])
    assert live_figures(kb) == job.metrics["candidate"]["holdout"]  # the index is the one the gate measured


def test_a_candidate_is_not_put_over_a_version_ops_made_live_while_the_job_ran(kb, monkeypatch):
    """Ops roll back to v1 while the job judges its candidate against v2 (their check passed just before the job
    started, or their version's index was still being built): the verdict was against v2, so it does not promote."""
    from learning import gate

    v1 = baseline_version(kb)
    call_command("replay", str(QUERIES), "--kb", kb.slug, stdout=StringIO())
    v2 = retrain(kb).candidate
    assert v2 is not None
    assert routing.active_model(kb)[0] == v2.number

    def rolled_back_meanwhile(live, candidate, require_evidence=False, risk_stage=None):
        actions.activate_version(v1)  # as the admin's "Make this version live" does, in another process
        return gate.Decision(promote=True)

    from learning import versions

    monkeypatch.setattr(versions, "check_available", lambda version: None)  # it passed before the job started
    monkeypatch.setattr(retraining, "decide", rolled_back_meanwhile)
    job = retrain(kb)

    assert job.status == RetrainingJob.Status.REFUSED, job.log
    assert job.baseline_version == v2.number
    reason = f"v{v1.number} was made live while the job ran; the candidate was judged against v{v2.number}"
    assert reason in job.metrics["gate"]["reasons"]
    assert f"not promoted: {reason}" in job.log
    assert routing.active_model(kb)[0] == v1.number
    assert not Example.objects.filter(knowledge_base=kb, origin="conversation").exists()  # v1 learned none
    assert routing.route(kb, "is delivery free?").version == v1.number


def test_the_gate_refuses_a_candidate_trained_on_mislabelled_conversations(kb, queries, settings, tmp_path):
    benchmark = tmp_path / "benchmark.jsonl"
    benchmark.write_text(QUERIES.read_text())
    settings.LEARNING_BENCHMARKS = [f"{FAQ}={benchmark}"]
    v1 = baseline_version(kb)
    keys = sorted({q.faq_id for q in queries if q.faq_id})
    shifted = {key: keys[(i + 1) % len(keys)] for i, key in enumerate(keys)}
    replay(kb, [type(q)(q.text, shifted[q.faq_id] if q.faq_id else None) for q in queries])

    job = retrain(kb)

    assert job.status == RetrainingJob.Status.REFUSED, job.log
    assert any(r.startswith("benchmark:benchmark.jsonl") for r in job.metrics["gate"]["reasons"])
    v1.refresh_from_db()
    assert v1.is_active
    assert job.candidate is not None
    assert not job.candidate.is_active
    assert not Example.objects.filter(knowledge_base=kb, origin="conversation").exists()  # index as v1 had it
    assert routing.route(kb, "is delivery free?").version == v1.number


def test_a_crashed_job_fails_with_its_error_and_can_be_resumed(kb, queries):
    v1 = baseline_version(kb)
    replay(kb, pick_half(queries, "first", seed=0))

    def crash(*args, **kwargs):
        raise RuntimeError("worker ran out of memory")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(routing, "train_model", crash)
        job, _ = actions.request_retraining(kb, RetrainingJob.Trigger.COMMAND)
        job = retraining.run_job(job)

    assert job.status == RetrainingJob.Status.FAILED
    assert "worker ran out of memory" in job.error
    v1.refresh_from_db()
    assert v1.is_active
    assert RoutingVersion.objects.filter(knowledge_base=kb).count() == 1
    assert not Example.objects.filter(knowledge_base=kb, origin="conversation").exists()

    job = retraining.run_job(job)  # resume: same job, same window
    assert job.status in (RetrainingJob.Status.PROMOTED, RetrainingJob.Status.REFUSED), job.log
    assert job.attempts == 2


def test_two_jobs_never_run_at_once_for_one_knowledge_base(kb):
    first, created = actions.request_retraining(kb, RetrainingJob.Trigger.ADMIN)
    again, created_again = actions.request_retraining(kb, RetrainingJob.Trigger.COMMAND)
    assert created
    assert not created_again
    assert again == first
    assert retraining.claim(first)
    second = RetrainingJob.objects.create(knowledge_base=kb, trigger=RetrainingJob.Trigger.COMMAND)
    with pytest.raises(retraining.JobBusy):
        retraining.claim(second)
    assert not retraining.claim(first)  # already running: nobody claims it twice


def test_the_schedule_skips_without_enough_new_examples(kb, settings, celery_eager):
    from learning.tasks import retrain_all

    settings.LEARNING_MIN_NEW_EXAMPLES = 20
    retrain_all.delay()
    job = RetrainingJob.objects.get(knowledge_base=kb)
    assert (job.trigger, job.status) == (RetrainingJob.Trigger.SCHEDULE, RetrainingJob.Status.SKIPPED)
    assert not RoutingVersion.objects.filter(knowledge_base=kb).exists()


def test_exports_are_openai_chat_jsonl_and_a_datasets_json_folder(kb, queries):
    from learning import exports

    replay(kb, queries[:12] + queries[-3:])
    folder = exports.export_dataset(kb, exports.exports_root() / "shop" / "manual")
    rows = [json.loads(line) for name in ("train", "validation") for line in (folder / "chat" / f"{name}.jsonl").open()]
    assert len(rows) == 15
    for row in rows:
        assert list(row) == ["messages"]
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        assert all(isinstance(m["content"], str) and m["content"] for m in row["messages"])
    card = (folder / "hf" / "README.md").read_text()
    assert "path: train.jsonl" in card
    assert "path: validation.jsonl" in card
    hf = [json.loads(line) for line in (folder / "hf" / "train.jsonl").open()]
    assert {"text", "label", "kind", "language", "messages"} <= set(hf[0])
    assert {row["label"] for row in hf} <= {"ship", "return", None}


def test_the_gate_holds_out_of_scope_recall_to_a_floor_where_it_is_measured(settings):
    settings.LEARNING_MIN_OOS_RECALL = 0.85
    live = {"holdout": {"n": 50, "auto_resolution": 0.4, "wrong_answer_rate": 0.05, "oos_recall": 1.0}}

    def candidate(oos_recall):
        return {"holdout": {"n": 50, "auto_resolution": 0.9, "wrong_answer_rate": 0.05, "oos_recall": oos_recall}}

    assert retraining.gate(live, candidate(0.9)) == (True, [])  # answers far more, still above the floor
    promote, reasons = retraining.gate(live, candidate(0.5))
    assert not promote
    assert reasons == ["holdout: out-of-scope recall 0.500 is under 0.850 (live: 1.000)"]
    weak_live = {"holdout": {**live["holdout"], "oos_recall": 0.6}}
    assert retraining.gate(weak_live, candidate(0.6))[0]  # under the floor already: must not get worse
    assert not retraining.gate(weak_live, candidate(0.55))[0]
    assert retraining.unmeasured(live) == []

    unmeasured = {"holdout": {**live["holdout"], "oos_recall": None}}
    assert retraining.gate(unmeasured, candidate(None))[0]
    assert retraining.unmeasured(unmeasured)  # promoted, with a warning that says what was not measured


def test_a_calibration_slice_that_cannot_calibrate_is_learned_from(kb, queries):
    from learning.models import LabelledExample, Split

    baseline_version(kb)
    replay(kb, [q for q in queries if q.faq_id])  # no question that should escalate: nothing to calibrate on

    job = retrain(kb)

    assert "default calibration kept" in job.log
    assert "from the train and calibration slices" in job.log
    learned = {text for text, _ in job.artefacts["examples"]}
    calibration = set(
        LabelledExample.objects.filter(knowledge_base=kb, split=Split.CALIBRATION, entry__isnull=False).values_list(
            "text", flat=True
        )
    )
    assert calibration
    assert calibration <= learned
    holdout = set(LabelledExample.objects.filter(knowledge_base=kb, split=Split.HOLDOUT).values_list("text", flat=True))
    assert not holdout & learned


def test_without_a_head_the_training_slice_calibrates_too_leaving_each_question_out(kb, queries, monkeypatch):
    from knowledge import routing_model
    from learning import labels
    from learning.models import Split

    monkeypatch.setattr(routing_model, "HEAD_MIN_EXAMPLES_PER_ENTRY", 100.0)  # this small FAQ: as if few examples
    monkeypatch.setattr(retraining, "MIN_CALIBRATION_ROWS", 20)
    scored_with = []
    real = routing.score_texts

    def spy(kb, model, texts, *, leave_self_out=False, shadow=None):
        scored_with.append(leave_self_out)
        return real(kb, model, texts, leave_self_out=leave_self_out, shadow=shadow)

    monkeypatch.setattr(routing, "score_texts", spy)
    baseline_version(kb)
    replay(kb, queries)

    job = retrain(kb)

    version = job.candidate
    assert version is not None
    assert version.model["head"] is None
    rows = labels.labelled_pairs(kb, [Split.TRAIN, Split.CALIBRATION], None, with_negatives=True)
    assert version.metrics["calibration_rows"] == len(rows)
    assert f"calibrated on {len(rows)} labelled questions" in job.log
    assert True in scored_with  # the calibration scored each question without its own phrasing
