"""Ops' side of the learning loop: turn logs, label review, retraining jobs, versions, customers' rights."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from knowledge.admin import KnowledgeBaseAdmin, RoutingVersionAdmin
from knowledge.embeddings import encoder_label
from knowledge.models import KnowledgeBase, RoutingVersion
from learning import actions, labels, retraining
from learning.models import LabelledExample, RetrainingJob, TurnLog


def _customers(queryset: QuerySet[TurnLog]) -> list[actions.Customer]:
    found = []
    for conversation in {log.conversation for log in queryset.select_related("conversation")}:
        if conversation.customer_email or conversation.customer_ref:
            found.append(actions.Customer(email=conversation.customer_email, ref=conversation.customer_ref))
    return found


@admin.register(TurnLog)
class TurnLogAdmin(admin.ModelAdmin):
    list_display = ("text", "language", "decision_reason", "entry", "confidence", "feedback", "escalated", "split")
    list_filter = ("knowledge_base", "language", "decision_reason", "escalated", "feedback", "split")
    search_fields = ("text", "reply_text")
    raw_id_fields = ("resolution_entry",)
    readonly_fields = [
        f.name for f in TurnLog._meta.fields if f.name not in ("resolution_entry", "confirmed_out_of_scope")
    ]
    actions = ("export_customers", "erase_customers")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # logs come from conversations only

    @admin.action(description="Export all data of these customers (right of access)", permissions=["view"])
    def export_customers(self, request: HttpRequest, queryset: QuerySet[TurnLog]) -> HttpResponse | None:
        customers = _customers(queryset)
        if not customers:
            messages.warning(request, "These conversations have no customer e-mail or id to export by.")
            return None
        data = [actions.export_customer(customer) for customer in customers]
        response = HttpResponse(json.dumps(data, indent=2, ensure_ascii=False), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="customer-data-{timezone.now():%Y%m%d%H%M}.json"'
        return response

    @admin.action(description="Erase all data of these customers (right of erasure)", permissions=["delete"])
    def erase_customers(self, request: HttpRequest, queryset: QuerySet[TurnLog]) -> TemplateResponse | None:
        customers = _customers(queryset)
        if not customers:
            messages.warning(request, "These conversations have no customer e-mail or id to erase by.")
            return None
        if request.POST.get("confirmed") != "yes":
            return TemplateResponse(
                request,
                "learning/confirm_erasure.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Erase customers' data?",
                    "customers": customers,
                    "queryset": queryset,
                    "action": "erase_customers",
                    "opts": self.model._meta,
                },
            )
        for customer in customers:
            result = actions.erase_customer(customer)
            self.message_user(
                request,
                f"Erased {customer.email or customer.ref}: {result.conversations} conversations, {result.turn_logs} "
                f"turn logs, {result.labelled_examples} labels, {result.learned_phrasings} learned phrasings; "
                f"{result.exports_rewritten} exports rewritten.",
                messages.SUCCESS,
            )
        return None


@admin.register(LabelledExample)
class LabelledExampleAdmin(admin.ModelAdmin):
    """Label review: confirm, reject, or correct the kind and entry (a correction is never re-derived)."""

    list_display = ("text", "kind", "entry", "rule", "status", "split", "language", "created_at")
    list_filter = ("knowledge_base", "kind", "rule", "status", "split", "language")
    search_fields = ("text",)
    raw_id_fields = ("entry", "turn")
    readonly_fields = (
        "rule",
        "turn",
        "conversation_id",
        "split",
        "customer_email_hash",
        "customer_ref_hash",
        "reviewed_by",
        "reviewed_at",
        "created_at",
    )
    actions = ("confirm", "reject", "mark_out_of_scope")

    def save_model(self, request: HttpRequest, obj: LabelledExample, form: Any, change: bool) -> None:
        if change and {"kind", "entry"} & set(form.changed_data):
            labels.correct_label(obj, obj.kind, obj.entry, request.user)
        else:
            if not change:
                obj.rule, obj.status = LabelledExample.Rule.MANUAL, LabelledExample.Status.CONFIRMED
            super().save_model(request, obj, form, change)

    @admin.action(description="Confirm selected labels")
    def confirm(self, request: HttpRequest, queryset: QuerySet[LabelledExample]) -> None:
        count = labels.set_review(queryset, LabelledExample.Status.CONFIRMED, request.user)
        self.message_user(request, f"{count} labels confirmed.", messages.SUCCESS)

    @admin.action(description="Reject selected labels (never train on them)")
    def reject(self, request: HttpRequest, queryset: QuerySet[LabelledExample]) -> None:
        count = labels.set_review(queryset, LabelledExample.Status.REJECTED, request.user)
        self.message_user(request, f"{count} labels rejected.", messages.SUCCESS)

    @admin.action(description="Correct: no entry covers these questions")
    def mark_out_of_scope(self, request: HttpRequest, queryset: QuerySet[LabelledExample]) -> None:
        for label in queryset:
            labels.correct_label(label, LabelledExample.Kind.OUT_OF_SCOPE, None, request.user)
        self.message_user(request, "Marked as out of scope.", messages.SUCCESS)


def local_time(value: datetime | None) -> str:
    """One timezone on every job page: the project's TIME_ZONE, named."""
    if value is None:
        return "—"
    return f"{timezone.localtime(value):%Y-%m-%d %H:%M:%S} ({settings.TIME_ZONE})"


