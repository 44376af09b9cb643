"""`manage.py retrain --kb SLUG`: retrain one knowledge base now (inline, or on a worker with --enqueue)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge.models import KnowledgeBase
from learning import actions
from learning.models import RetrainingJob


class Command(BaseCommand):
    help = "Retrain a knowledge base's routing from its labelled conversations; promote it if the gate agrees."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kb", required=True, help="knowledge base slug")
        parser.add_argument("--enqueue", action="store_true", help="hand the job to a Celery worker and return")
        parser.add_argument("--resume", type=int, metavar="JOB", help="run a failed job again")

    def handle(self, *args: Any, **options: Any) -> None:
        from learning.retraining import JobBusy, run_job

        kb = KnowledgeBase.objects.filter(slug=options["kb"]).first()
        if kb is None:
            raise CommandError(f"There is no knowledge base called {options['kb']!r}.")
        if options["resume"]:
            job = RetrainingJob.objects.filter(pk=options["resume"], knowledge_base=kb).first()
            if job is None:
                raise CommandError(f"{kb.slug} has no job #{options['resume']}.")
            created = True
        else:
            job, created = actions.request_retraining(kb, RetrainingJob.Trigger.COMMAND)
        if not created:
            raise CommandError(f"Job #{job.pk} is already {job.status} for {kb.slug}.")
        if options["enqueue"]:
            from learning.tasks import run_retraining_job

            run_retraining_job.delay(job.pk)
            self.stdout.write(f"job #{job.pk} queued")
            return
        try:
            job = run_job(job)
        except JobBusy as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(job.log.rstrip())
        self.stdout.write(f"job #{job.pk}: {job.status}")
        if job.status == RetrainingJob.Status.FAILED:
            raise CommandError(job.error.splitlines()[0] if job.error else "failed")
