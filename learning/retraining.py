"""One retraining job, start to end: labels → learned phrasings → head → calibration → gate → promote.

The candidate faces the live version on the held-out slice of labelled conversations (never trained on)
and on the configured benchmark files, question by question. It goes live only if it resolves more questions
or gives fewer wrong answers, and is not significantly worse on any set (``learning.gate``, which also says
how sure it is); promotion is one atomic activation, the very last step. A refused or failed job puts the
index back as the live version had it. A job can be run again (resumed): every step is idempotent and a
saved candidate is reused.

A running job's worker writes a heartbeat every HEARTBEAT_S seconds (a thread, besides the progress lines).
A job without one for LEARNING_JOB_STALE_MINUTES lost its worker (killed, restarted, out of memory): it is
marked failed, with what happened, before anything asks whether a job is running, so it never blocks
"Retrain now", the command or the schedule, and it can be resumed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from knowledge import index
from knowledge.evaluation import LabelledQuery, Outcome, figures, read_queries
from knowledge.models import Entry, Example, KnowledgeBase, RoutingVersion, Source
from learning import actions, finetune, labels
from learning.gate import GATE_CONFIDENCE, decide, unmeasured, verdicts
from learning.models import RetrainingJob, Split

logger = logging.getLogger(__name__)

HEARTBEAT_S = 30.0
"""How often a running job's worker says it is alive (LEARNING_JOB_STALE_MINUTES must be well above it)."""

MIN_CALIBRATION_ROWS = 60
"""Fewer labelled calibration questions than this keep the default calibration: fitting ~9 calibrator
weights on 20 questions chose a threshold of 0.07 on soportemax (44% wrong answers on the hold-out)."""

Status = RetrainingJob.Status


class JobBusy(Exception):
    """Another job is running for this knowledge base."""


class JobLost(Exception):
    """This worker no longer owns the job: it was marked stale and taken over, or changed by ops."""


# --- evaluation ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalSet:
    name: str
    queries: list[LabelledQuery]  # faq_id = the entry's primary key as text; None = must escalate


@dataclass(frozen=True)
class Verdict:
    """A candidate's gate decision, with what goes to the job's metrics: ``candidate`` (its figures), ``gate``, and
    ``risk_stage`` for a new encoder."""

    promote: bool
    metrics: dict[str, Any]


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


def evaluate(
    kb: KnowledgeBase, model: Any, queries: Sequence[LabelledQuery], shadow: index.Shadow | None = None
) -> dict[str, Any]:
    """The EVAL.md figures of ``model`` on ``queries`` (``shadow``: the index of a candidate's own encoder).

    The decision is ``route()``'s (a request for a person escalates; answer when the model decides and the
    entry is answerable), scored in one batch by ``routing.score_texts`` so the vector cache makes it cheap.
    """
    from knowledge import intents, routing

    encoder = shadow.encoder if shadow is not None else index.encoder_of(kb)
    caught = intents.detect_many([q.text for q in queries], encoder)
    asked = [q for q, match in zip(queries, caught, strict=True) if not match]
    found = routing.score_texts(kb, model, [q.text for q in asked], shadow=shadow)
    scored = dict(zip([id(q) for q in asked], found, strict=True))
    answerable = {str(pk) for pk in Entry.objects.filter(knowledge_base=kb).answerable().values_list("pk", flat=True)}
    outcomes = []
    for query in queries:
        result = scored.get(id(query))
        if result is None:
            outcomes.append(Outcome(query, None, "human_request", 0.0))
            continue
        answered = result.entry_id if model.decide(result) and result.entry_id in answerable else None
        offered: tuple[str, ...] = ()
        if answered is None and model.offers_choices(result):
            offered = tuple(e for e, _ in result.candidates[: routing.MAX_CHOICES] if e in answerable)
        outcomes.append(Outcome(query, answered, "answer" if answered else "escalate", 0.0, offered))
    return {**figures(outcomes), "verdicts": verdicts(outcomes)}


def gate(live: dict[str, dict[str, Any]], candidate: dict[str, dict[str, Any]]) -> tuple[bool, list[str]]:
    """Promote, or the reasons not to (``learning.gate``: paired, significance-aware)."""
    decision = decide(live, candidate)
    return decision.promote, decision.reasons


