"""`manage.py retrain --kb SLUG`: retrain one knowledge base now (inline, or on a worker with --enqueue).

`--resume JOB` runs a failed job again (or a running one whose worker died: no heartbeat for
LEARNING_JOB_STALE_MINUTES). It exits non-zero, saying why, when the job cannot be resumed or does not
end promoted or refused.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge.models import KnowledgeBase
from learning.models import RetrainingJob


class Command(BaseCommand):
    help = "Retrain a knowledge base's routing from its labelled conversations; promote it if the gate agrees."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kb", required=True, help="knowledge base slug")
        parser.add_argument("--enqueue", action="store_true", help="hand the job to a Celery worker and return")
        parser.add_argument("--resume", type=int, metavar="JOB", help="run a failed (or stale) job again")

    def handle(self, *args: Any, **options: Any) -> None:
        from learning import retraining

        kb = KnowledgeBase.objects.filter(slug=options["kb"]).first()
        if kb is None:
            raise CommandError(f"There is no knowledge base called {options['kb']!r}.")
        for stale in retraining.fail_stale_jobs(kb):
            self.stderr.write(f"job #{stale} had lost its worker (no heartbeat): marked failed")
        if options["resume"]:
            job = RetrainingJob.objects.filter(pk=options["resume"], knowledge_base=kb).first()
            if job is None:
                raise CommandError(f"{kb.slug} has no job #{options['resume']}.")
            if options["enqueue"]:
                reason = retraining.resume_job(job)
                if reason is not None:
                    raise CommandError(f"Cannot resume: {reason}.")
                self.stdout.write(f"job #{job.pk} queued again")
                return
            reason = retraining.why_not_resumable(job)
            if reason is not None:
                raise CommandError(f"Cannot resume: {reason}.")
        else:
            job, created = retraining.request_job(kb, RetrainingJob.Trigger.COMMAND)
            if not created:
                raise CommandError(f"Job #{job.pk} is already {job.status} for {kb.slug}.")
            if options["enqueue"]:
                retraining.queue_job(job)
                self.stdout.write(f"job #{job.pk} queued")
                return
        try:
            job = retraining.run_job(job)
        except retraining.JobBusy as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(job.log.rstrip())
        self.stdout.write(f"job #{job.pk}: {job.status}")
        if job.status == RetrainingJob.Status.FAILED:
            raise CommandError(job.error.splitlines()[0] if job.error else "failed")
        if job.status not in RetrainingJob.FINISHED:
            raise CommandError(f"Job #{job.pk} did not run here: it is {job.status} (another process took it).")