_LOG_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d) ")
_SERVER_PATH = re.compile(r"(?<![\w.])/(?:[\w.@-]+/)+[\w.@-]*")


def readable_log(job: RetrainingJob) -> str:
    """The job's log with its UTC clock times shown in TIME_ZONE and server paths left out."""
    day = (job.started_at or job.queued_at or job.created_at).astimezone(UTC).date()
    previous: datetime | None = None
    lines = []
    for line in job.log.splitlines():
        match = _LOG_TIME.match(line)
        if match:
            hour, minute, second = (int(part) for part in match.groups())
            moment = datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)
            if previous is not None and moment < previous:  # the log ran past midnight (UTC)
                moment += timedelta(days=1)
                day = moment.date()
            previous = moment
            line = f"{timezone.localtime(moment):%H:%M:%S} {line[match.end() :]}"
        lines.append(_SERVER_PATH.sub("(on the server)", line))
    return "\n".join(lines)


def start_retraining(model_admin: admin.ModelAdmin, request: HttpRequest, kb: KnowledgeBase) -> RetrainingJob:
    """ "Retrain now" from any admin page: fail stale jobs, then queue one job (or find the one already queued)."""
    for stale in retraining.fail_stale_jobs(kb):
        model_admin.message_user(
            request,
            f"{kb.name}: job #{stale} had lost its worker (no heartbeat); marked failed, it can be resumed.",
            messages.WARNING,
        )
    job, created = retraining.request_job(kb, RetrainingJob.Trigger.ADMIN, request.user)  # type: ignore[arg-type]
    if created:
        retraining.queue_job(job)
    state = "queued" if created else f"already {job.get_status_display().lower()}"
    model_admin.message_user(request, f"{kb.name}: retraining job #{job.pk} {state}.", messages.INFO)
    return job


