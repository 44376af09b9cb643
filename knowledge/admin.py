"""Ops manage knowledge here: upload sources, watch sync progress, edit or disable entries."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, JsonResponse
from django.template.defaultfilters import filesizeformat
from django.urls import URLPattern, path
from django.utils.html import format_html, format_html_join

from knowledge import actions, parsers
from knowledge.embeddings import encoder_label
from knowledge.integrity import describe
from knowledge.models import Entry, Example, KnowledgeBase, RoutingVersion, Source


def enqueue_sync(source: Source) -> None:
    from knowledge.tasks import sync_source_task

    Source.objects.filter(pk=source.pk).update(status=Source.Status.QUEUED)
    transaction.on_commit(lambda: sync_source_task.delay(source.pk))


@admin.register(KnowledgeBase)
class KnowledgeBaseAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "default_language", "index_embedding_model", "entry_count")
    readonly_fields = ("index_embedding_model", "index_generation", "created_at")
    prepopulated_fields = {"slug": ("name",)}

    @admin.display(description="entries")
    def entry_count(self, kb: KnowledgeBase) -> int:
        return kb.entries.count()


SYNCING = (Source.Status.QUEUED, Source.Status.RUNNING)


def sync_state(source: Source) -> dict[str, Any]:
    """What the sources pages show of a sync, for their polling script (``SourceAdmin.status_view``)."""
    return {
        "id": source.pk,
        "status": source.status,
        "label": source.get_status_display(),
        "running": source.status in SYNCING,
        "progress": f"{source.items_done}/{source.items_total}" if source.status in SYNCING else "—",
    }


def format_help() -> dict[str, Any]:
    """The formats and column names ``knowledge.parsers`` accepts, for the help on the "Add source" form."""
    return {
        "extensions": " ".join(parsers.SUPPORTED_EXTENSIONS),
        "max_size": filesizeformat(settings.KNOWLEDGE_MAX_FILE_BYTES),
        "max_pages": settings.KNOWLEDGE_CRAWL_MAX_PAGES,
        "question_keys": parsers._QUESTION_KEYS,
        "answer_keys": parsers._ANSWER_KEYS,
        "id_keys": parsers._ID_KEYS,
        "language_keys": parsers._LANGUAGE_KEYS,
        "url_keys": parsers._URL_KEYS,
        "list_keys": parsers._ENTRY_LIST_KEYS,
    }


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ("name", "knowledge_base", "kind", "sync_status", "progress", "last_synced_at", "result")
    list_filter = ("knowledge_base", "kind", "status")
    search_fields = ("name", "location")
    readonly_fields = (
        "sync_status",
        "progress",
        "last_synced_at",
        "items_total",
        "items_done",
        "added",
        "updated",
        "unchanged",
        "removed",
        "held",
        "issue_report",
        "error",
        "created_at",
    )
    exclude = ("issues", "status")
    actions = ("resync",)
    change_form_template = "admin/knowledge/source/ops_change_form.html"
    change_list_template = "admin/knowledge/source/ops_change_list.html"

    def get_urls(self) -> list[URLPattern]:
        status = path("status/", self.admin_site.admin_view(self.status_view), name="knowledge_source_status")
        return [status, *super().get_urls()]

    def status_view(self, request: HttpRequest) -> JsonResponse:
        """The sync state of the sources whose ids the page asks for (``?id=1&id=2``)."""
        ids = [int(value) for value in request.GET.getlist("id") if value.isdigit()][:500]
        sources = self.get_queryset(request).filter(pk__in=ids)
        return JsonResponse({"sources": [sync_state(source) for source in sources]})

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial: dict[str, Any] = super().get_changeform_initial_data(request)
        if "knowledge_base" not in initial:
            only = list(KnowledgeBase.objects.values_list("pk", flat=True)[:2])
            if len(only) == 1:
                initial["knowledge_base"] = only[0]
        return initial

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        context["format_help"] = format_help()
        return super().render_change_form(request, context, *args, **kwargs)

    @admin.display(description="status")
    def sync_status(self, source: Source) -> str:
        return format_html(
            '<span data-sync-status="{}" data-state="{}">{}</span>',
            source.pk,
            source.status,
            source.get_status_display(),
        )

    @admin.display(description="progress")
    def progress(self, source: Source) -> str:
        return format_html('<span data-sync-progress="{}">{}</span>', source.pk, sync_state(source)["progress"])

    @admin.display(description="result of the last sync")
    def result(self, source: Source) -> str:
        counts = (
            f"{source.added} added, {source.updated} updated, {source.unchanged} unchanged, "
            f"{source.removed} removed, {source.held} held for review"
        )
        problems = len(source.issues or [])
        if source.error:
            return format_html("{}<br><strong>Error:</strong> {}", counts, source.error)
        if problems:
            return format_html(
                "{}<br>{} problem{} (open the source to read them)", counts, problems, "s"[problems == 1 :]
            )
        return counts

    @admin.display(description="problems in the last sync")
    def issue_report(self, source: Source) -> str:
        if not source.issues:
            return "none"
        return format_html(
            '<ul class="wrap">{}</ul>',
            format_html_join("", "<li><b>{}</b>: {}</li>", ((i["location"], i["message"]) for i in source.issues)),
        )

    def save_model(self, request: HttpRequest, obj: Source, form: Any, change: bool) -> None:
        if obj.upload and not obj.name:
            obj.name = obj.upload.name or ""
        super().save_model(request, obj, form, change)
        if obj.kind != Source.Kind.MANUAL and (obj.upload or obj.location):
            enqueue_sync(obj)
            messages.info(request, f"“{obj.name}” is being synced; its progress updates on this page.")

    @admin.action(description="Re-sync selected sources")
    def resync(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        for source in queryset.exclude(kind=Source.Kind.MANUAL):
            enqueue_sync(source)
        messages.info(request, "Re-sync queued.")


class HeldForReviewFilter(admin.SimpleListFilter):
    title = "held for review"
    parameter_name = "held"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Held for review"), ("no", "Not held")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Entry]) -> QuerySet[Entry]:
        if self.value() == "yes":
            return queryset.filter(status=Entry.Status.HELD)
        if self.value() == "no":
            return queryset.exclude(status=Entry.Status.HELD)
        return queryset


@admin.register(Entry)
class EntryAdmin(admin.ModelAdmin):
    list_display = (
        "question",
        "kind",
        "language",
        "source",
        "enabled",
        "status",
        "review",
        "duplicate_flag",
        "updated_at",
    )
    list_filter = (HeldForReviewFilter, "knowledge_base", "kind", "language", "enabled", "status", "source")
    search_fields = ("question", "answer", "key")
    readonly_fields = (
        "review_reasons",
        "content_hash",
        "indexed_hash",
        "duplicate_of",
        "duplicate_score",
        "created_at",
        "updated_at",
    )
    exclude = ("review_flags",)
    actions = ("disable", "enable", "publish")
    list_select_related = ("source",)

    @admin.display(description="held for review")
    def review(self, entry: Entry) -> str:
        if entry.status != Entry.Status.HELD:
            return ""
        return f"⚠ {describe(entry.review_flags)}"

    @admin.display(description="why it is held for review")
    def review_reasons(self, entry: Entry) -> str:
        if not entry.review_flags:
            return "—"
        return format_html(
            "<ul>{}</ul>",
            format_html_join("", "<li><b>{}</b>: {}</li>", ((f["rule"], f["message"]) for f in entry.review_flags)),
        )

    @admin.display(description="possible duplicate")
    def duplicate_flag(self, entry: Entry) -> str:
        if entry.duplicate_of_id is None:
            return ""
        return f"⚠ #{entry.duplicate_of_id} ({entry.duplicate_score or 0:.2f})"

    def save_model(self, request: HttpRequest, obj: Entry, form: Any, change: bool) -> None:
        actions.save_entry(obj)

    def delete_model(self, request: HttpRequest, obj: Entry) -> None:
        actions.delete_entries(obj.knowledge_base, [obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Entry]) -> None:
        for kb_id in set(queryset.values_list("knowledge_base_id", flat=True)):
            kb = KnowledgeBase.objects.get(pk=kb_id)
            actions.delete_entries(kb, list(queryset.filter(knowledge_base=kb).values_list("pk", flat=True)))

    @admin.action(description="Disable: never answer from these entries")
    def disable(self, request: HttpRequest, queryset: QuerySet[Entry]) -> None:
        for entry in queryset:
            actions.set_entry_enabled(entry, False)

    @admin.action(description="Enable selected entries")
    def enable(self, request: HttpRequest, queryset: QuerySet[Entry]) -> None:
        for entry in queryset:
            actions.set_entry_enabled(entry, True)

    @admin.action(description="Publish: answer from these drafts and held entries (after review)")
    def publish(self, request: HttpRequest, queryset: QuerySet[Entry]) -> None:
        published = 0
        for entry in queryset.filter(status__in=[Entry.Status.DRAFT, Entry.Status.HELD]).select_related(
            "knowledge_base"
        ):
            reasons = describe(entry.review_flags)
            actions.publish_entry(entry)
            self.log_change(request, entry, f"Published after review ({reasons})" if reasons else "Published")
            published += 1
        messages.success(request, f"Published {published}: answerable from the next message.")


@admin.register(Example)
class ExampleAdmin(admin.ModelAdmin):
    list_display = ("text", "entry", "origin", "created_at")
    list_filter = ("knowledge_base", "origin")
    search_fields = ("text",)
    raw_id_fields = ("entry",)


@admin.register(RoutingVersion)
class RoutingVersionAdmin(admin.ModelAdmin):
    list_display = ("__str__", "is_active", "encoder_name", "created_at", "activated_at", "notes")
    list_filter = ("knowledge_base", "is_active")
    readonly_fields = (
        "knowledge_base",
        "number",
        "is_active",
        "encoder",
        "metrics",
        "created_at",
        "activated_at",
    )

    @admin.display(description="encoder")
    def encoder_name(self, version: RoutingVersion) -> str:
        return encoder_label(version.encoder)

    exclude = ("model",)