# --- the job's lifecycle -------------------------------------------------------------------------
def stale_after() -> timedelta:
    return timedelta(minutes=settings.LEARNING_JOB_STALE_MINUTES)


def fail_stale_jobs(kb: KnowledgeBase | None = None) -> list[int]:
    """Mark failed every running job (of ``kb``, or all) whose worker has not sent a heartbeat for too long."""
    cutoff = timezone.now() - stale_after()
    stale = RetrainingJob.objects.filter(status=Status.RUNNING, heartbeat_at__lt=cutoff)
    if kb is not None:
        stale = stale.filter(knowledge_base=kb)
    failed = []
    for job in stale:
        since = f"{timezone.localtime(job.heartbeat_at):%Y-%m-%d %H:%M:%S}" if job.heartbeat_at else "its start"
        error = (
            f"Stale: no heartbeat from its worker ({job.worker or 'unknown'}) since {since}, more than "
            f"{settings.LEARNING_JOB_STALE_MINUTES} minutes: the worker stopped (killed, restarted or out of memory) "
            f"during {job.stage or 'its first step'}. Resume it: it goes on from its saved candidate if it had one."
        )
        won = RetrainingJob.objects.filter(pk=job.pk, status=Status.RUNNING, heartbeat_at=job.heartbeat_at).update(
            status=Status.FAILED,
            finished_at=timezone.now(),
            error=error,
            log=job.log + f"{timezone.now():%H:%M:%S} failed: {error}\n",
        )
        if won:
            logger.warning("retraining job stale: marked failed", extra={"job": job.pk, "worker": job.worker})
            failed.append(job.pk)
    return failed


def request_job(kb: KnowledgeBase, trigger: str, user: User | None = None) -> tuple[RetrainingJob, bool]:
    """A new queued job for ``kb``, or the live one already queued or running; a stale job does not count."""
    fail_stale_jobs(kb)
    return actions.request_retraining(kb, trigger, user)


def queue_job(job: RetrainingJob, at_commit: bool = True) -> None:
    """Hand ``job`` to a worker once the current transaction commits (or now); if the broker cannot take it, the
    job fails (resumable) rather than sit queued forever."""
    from learning.tasks import run_retraining_job

    RetrainingJob.objects.filter(pk=job.pk).update(queued_at=timezone.now())

    def publish() -> None:
        try:
            run_retraining_job.delay(job.pk)
        except Exception as exc:  # a broker outage
            logger.exception("could not queue the retraining job", extra={"job": job.pk})
            RetrainingJob.objects.filter(pk=job.pk, status=Status.QUEUED).update(
                status=Status.FAILED, error=f"Could not reach the task queue ({type(exc).__name__}: {exc}); resume it."
            )

    if at_commit:
        transaction.on_commit(publish)
    else:
        publish()


def why_not_resumable(job: RetrainingJob) -> str | None:
    """None if ``job`` can run again now: failed (stale included), or queued with no worker taking it."""
    fail_stale_jobs(job.knowledge_base)
    job.refresh_from_db()
    now = timezone.now()
    if job.status == Status.QUEUED:
        since = job.queued_at or job.created_at
        if now - since < stale_after():
            return f"job #{job.pk} is already queued (since {timezone.localtime(since):%H:%M:%S})"
    elif job.status == Status.RUNNING:
        beat = f"{timezone.localtime(job.heartbeat_at):%H:%M:%S}" if job.heartbeat_at else "none yet"
        return (
            f"job #{job.pk} is running (last heartbeat {beat}, from {job.worker or 'a worker'}); it can be "
            f"resumed once it fails, or after {settings.LEARNING_JOB_STALE_MINUTES} minutes without a heartbeat"
        )
    elif job.status != Status.FAILED:
        return f"job #{job.pk} is {job.get_status_display().lower()}: only failed jobs can be resumed"
    other = (
        RetrainingJob.objects.filter(knowledge_base=job.knowledge_base, status__in=[Status.QUEUED, Status.RUNNING])
        .exclude(pk=job.pk)
        .first()
    )
    if other is not None:
        return f"job #{other.pk} of {job.knowledge_base.slug} is {other.status}; resume #{job.pk} after it ends"
    return None