@admin.register(RetrainingJob)
class RetrainingJobAdmin(admin.ModelAdmin):
    list_display = ("__str__", "trigger", "status", "progress", "stage", "candidate", "created", "finished")
    list_filter = ("knowledge_base", "status", "trigger")
    fieldsets = (
        (None, {"fields": ("knowledge_base", "status", "progress", "stage", "trigger", "triggered_by")}),
        ("Result", {"fields": ("figures", "candidate", "encoder", "baseline_version", "error")}),
        ("Times", {"fields": ("created", "queued", "started", "heartbeat", "finished", "window")}),
        ("Run", {"fields": ("attempts", "worker", "run_log")}),
    )
    readonly_fields = [
        "figures",
        "encoder",
        "created",
        "queued",
        "started",
        "heartbeat",
        "finished",
        "window",
        "run_log",
        *(f.name for f in RetrainingJob._meta.fields),
    ]
    actions = ("resume",)
    change_list_template = "admin/learning/retrainingjob/ops_change_list.html"
    change_form_template = "admin/learning/retrainingjob/ops_change_form.html"

    def get_urls(self) -> list[URLPattern]:
        retrain = path(
            "retrain/", self.admin_site.admin_view(require_POST(self.retrain_view)), name="learning_retrain_now"
        )
        return [retrain, *super().get_urls()]

    def retrain_view(self, request: HttpRequest) -> HttpResponse:
        """POST ``knowledge_base``: queue a job and show it."""
        kb = get_object_or_404(KnowledgeBase, pk=request.POST.get("knowledge_base") or 0)
        if not request.user.has_perm("knowledge.change_knowledgebase"):
            raise PermissionDenied
        job = start_retraining(self, request, kb)
        return HttpResponseRedirect(reverse("admin:learning_retrainingjob_change", args=[job.pk]))

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        context = {
            "knowledge_bases": KnowledgeBase.objects.order_by("name"),
            "can_retrain": request.user.has_perm("knowledge.change_knowledgebase"),
            "time_zone": settings.TIME_ZONE,
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        # A job is a record of a run: nothing on it is edited, so no Save buttons (actions stay on the list).
        context = {
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_save_as_new": False,
            "time_zone": settings.TIME_ZONE,
            **(extra_context or {}),
        }
        return super().changeform_view(request, object_id, form_url, context)

    @admin.display(description="created", ordering="created_at")
    def created(self, job: RetrainingJob) -> str:
        return local_time(job.created_at)

    @admin.display(description="queued")
    def queued(self, job: RetrainingJob) -> str:
        return local_time(job.queued_at)

    @admin.display(description="started")
    def started(self, job: RetrainingJob) -> str:
        return local_time(job.started_at)

    @admin.display(description="last sign of life")
    def heartbeat(self, job: RetrainingJob) -> str:
        return local_time(job.heartbeat_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, job: RetrainingJob) -> str:
        return local_time(job.finished_at)

    @admin.display(description="data window")
    def window(self, job: RetrainingJob) -> str:
        start = local_time(job.window_start) if job.window_start else "the beginning"
        return f"{start} → {local_time(job.window_end)}"

    @admin.display(description="log")
    @admin.display(description="candidate's encoder")
    def encoder(self, job: RetrainingJob) -> str:
        return encoder_label(job.candidate.encoder) if job.candidate else "–"

    def run_log(self, job: RetrainingJob) -> str:
        if not job.log:
            return "—"
        return format_html('<pre style="white-space:pre-wrap;margin:0">{}</pre>', readable_log(job))

    @admin.display(description="Candidate against the live version")
    def figures(self, job: RetrainingJob) -> str:
        """One row per evaluation set: live → candidate for each figure, then the gate's decision."""
        live, candidate = job.metrics.get("live") or {}, job.metrics.get("candidate") or {}
        if not live or not candidate:
            return "Not evaluated yet."

        def pct(value: float | None) -> str:
            return "–" if value is None else f"{value * 100:.1f}%"

        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{} → {}</td><td>{} → {}</td><td>{} → {}</td></tr>",
            (
                (
                    name,
                    before.get("n", 0),
                    pct(before.get("auto_resolution")),
                    pct(candidate.get(name, {}).get("auto_resolution")),
                    pct(before.get("wrong_answer_rate")),
                    pct(candidate.get(name, {}).get("wrong_answer_rate")),
                    pct(before.get("oos_recall")),
                    pct(candidate.get(name, {}).get("oos_recall")),
                )
                for name, before in live.items()
            ),
        )
        gate = job.metrics.get("gate") or {}
        verdict = "promote" if gate.get("promote") else "refused"
        if gate.get("confidence"):
            verdict += f" (refuses only when at least {gate['confidence']:.0%} sure the candidate is worse)"
        lines = [*gate.get("reasons", []), *gate.get("evidence", []), *gate.get("warnings", [])]
        tuned = job.metrics.get("fine_tuned")
        if tuned:  # the fine-tuned candidate against the same learning on the own encoder (gate rule 7)
            lines.insert(0, _fine_tune_line(tuned))
        notes = format_html_join("", "<li>{}</li>", ((line,) for line in lines))
        return format_html(
            '<table class="ops-figures"><thead><tr><th>set</th><th>questions</th><th>auto-resolution</th>'
            "<th>wrong answers</th><th>out-of-scope recall</th></tr></thead><tbody>{}</tbody></table>"
            "<p>Gate: <strong>{}</strong></p><ul>{}</ul>",
            rows,
            verdict,
            notes,
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs start from "Retrain now", the command or the schedule

    @admin.action(description="Run failed jobs again (resume)", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[RetrainingJob]) -> None:
        queued, skipped = [], []
        for job in queryset.select_related("knowledge_base").order_by("pk"):
            reason = retraining.resume_job(job)
            if reason is None:
                queued.append(f"#{job.pk}")
            else:
                skipped.append(reason)
        if queued:
            self.message_user(request, f"Queued again: {', '.join(queued)}.", messages.SUCCESS)
        if skipped:
            self.message_user(request, "Not queued: " + "; ".join(skipped) + ".", messages.WARNING)


admin.site.unregister(KnowledgeBase)


@admin.register(KnowledgeBase)
class LearningKnowledgeBaseAdmin(KnowledgeBaseAdmin):
    list_display: tuple[str, ...] = (*KnowledgeBaseAdmin.list_display, "retrain_button")  # type: ignore[assignment]
    actions = ("retrain_now",)
    change_form_template = "admin/learning/knowledgebase/ops_change_form.html"

    @admin.display(description="retraining")
    def retrain_button(self, kb: KnowledgeBase) -> str:
        # A submit button of the list's own form (it carries the CSRF token), aimed at the retrain view.
        return format_html(
            '<button type="submit" class="ops-button" formaction="{}" name="knowledge_base" value="{}">'
            "Retrain now</button>",
            reverse("admin:learning_retrain_now"),
            kb.pk,
        )

    @admin.action(description="Retrain now", permissions=["change"])
    def retrain_now(self, request: HttpRequest, queryset: QuerySet[KnowledgeBase]) -> None:
        for kb in queryset:
            start_retraining(self, request, kb)


admin.site.unregister(RoutingVersion)


@admin.register(RoutingVersion)
class LearningRoutingVersionAdmin(RoutingVersionAdmin):
    """Promote or roll back any version; the chat uses it from the next message."""

    actions = ("make_active",)

    @admin.action(description="Make this version live (promote or roll back)", permissions=["change"])
    def make_active(self, request: HttpRequest, queryset: QuerySet[RoutingVersion]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Pick exactly one version.", messages.ERROR)
            return
        version = queryset.get()
        try:
            if actions.needs_new_index(version):
                actions.check_available(version)
                self._activate_in_worker(request, version)
                return
            actions.activate_version(version, request.user)  # type: ignore[arg-type]
        except actions.VersionUnavailable as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.log_change(request, version, "Activated")
        self.message_user(request, f"{version} is live from the next message.", messages.SUCCESS)

    def _activate_in_worker(self, request: HttpRequest, version: RoutingVersion) -> None:
        """Another encoder: its whole index is built first, by a worker, while the live version keeps serving."""
        from learning.tasks import activate_version_task

        try:
            activate_version_task.delay(version.pk, request.user.pk)
        except Exception as exc:  # a broker outage: nothing changed
            self.message_user(
                request, f"Could not reach the task queue ({type(exc).__name__}); nothing changed.", messages.ERROR
            )
            return
        self.log_change(request, version, "Activation queued (index build)")
        self.message_user(
            request,
            f"{version} uses another encoder: a worker is building its index while the live version keeps serving. "
            "It goes live when the index is complete; this list shows it then.",
            messages.SUCCESS,
        )


def _fine_tune_line(tuned: dict[str, Any]) -> str:
    """What the job page says of a fine-tuned candidate and the head-only one it was put against (gate rule 7)."""
    own, other = f"v{tuned['version']}", f"v{tuned.get('head_only_version', '?')}"
    if tuned.get("chosen"):
        return f"{own}, on a fine-tuned encoder, is shown better than {other}, the same learning without fine-tuning"
    reasons = (tuned.get("versus_head_only") or {}).get("reasons") or (tuned.get("gate") or {}).get("reasons")
    why = "; ".join(reasons or []) or "not shown better"
    return f"{own}, on a fine-tuned encoder, was not chosen ({why}): this is {other}, the same learning without it"
