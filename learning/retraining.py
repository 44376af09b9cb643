"""One retraining job, start to end: labels → learned phrasings → head → calibration → gate → promote.

The candidate faces the live version on the held-out slice of labelled conversations (never trained on)
and on the configured benchmark files. It goes live only if auto-resolution holds or improves and the
wrong-answer rate rises by at most LEARNING_MAX_WRONG_ANSWER_INCREASE on every set; promotion is one
atomic activation, the very last step. A refused or failed job puts the index back as the live version
had it. A job can be run again (resumed): every step is idempotent and a saved candidate is reused.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from knowledge.evaluation import LabelledQuery, Outcome, figures, read_queries
from knowledge.models import Entry, Example, KnowledgeBase, RoutingVersion, Source
from learning import actions, labels
from learning.models import RetrainingJob, Split

logger = logging.getLogger(__name__)

STALE_AFTER = timedelta(minutes=30)
"""A running job without a heartbeat for this long lost its worker; it is marked failed and can be resumed."""

MIN_CALIBRATION_ROWS = 60
"""Fewer labelled calibration questions than this keep the default calibration: fitting ~9 calibrator
weights on 20 questions chose a threshold of 0.07 on soportemax (44% wrong answers on the hold-out)."""

Status = RetrainingJob.Status


class JobBusy(Exception):
    """Another job is running for this knowledge base."""


# --- evaluation ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalSet:
    name: str
    queries: list[LabelledQuery]  # faq_id = the entry's primary key as text; None = must escalate


def holdout_set(kb: KnowledgeBase, until: Any) -> EvalSet:
    pairs = labels.labelled_pairs(kb, [Split.HOLDOUT], until, with_negatives=True)
    return EvalSet("holdout", [LabelledQuery(text, str(entry.pk) if entry else None) for text, entry in pairs])


def benchmark_sets(kb: KnowledgeBase, say: Any = None) -> list[EvalSet]:
    """LEARNING_BENCHMARKS pairs whose FAQ file is a source of ``kb`` (query ids are that source's keys)."""
    sets = []
    for spec in settings.LEARNING_BENCHMARKS:
        faq, _, queries = spec.partition("=")
        source = Source.objects.filter(knowledge_base=kb, location=str(Path(faq).resolve())).first()
        if source is None or not Path(queries).is_file():
            if say:
                say(f"benchmark {spec}: not a source of {kb.slug} or no query file; skipped")
            continue
        keys = dict(Entry.objects.filter(source=source).values_list("key", "pk"))
        rows = [
            LabelledQuery(q.text, str(keys[q.faq_id]) if q.faq_id else None, q.lang, q.kind)
            for q in read_queries(Path(queries))
            if q.faq_id is None or q.faq_id in keys
        ]
        sets.append(EvalSet(f"benchmark:{Path(queries).name}", rows))
    return sets


def evaluate(kb: KnowledgeBase, model: Any, queries: Sequence[LabelledQuery]) -> dict[str, Any]:
    """The EVAL.md figures of ``model`` on ``queries``.

    The decision is ``route()``'s (a request for a person escalates; answer when the model decides and the
    entry is answerable), scored in one batch by ``routing.score_texts`` so the vector cache makes it cheap.
    """
    from knowledge import routing
    from knowledge.handoff import wants_a_person

    asked = [q for q in queries if not wants_a_person(q.text)]
    scored = dict(zip([id(q) for q in asked], routing.score_texts(kb, model, [q.text for q in asked]), strict=True))
    answerable = {str(pk) for pk in Entry.objects.filter(knowledge_base=kb).answerable().values_list("pk", flat=True)}
    outcomes = []
    for query in queries:
        result = scored.get(id(query))
        if result is None:
            outcomes.append(Outcome(query, None, "human_request", 0.0))
            continue
        answered = result.entry_id if model.decide(result) and result.entry_id in answerable else None
        outcomes.append(Outcome(query, answered, "answer" if answered else "escalate", 0.0))
    return figures(outcomes)


def gate(live: dict[str, dict[str, Any]], candidate: dict[str, dict[str, Any]]) -> tuple[bool, list[str]]:
    """Promote only if, on every set, auto-resolution holds or improves, wrong answers rise at most their margin
    and out-of-scope recall (where the set has out-of-scope questions) stays at or above LEARNING_MIN_OOS_RECALL, or
    at the live version's if that was already lower.

    A floor rather than "no drop": the live version of a new knowledge base escalates nearly everything, so any
    candidate that answers more catches fewer uncovered questions (clinc150: 100 % -> 90 %, with auto-resolution
    40 % -> 92 %). Those it answers count as wrong answers too."""
    reasons: list[str] = []
    measured = 0
    for name, before in live.items():
        after = candidate[name]
        if not before.get("n"):
            continue
        measured += 1
        ar_before, ar_after = before["auto_resolution"], after["auto_resolution"]
        if ar_before is not None and (ar_after or 0.0) < ar_before - 1e-9:
            reasons.append(f"{name}: auto-resolution falls from {ar_before:.3f} to {ar_after or 0:.3f}")
        wrong_before, wrong_after = before["wrong_answer_rate"] or 0.0, after["wrong_answer_rate"] or 0.0
        if wrong_after > wrong_before + settings.LEARNING_MAX_WRONG_ANSWER_INCREASE + 1e-9:
            reasons.append(f"{name}: wrong-answer rate rises from {wrong_before:.3f} to {wrong_after:.3f}")
        oos_before, oos_after = before.get("oos_recall"), after.get("oos_recall")
        floor = min(oos_before, settings.LEARNING_MIN_OOS_RECALL) if oos_before is not None else None
        if floor is not None and (oos_after or 0.0) < floor - 1e-9:
            reasons.append(
                f"{name}: out-of-scope recall {oos_after or 0:.3f} is under {floor:.3f} (live: {oos_before:.3f})"
            )
    if not measured:
        reasons.append("nothing to evaluate on: no held-out labelled conversations and no benchmark")
    return not reasons, reasons


def unmeasured(live: dict[str, dict[str, Any]]) -> list[str]:
    """What the gate could not see: shown with its decision, so ops know what a promotion rests on."""
    if any(figures.get("oos_recall") is not None for figures in live.values()):
        return []
    return ["no evaluation set has out-of-scope questions: answers to uncovered questions were not measured"]


# --- the job ------------------------------------------------------------------------------------
def fail_stale_jobs(kb: KnowledgeBase) -> int:
    cutoff = timezone.now() - STALE_AFTER
    return int(
        RetrainingJob.objects.filter(knowledge_base=kb, status=Status.RUNNING, heartbeat_at__lt=cutoff).update(
            status=Status.FAILED, error="The worker stopped sending progress (lost); run the job again to resume."
        )
    )


def claim(job: RetrainingJob) -> bool:
    """Queued or failed → running, for exactly one worker; JobBusy if another job of the KB runs."""
    fail_stale_jobs(job.knowledge_base)
    now = timezone.now()
    try:
        with transaction.atomic():
            won = RetrainingJob.objects.filter(pk=job.pk, status__in=[Status.QUEUED, Status.FAILED]).update(
                status=Status.RUNNING, started_at=now, heartbeat_at=now, error="", attempts=F("attempts") + 1
            )
    except IntegrityError as exc:  # one_running_job_per_kb: another job of this knowledge base is running
        raise JobBusy(f"another retraining job is running for {job.knowledge_base.slug}") from exc
    job.refresh_from_db()
    return bool(won)


class Runner:
    def __init__(self, job: RetrainingJob) -> None:
        self.job = job
        self.kb = job.knowledge_base

    def say(self, line: str, progress: int | None = None, stage: str | None = None) -> None:
        job = self.job
        job.log += f"{timezone.now():%H:%M:%S} {line}\n"
        job.heartbeat_at = timezone.now()
        if progress is not None:
            job.progress = progress
        if stage is not None:
            job.stage = stage
        job.save(update_fields=["log", "heartbeat_at", "progress", "stage", "metrics", "artefacts"])
        logger.info("retraining: %s", line, extra={"job": job.pk, "kb": self.kb.slug})

    def finish(self, status: str, **fields: Any) -> None:
        job = self.job
        job.status, job.finished_at, job.progress, job.stage = status, timezone.now(), 100, ""
        for name, value in fields.items():
            setattr(job, name, value)
        job.save()

    def run(self) -> RetrainingJob:
        from knowledge import routing

        job, kb = self.job, self.kb
        self.say("collecting labelled examples", 5, "labels")
        refreshed = actions.refresh_turns(kb, job.window_end)
        derived = labels.derive_labels(kb, job.window_end)
        new = labels.new_training_examples(kb, job.window_start, job.window_end)
        job.metrics["data"] = {"turns": refreshed, "labels": derived, "new_training_examples": new}
        self.say(f"{refreshed} turns, {derived} labels, {new} new training examples", 15)
        if job.trigger == RetrainingJob.Trigger.SCHEDULE and new < settings.LEARNING_MIN_NEW_EXAMPLES:
            self.finish(Status.SKIPPED, log=job.log + f"fewer than {settings.LEARNING_MIN_NEW_EXAMPLES} new: skipped\n")
            return job

        live_number, live_model = routing.active_model(kb)
        live_version = RoutingVersion.objects.filter(knowledge_base=kb, is_active=True).first()
        job.baseline_version = live_number
        added, removed = actions.sync_learned_examples(kb, actions.learned_examples_of(live_version))
        if added or removed:
            self.say(f"index brought back to the live version (+{added} −{removed} phrasings)")
        sets = [holdout_set(kb, job.window_end), *benchmark_sets(kb, self.say)]
        self.say(f"baseline: live version {live_number or '(untrained)'} on {[s.name for s in sets]}", 25, "baseline")
        baseline = {s.name: evaluate(kb, live_model, s.queries) for s in sets}
        job.metrics["live"] = baseline

        candidate = self._candidate(job, kb)
        self.say(f"evaluating candidate v{candidate.number}", 75, "evaluating")
        model = _model_of(candidate)
        after = {s.name: evaluate(kb, model, s.queries) for s in sets}
        job.metrics["candidate"] = after
        promote, reasons = gate(baseline, after)
        warnings = unmeasured(baseline)
        job.metrics["gate"] = {"promote": promote, "reasons": reasons, "warnings": warnings}
        for warning in warnings:
            self.say(f"gate: warning — {warning}")
        self.say("gate: promote" if promote else "gate: refused — " + "; ".join(reasons), 85, "gate")

        from learning import exports

        folder = exports.export_dataset(kb, exports.job_folder(job))
        job.artefacts["export"] = str(folder)
        self.say(f"training data exported to {folder}", 90, "exports")

        if promote:
            with transaction.atomic():
                routing.activate_version(candidate)
                self.finish(Status.PROMOTED)
            self.say(f"v{candidate.number} is live")
        else:
            actions.sync_learned_examples(kb, actions.learned_examples_of(live_version))
            self.finish(Status.REFUSED)
        return job

    def _candidate(self, job: RetrainingJob, kb: KnowledgeBase) -> RoutingVersion:
        """Learned phrasings indexed, head trained, threshold calibrated, version saved (or the saved one reused)."""
        from knowledge import routing

        if job.candidate is not None and job.artefacts.get("examples") is not None:
            actions.sync_learned_examples(kb, actions.learned_examples_of(job.candidate))
            self.say(f"resuming with the candidate saved before: v{job.candidate.number}", 60)
            return job.candidate
        # The calibration slice calibrates only if it can: enough questions, some of which should have escalated.
        # Without such questions a calibration only learns to answer everything (banking77 train replayed: OOS
        # recall 88% -> 51%). A slice that cannot calibrate is learned from instead.
        calibration = labels.labelled_pairs(kb, [Split.CALIBRATION], job.window_end, with_negatives=True)
        calibrates = _can_calibrate(calibration)
        learning_slices: list[str] = [Split.TRAIN] if calibrates else [Split.TRAIN, Split.CALIBRATION]
        train = labels.labelled_pairs(kb, learning_slices, job.window_end, with_negatives=False)
        self.say(f"learning {len(train)} phrasings from the {' and '.join(learning_slices)} slices", 35, "learning")
        routing.add_examples(kb, train, origin=actions.LEARNED_ORIGIN)
        learned = Example.objects.filter(knowledge_base=kb, origin=actions.LEARNED_ORIGIN).order_by("pk")
        job.artefacts["examples"] = [[ex.text, ex.entry_id] for ex in learned]
        self.say("training the head", 45, "training")
        model = routing.train_model(kb)
        if model.head is None:
            # No head (few examples): the training slice calibrates too, each question scored with its own learned
            # phrasing left out. On a small knowledge base that is most of the labelled data. With a head, its
            # training questions would look easier than unseen ones.
            calibration = labels.labelled_pairs(
                kb, [Split.TRAIN, Split.CALIBRATION], job.window_end, with_negatives=True
            )
            calibrates = _can_calibrate(calibration)
        metrics: dict[str, Any] = {"examples": len(job.artefacts["examples"]), "calibration_rows": len(calibration)}
        if not calibrates:
            why = "too few" if len(calibration) < MIN_CALIBRATION_ROWS else "none out of scope"
            self.say(f"{len(calibration)} calibration questions, {why}: default calibration kept", 60)
        else:
            try:
                metrics["calibration"] = routing.calibrate_model(
                    kb, model, calibration, settings.TARGET_WRONG_ANSWER_RATE, leave_self_out=model.head is None
                )
                self.say(f"calibrated on {len(calibration)} labelled questions: threshold {model.threshold:.3f}", 60)
            except ValueError as exc:  # e.g. every calibration answer right: nothing to fit
                self.say(f"calibration skipped ({exc}); default calibration kept", 60)
        candidate = routing.save_version(kb, model, metrics, notes=f"retraining job #{job.pk}")
        job.candidate = candidate
        job.save(update_fields=["candidate", "artefacts"])
        return candidate


def _can_calibrate(calibration: Sequence[tuple[str, Entry | None]]) -> bool:
    return len(calibration) >= MIN_CALIBRATION_ROWS and any(entry is None for _, entry in calibration)


def _model_of(version: RoutingVersion) -> Any:
    from knowledge import routing

    return routing.load_model(version.knowledge_base, version.model)


def run_job(job: RetrainingJob) -> RetrainingJob:
    """Run (or resume) ``job``. Any error leaves it failed, with the error, and the live version untouched."""
    if job.status in RetrainingJob.FINISHED:
        return job
    if not claim(job):
        job.refresh_from_db()
        return job
    runner = Runner(job)
    try:
        return runner.run()
    except Exception as exc:
        logger.exception("retraining failed", extra={"job": job.pk})
        RetrainingJob.objects.filter(pk=job.pk).update(
            status=Status.FAILED,
            finished_at=timezone.now(),
            error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc(limit=8)}",
            log=job.log + f"failed: {type(exc).__name__}: {exc}\n",
            metrics=job.metrics,
            artefacts=job.artefacts,
        )
        try:
            live = RoutingVersion.objects.filter(knowledge_base=job.knowledge_base, is_active=True).first()
            actions.sync_learned_examples(job.knowledge_base, actions.learned_examples_of(live))
        except Exception:  # the next job puts the index back before it starts
            logger.exception("could not restore the index after a failed job", extra={"job": job.pk})
        job.refresh_from_db()
        return job