def resume_job(job: RetrainingJob) -> str | None:
    """Queue a failed job again (or a queued one that no worker took); the reason it was skipped, else None."""
    reason = why_not_resumable(job)
    if reason is not None:
        return reason
    now = timezone.now()
    resumed = RetrainingJob.objects.filter(pk=job.pk, status=job.status).update(
        status=Status.QUEUED, error="", log=job.log + f"{timezone.localtime(now):%H:%M:%S} queued again (resume)\n"
    )
    if not resumed:
        return f"job #{job.pk} changed meanwhile; try again"
    queue_job(job)
    return None


def claim(job: RetrainingJob) -> bool:
    """Queued or failed → running, for exactly one worker; JobBusy if another job of the KB runs."""
    fail_stale_jobs(job.knowledge_base)
    now = timezone.now()
    try:
        with transaction.atomic():
            won = RetrainingJob.objects.filter(pk=job.pk, status__in=[Status.QUEUED, Status.FAILED]).update(
                status=Status.RUNNING,
                started_at=now,
                heartbeat_at=now,
                finished_at=None,
                error="",
                worker=f"{socket.gethostname()}:{os.getpid()}",
                attempts=F("attempts") + 1,
            )
    except IntegrityError as exc:  # one_running_job_per_kb: another job of this knowledge base is running
        raise JobBusy(f"another retraining job is running for {job.knowledge_base.slug}") from exc
    job.refresh_from_db()
    return bool(won)


def _owned(job: RetrainingJob, status: str | None = None) -> Any:
    """The job's row while this run still owns it: this attempt, and the status this run left it in."""
    return RetrainingJob.objects.filter(pk=job.pk, attempts=job.attempts, status=status or job.status)


class Heartbeat:
    """Writes the job's heartbeat from a thread every HEARTBEAT_S seconds while the job runs in this process.

    Not started inside a transaction (tests): nothing the job writes there is seen by another connection.
    """

    def __init__(self, job: RetrainingJob) -> None:
        self.job = job
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if not connection.in_atomic_block:
            self.thread = threading.Thread(target=self._beat, name=f"retraining-{self.job.pk}-heartbeat", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=HEARTBEAT_S + 5)

    def _beat(self) -> None:
        try:
            while not self.stopped.wait(HEARTBEAT_S):
                try:
                    if not _owned(self.job, Status.RUNNING).update(heartbeat_at=timezone.now()):
                        return  # finished, failed or taken over: nothing left to keep alive
                except Exception:  # a database blip: the next beat tries again, well before the job is stale
                    logger.warning("retraining heartbeat failed", exc_info=True, extra={"job": self.job.pk})
                    close_old_connections()
        finally:
            connection.close()


class Runner:
    def __init__(self, job: RetrainingJob) -> None:
        self.job = job
        self.kb = job.knowledge_base
        self.shadow: index.Shadow | None = None  # the candidate's index when it has its own encoder

    def say(self, line: str, progress: int | None = None, stage: str | None = None) -> None:
        """A progress line, saved with the heartbeat; JobLost if the job is no longer this run's."""
        job = self.job
        job.log += f"{timezone.now():%H:%M:%S} {line}\n"
        job.heartbeat_at = timezone.now()
        if progress is not None:
            job.progress = progress
        if stage is not None:
            job.stage = stage
        saved = _owned(job).update(
            log=job.log,
            heartbeat_at=job.heartbeat_at,
            progress=job.progress,
            stage=job.stage,
            metrics=job.metrics,
            artefacts=job.artefacts,
        )
        if not saved:
            raise JobLost(f"job #{job.pk} is no longer running here")
        logger.info("retraining: %s", line, extra={"job": job.pk, "kb": self.kb.slug})

    def finish(self, status: str, **fields: Any) -> None:
        job = self.job
        job.status, job.finished_at, job.progress, job.stage = status, timezone.now(), 100, ""
        for name, value in fields.items():
            setattr(job, name, value)
        names = ["status", "finished_at", "progress", "stage", "log", "metrics", "artefacts", "baseline_version"]
        names += [name for name in fields if name not in names]
        if not _owned(job, Status.RUNNING).update(**{name: getattr(job, name) for name in names}):
            raise JobLost(f"job #{job.pk} is no longer running here")

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
        self._put_aside_uncompared_fine_tune(candidate)
        verdict = self._judge(candidate, sets, baseline)
        if candidate.encoder != kb.encoder:
            candidate, verdict = self._fine_tuned_or_not(candidate, verdict, sets, baseline)
        for key in ("candidate", "gate", "risk_stage"):  # a resumed job's earlier verdict goes with this one
            job.metrics.pop(key, None)
        job.metrics.update(verdict.metrics)
        promote = verdict.promote

        from learning import exports

        folder = exports.export_dataset(kb, exports.job_folder(job))
        job.artefacts["export"] = str(folder)
        self.say(f"training data exported to {folder}", 90, "exports")

        if promote:
            # the candidate's phrasings, whatever another process made live meanwhile (a no-op otherwise)
            actions.sync_learned_examples(kb, actions.learned_examples_of(candidate))
            built = routing.index_for(candidate)  # a new encoder's collection, built while the live one serves
            if built is not None:
                self.say(f"index built with v{candidate.number}'s encoder ({built.model})", 95, "switching")
            with transaction.atomic():
                moved = self._live_version_moved()
                if moved is None:
                    routing.activate_version(candidate, built)
                    self.finish(Status.PROMOTED)
            if moved is None:
                self.say(f"v{candidate.number} is live")
                return job
            job.metrics["gate"]["promote"] = False
            job.metrics["gate"]["reasons"].append(moved)
            self.say(f"not promoted: {moved}")
            if built is not None:
                index.abandon(kb, built)
            if candidate.encoder != kb.encoder:
                finetune.discard(candidate)  # as for a refused fine-tune
        # the version live now: another process may have made one live while this job ran (rollback)
        live_now = RoutingVersion.objects.filter(knowledge_base=kb, is_active=True).first()
        actions.sync_learned_examples(kb, actions.learned_examples_of(live_now))
        self.finish(Status.REFUSED)  # a fine-tune the gate refused never gets here: _fine_tuned_or_not put it aside
        return job

    def _live_version_moved(self) -> str | None:
        """Why the gate's verdict no longer holds, if ops made another version live while the job ran (its check
        passed just before the job started, or its new encoder's index was still being built): the candidate was
        judged against the version live at the start, and is not put over the one ops chose. Call it inside the
        promotion's transaction: the live version stays locked until the switch (``routing.lock_live_version``)."""
        from knowledge import routing

        job = self.job
        live = routing.lock_live_version(self.kb)
        if live == job.baseline_version:
            return None
        judged = f"v{job.baseline_version}" if job.baseline_version else "the untrained version"
        now = f"v{live}" if live else "no version"
        return f"{now} was made live while the job ran; the candidate was judged against {judged}"

    def _judge(
        self, candidate: RoutingVersion, sets: Sequence[EvalSet], baseline: dict[str, Any], label: str = "gate"
    ) -> Verdict:
        """The candidate against the live version on every set (``learning.gate``), with its evidence in the log. A
        candidate with its own encoder must be shown better (rule 5) and keep the risk stage (rule 6)."""
        kb = self.kb
        index.encoder_of(kb)
        if candidate.encoder != kb.encoder and self.shadow is None:  # resumed: its encoder's index is rebuilt
            self.shadow = index.shadow(kb, candidate.encoder)
        self.say(f"evaluating candidate v{candidate.number}", 75, "evaluating")
        model = _model_of(candidate)
        after = {s.name: evaluate(kb, model, s.queries, self.shadow) for s in sets}
        metrics: dict[str, Any] = {"candidate": after}
        risk_stage = None
        if self.shadow is not None:  # a new encoder: the risk stage will run in its space too
            from knowledge import intents

            risk_stage = (
                asdict(intents.held_out_figures(index.encoder_of(kb))),
                asdict(intents.held_out_figures(self.shadow.encoder)),
            )
            metrics["risk_stage"] = {"live": risk_stage[0], "candidate": risk_stage[1]}
        decision = decide(baseline, after, require_evidence=candidate.encoder != kb.encoder, risk_stage=risk_stage)
        warnings = unmeasured(baseline)
        metrics["gate"] = {
            "promote": decision.promote,
            "reasons": decision.reasons,
            "warnings": warnings,
            "evidence": decision.evidence,
            "confidence": GATE_CONFIDENCE,
        }
        for line in decision.evidence:
            self.say(f"{label}: {line}")
        for warning in warnings:
            self.say(f"{label}: warning — {warning}")
        verdict = "promote" if decision.promote else "refused — " + "; ".join(decision.reasons)
        self.say(f"{label}: {verdict}", 85, "gate")
        return Verdict(decision.promote, metrics)

    def _fine_tuned_or_not(
        self, tuned: RoutingVersion, tuned_verdict: Verdict, sets: Sequence[EvalSet], baseline: dict[str, Any]
    ) -> tuple[RoutingVersion, Verdict]:
        """The same learning again on the knowledge base's own encoder; the fine-tuned candidate goes forward only
        if it passed the gate *and* is shown better than that head-only one on the same questions (rule 7).

        Passing the gate is not enough: on clinc150 (10,000 turns) the fine-tuned candidate resolved 1,857 of 2,048
        held-out questions, far more than the untrained live version (1,612), and the head-only one 2,001. The
        loser's figures stay in the job's metrics (``fine_tuned``); a fine-tuned loser's encoder file is deleted."""
        job, kb = self.job, self.kb
        tuned_shadow, self.shadow = self.shadow, None
        job.candidate = None
        # a resumed job does not fine-tune again, and puts this one aside if it stopped before the comparison
        job.artefacts["fine_tuned_version"] = tuned.pk
        job.save(update_fields=["candidate", "artefacts"])
        self.say("learning the same on the knowledge base's own encoder, to compare the fine-tune with", 60, "learning")
        frozen = self._candidate(job, kb)
        frozen_verdict = self._judge(frozen, sets, baseline, label="head-only gate")
        record: dict[str, Any] = {"version": tuned.number, "head_only_version": frozen.number, **tuned_verdict.metrics}
        chosen = False
        if tuned_verdict.promote:
            versus = decide(frozen_verdict.metrics["candidate"], tuned_verdict.metrics["candidate"], True)
            for line in versus.evidence:
                self.say(f"fine-tuned vs head-only: {line}")
            chosen = versus.promote
            record["versus_head_only"] = {"reasons": versus.reasons, "evidence": versus.evidence}
        record["chosen"] = chosen
        job.metrics["fine_tuned"] = record
        if chosen:
            self.shadow = tuned_shadow
            job.candidate = tuned
            job.save(update_fields=["candidate"])
            # kept, as every version is, but its learned phrasings are the job's candidate's: say so where ops look
            RoutingVersion.objects.filter(pk=frozen.pk).update(
                notes=f"{frozen.notes}; not chosen: v{tuned.number} (fine-tuned) was shown better; it has no learned "
                "phrasings of its own, so made live it answers without them"
            )
            self.say(f"v{tuned.number} (fine-tuned encoder) is shown better than v{frozen.number} (head-only)")
            return tuned, tuned_verdict
        finetune.discard(tuned)
        self.say(f"v{tuned.number} (fine-tuned encoder) not chosen: v{frozen.number} (head-only) goes forward")
        return frozen, frozen_verdict

    def _put_aside_uncompared_fine_tune(self, candidate: RoutingVersion) -> None:
        """A job resumed during its head-only pass (rule 7) has lost the fine-tuned candidate's verdict and index: that
        candidate is put aside like a refused one (its encoder file, about 70 MB, deleted) and the job goes on with
        the head-only candidate, as a job with fine-tuning off would."""
        job = self.job
        pk = job.artefacts.get("fine_tuned_version")
        if pk is None or pk == candidate.pk or "fine_tuned" in job.metrics:
            return  # no fine-tune, the fine-tune itself, or a comparison that was finished
        tuned = RoutingVersion.objects.filter(pk=pk).first()
        if tuned is None:
            return
        finetune.discard(tuned)
        job.metrics["fine_tuned"] = {
            "version": tuned.number,
            "head_only_version": candidate.number,
            "chosen": False,
            "gate": {"reasons": ["not compared with head-only learning: the job stopped before the comparison"]},
        }
        self.say(f"v{tuned.number} (fine-tuned encoder) was not compared before the job stopped: put aside")

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
        encoder = self._encoder(kb, train)
        self.say("training the head", 45, "training")
        model = routing.train_model(kb, encoder=self.shadow.encoder if self.shadow else None)
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
                    kb,
                    model,
                    calibration,
                    settings.TARGET_WRONG_ANSWER_RATE,
                    leave_self_out=model.head is None,
                    shadow=self.shadow,
                )
                self.say(f"calibrated on {len(calibration)} labelled questions: threshold {model.threshold:.3f}", 60)
            except ValueError as exc:  # e.g. every calibration answer right: nothing to fit
                self.say(f"calibration skipped ({exc}); default calibration kept", 60)
        notes = f"retraining job #{job.pk}" + (", fine-tuned encoder" if self.shadow else "")
        candidate = routing.save_version(kb, model, metrics, notes=notes, encoder=encoder)
        job.candidate = candidate
        job.save(update_fields=["candidate", "artefacts"])
        return candidate

    def _encoder(self, kb: KnowledgeBase, train: Sequence[tuple[str, Entry | None]]) -> str:
        """The candidate's encoder: fine-tuned on the training slice when enabled and there is enough of it (its index
        then held in ``self.shadow`` for calibration and the gate), else the one the knowledge base uses now."""
        index.encoder_of(kb)  # kb.encoder as the database has it now
        current = kb.encoder
        why_not = finetune.can_fine_tune(kb)
        # "fine_tuning": what jobs started by the previous release wrote instead
        if why_not is None and ("fine_tuned_version" in self.job.artefacts or "fine_tuning" in self.job.artefacts):
            why_not = "this job already compared a fine-tuned candidate with this one"
        confirmed = sum(1 for _, entry in train if entry is not None)
        if why_not is None and confirmed < settings.LEARNING_FINE_TUNE_MIN_EXAMPLES:
            why_not = f"{confirmed} confirmed examples, fewer than LEARNING_FINE_TUNE_MIN_EXAMPLES"
        if why_not is not None:
            if settings.LEARNING_FINE_TUNE:
                self.say(f"encoder not fine-tuned: {why_not}")
            return current
        self.say(f"fine-tuning the encoder on {confirmed} confirmed examples and the FAQ", 38, "fine-tuning")
        spec = finetune.fine_tune(finetune.training_pairs(kb, train), self.say)
        self.job.artefacts["encoder"] = spec
        self.shadow = index.shadow(kb, spec)
        self.say(
            f"knowledge base indexed with the fine-tuned encoder, in memory ({len(self.shadow.snapshot.kinds)} texts)"
        )
        return spec


def _can_calibrate(calibration: Sequence[tuple[str, Entry | None]]) -> bool:
    return len(calibration) >= MIN_CALIBRATION_ROWS and any(entry is None for _, entry in calibration)


def _model_of(version: RoutingVersion) -> Any:
    from knowledge import routing

    return routing.load_model(version.knowledge_base, version.model)


def run_job(job: RetrainingJob) -> RetrainingJob:
    """Run (or resume) ``job``. Any error leaves it failed, with the error, and the live version untouched.

    A job that is not queued or failed (running elsewhere, finished) is returned as it is, untouched."""
    if job.status in RetrainingJob.FINISHED:
        return job
    if not claim(job):
        job.refresh_from_db()
        return job
    runner = Runner(job)
    try:
        with Heartbeat(job):
            return runner.run()
    except JobLost:
        logger.warning("retraining job taken over or changed while it ran; stopped", extra={"job": job.pk})
        job.refresh_from_db()
        return job
    except Exception as exc:
        logger.exception("retraining failed", extra={"job": job.pk})
        _owned(job, Status.RUNNING).update(
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
