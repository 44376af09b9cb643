"""Ingestion keeps the index equal to what the sources say: no duplicates, nothing lost to bad input."""

from __future__ import annotations

import pytest

from knowledge import index
from knowledge.actions import set_entry_enabled, sync_source
from knowledge.models import Entry, Example, KnowledgeBase, Source
from knowledge.routing import route
from knowledge.vocabulary import HandoverReason

pytestmark = pytest.mark.django_db

FAQ = [
    {"id": "ship", "question": "How much does shipping cost?", "answer": "Shipping costs 4.95 euros."},
    {"id": "return", "question": "How do I return a product?", "answer": "Start a return from My orders."},
    {"id": "hours", "question": "When is customer service open?", "answer": "Monday to Friday, 9:00 to 18:00."},
]
EXTRA = {"id": "gift", "question": "Do you sell gift cards?", "answer": "Yes, from 10 to 200 euros, in any shop."}


def _indexed_ids(kb) -> set[str]:
    return set(index.collection_for(kb).get(include=[])["ids"] or [])


def test_first_ingestion_adds_every_entry_and_indexes_it(kb, write_faq, ingest):
    source, report = ingest(write_faq(FAQ))
    assert (report.added, report.updated, report.unchanged, report.removed) == (3, 0, 0, 0)
    assert source.entries.count() == 3
    source.refresh_from_db()
    assert source.status == Source.Status.OK
    assert source.last_synced_at is not None
    assert {i.split(":")[0] for i in _indexed_ids(kb)} == {
        str(pk) for pk in source.entries.values_list("pk", flat=True)
    }


def test_re_ingesting_the_same_file_adds_nothing(kb, write_faq, ingest):
    path = write_faq(FAQ)
    ingest(path)
    before = _indexed_ids(kb)
    _, report = ingest(path)
    assert (report.added, report.updated, report.unchanged) == (0, 0, 3)
    assert Entry.objects.filter(knowledge_base=kb).count() == 3
    assert _indexed_ids(kb) == before


def test_a_changed_entry_is_updated_in_place(kb, write_faq, ingest):
    source, _ = ingest(write_faq(FAQ))
    original = source.entries.get(key="ship")
    changed = [dict(FAQ[0], answer="Shipping is free on every order."), *FAQ[1:]]
    _, report = ingest(write_faq(changed))
    assert (report.added, report.updated, report.unchanged) == (0, 1, 2)
    updated = source.entries.get(key="ship")
    assert updated.pk == original.pk
    assert updated.answer == "Shipping is free on every order."
    documents = index.collection_for(kb).get(where={"entry_id": updated.pk}, include=["documents"])["documents"] or []
    assert any("free on every order" in doc for doc in documents)
    assert not any("4.95" in doc for doc in documents)


def test_an_entry_removed_from_the_file_is_removed_from_the_index(kb, write_faq, ingest):
    source, _ = ingest(write_faq(FAQ))
    gone = source.entries.get(key="hours").pk
    _, report = ingest(write_faq(FAQ[:2]))
    assert report.removed == 1
    assert not Entry.objects.filter(pk=gone).exists()
    assert not any(i.startswith(f"{gone}:") for i in _indexed_ids(kb))


def test_a_broken_upload_never_deletes_what_is_already_answerable(kb, write_faq, ingest, tmp_path):
    path = write_faq(FAQ)
    source, _ = ingest(path)
    path.write_text('{"id": "ship", "question": "How much does shipping cost?", "answer": "4.95"}\n{not json\n')
    _, report = ingest(path)
    assert report.issues
    assert source.entries.count() == 3  # "return" and "hours" were missing from the broken file but are kept
    source.refresh_from_db()
    assert source.status == Source.Status.PARTIAL
    assert any("line 2" in issue["location"] or "line 2" in issue["message"] for issue in source.issues)


def test_an_empty_file_changes_nothing_and_says_why(kb, write_faq, ingest):
    path = write_faq(FAQ)
    source, _ = ingest(path)
    path.write_text("")
    _, report = ingest(path)
    assert report.status == Source.Status.FAILED
    assert source.entries.count() == 3
    assert "empty" in report.issues[0].message


def test_a_file_over_the_size_limit_is_refused_without_loss(kb, write_faq, ingest, settings):
    path = write_faq(FAQ)
    source, _ = ingest(path)
    settings.KNOWLEDGE_MAX_FILE_BYTES = 100
    _, report = ingest(path)
    assert report.status == Source.Status.FAILED
    assert "limit" in report.issues[0].message
    assert source.entries.count() == 3


def test_a_missing_file_is_reported_and_nothing_changes(kb, write_faq, ingest):
    path = write_faq(FAQ)
    source, _ = ingest(path)
    path.unlink()
    report = sync_source(source)
    assert report.status == Source.Status.FAILED
    assert "not found" in report.issues[0].message
    assert source.entries.count() == 3


def test_duplicate_ids_keep_the_first_and_report_the_rest(kb, write_faq, ingest):
    _, report = ingest(write_faq([*FAQ, dict(FAQ[0], answer="A second answer for the same id.")]))
    assert report.added == 3
    assert any("duplicate" in issue.message for issue in report.issues)


def test_the_same_entry_in_two_sources_is_not_indexed_twice(kb, write_faq, ingest):
    ingest(write_faq(FAQ, "a.jsonl"))
    _, report = ingest(write_faq(FAQ[:1], "b.jsonl"))
    assert report.added == 0
    assert "same as an entry" in report.issues[0].message
    assert Entry.objects.filter(knowledge_base=kb).count() == 3


def test_an_oversized_entry_is_skipped_with_a_clear_issue(kb, write_faq, ingest, settings):
    settings.KNOWLEDGE_MAX_ENTRY_CHARS = 200
    _, report = ingest(write_faq([*FAQ, {"id": "long", "question": "Long?", "answer": "x " * 300}]))
    assert report.added == 3
    assert any("KNOWLEDGE_MAX_ENTRY_CHARS" in issue.message for issue in report.issues)


def test_a_disabled_entry_is_never_answered_again(kb, write_faq, ingest):
    source, _ = ingest(write_faq(FAQ))
    ship = source.entries.get(key="ship")
    assert route(kb, "How much does shipping cost?").entry == ship
    set_entry_enabled(ship, False)
    decision = route(kb, "How much does shipping cost?")
    assert decision.entry != ship
    assert not any(i.startswith(f"{ship.pk}:") for i in _indexed_ids(kb))


def test_an_english_question_finds_a_spanish_entry(kb, write_faq, ingest):
    source, _ = ingest(
        write_faq(
            [
                {"id": "envio", "question": "¿Cuánto cuesta el envío?", "answer": "El envío cuesta 4,95 €."},
                {"id": "clave", "question": "He olvidado mi contraseña", "answer": "Usa el enlace de la web."},
            ]
        )
    )
    decision = route(kb, "how much is shipping?")
    assert decision.candidates[0].entry_id == source.entries.get(key="envio").pk


def test_a_request_for_a_person_is_routed_to_a_person(kb, write_faq, ingest):
    ingest(write_faq(FAQ))
    assert route(kb, "pásame con un agente, por favor").reason == HandoverReason.HUMAN_REQUEST


def test_changing_the_embedding_model_rebuilds_a_clean_index(kb, write_faq, ingest, monkeypatch):
    from knowledge import embeddings

    source, _ = ingest(write_faq(FAQ))
    old_collection = kb.collection_name
    encoder = embeddings.get_encoder()
    monkeypatch.setattr(encoder.backend, "name", "another-model")
    kb.refresh_from_db()
    collection = index.collection_for(kb)
    kb.refresh_from_db()
    assert kb.index_embedding_model == "another-model"
    assert kb.collection_name != old_collection
    assert collection.metadata["embedding_model"] == "another-model"
    assert {i.split(":")[0] for i in collection.get(include=[])["ids"]} == {
        str(pk) for pk in source.entries.values_list("pk", flat=True)
    }
    from knowledge.vectorstore import get_client

    assert old_collection not in {c.name for c in get_client().list_collections()}


def test_what_another_process_writes_while_a_new_index_is_built_is_not_lost_at_the_switch(kb, write_faq, ingest):
    path = write_faq(FAQ)
    source, _ = ingest(path)
    elsewhere = KnowledgeBase.objects.get(pk=kb.pk)  # another process (a sync, the admin), reading before the build
    built = index.build(kb, "")  # a new collection, as promotion or a model change builds it

    # meanwhile, in the other process: an answer is edited, an entry added, one disabled, a phrasing learned
    ingest(write_faq([{**FAQ[0], "answer": "Shipping is free from 30 euros."}, *FAQ[1:], EXTRA]))
    set_entry_enabled(Entry.objects.get(source=source, key="hours"), False)
    phrasing = Example.objects.create(
        knowledge_base=kb, entry=Entry.objects.get(source=source, key="return"), text="can I send it back?"
    )
    index.index_examples(elsewhere, [phrasing])

    index.switch(kb, built)
    index.retire(kb, built)
    late = Entry.objects.get(source=source, key="return")  # a write in flight at the switch follows it
    late.answer += " Refunds take 5 days."
    late.content_hash = late.compute_hash()
    late.save()
    index.index_entries(elsewhere, [late])

    kb.refresh_from_db()
    assert elsewhere.collection_name == kb.collection_name
    stored = index.collection_for(kb).get(include=["documents", "metadatas"])
    entries = {m["entry_id"] for m in stored["metadatas"] or []}
    texts = " ".join(stored["documents"] or [])
    assert entries == set(Entry.objects.filter(source=source).answerable().values_list("pk", flat=True))
    assert "free from 30 euros" in texts
    assert "4.95" not in texts
    assert "Refunds take 5 days" in texts
    assert f"x{phrasing.pk}" in stored["ids"]  # also after its entry was re-indexed (an edit keeps its phrasings)
    answered = route(kb, "Do you sell gift cards?").entry
    assert answered is not None
    assert answered.key == "gift"


def test_ingestion_as_a_celery_task_records_progress(kb, write_faq, celery_eager):
    from knowledge.actions import source_for_location
    from knowledge.tasks import sync_source_task

    source = source_for_location(kb, str(write_faq(FAQ)))
    sync_source_task.delay(source.pk)
    source.refresh_from_db()
    assert source.status == Source.Status.OK
    assert (source.items_done, source.items_total) == (3, 3)


def test_the_task_returns_quietly_when_the_source_is_gone(celery_eager, db):
    from knowledge.tasks import sync_source_task

    sync_source_task.delay(123456)


def test_search_reports_plain_and_centred_cosines(kb, write_faq, ingest):
    source, _ = ingest(write_faq(FAQ))
    vector = index.get_encoder().embed(["how much is shipping?"], is_query=True)[0]
    hits = index.search(kb, vector, 3)
    assert len(hits) >= 3  # the 3 nearest by either measure
    assert all(h.centred is not None and -1.0 <= h.centred <= 1.0 for h in hits)
    assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)
    best = max(hits, key=lambda h: h.centred or 0.0)
    assert best.entry_id == str(source.entries.get(key="ship").pk)
    # a change to the index is seen by the next search: the entry's vectors are gone
    set_entry_enabled(source.entries.get(key="ship"), False)
    assert str(source.entries.get(key="ship").pk) not in {h.entry_id for h in index.search(kb, vector, 3)}


def test_centred_cosines_remove_each_role_mean():
    import numpy as np

    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(6, 4)) + 3.0
    matrix = (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)
    kinds = ["question", "phrasing", "question", "chunk", "chunk", "chunk"]
    query = rng.normal(size=4).astype(np.float32)
    centring = index._centre(matrix, kinds)
    assert centring is not None

    query_mean, passage_mean = matrix[:3].mean(axis=0), matrix[3:].mean(axis=0)
    rows = matrix - np.vstack([np.tile(query_mean, (3, 1)), np.tile(passage_mean, (3, 1))])
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    centred_query = (query - query_mean) / np.linalg.norm(query - query_mean)
    assert np.allclose(centring.cosines(matrix @ query, query), rows @ centred_query, atol=1e-5)
    assert index._centre(np.zeros((0, 4), dtype=np.float32), []) is None


def test_a_learned_phrasing_can_be_scored_as_if_it_were_not_indexed(kb, write_faq, ingest):
    from knowledge import routing

    source, _ = ingest(write_faq(FAQ))
    ship = source.entries.get(key="ship")
    text = "what do you charge to send a parcel to my flat"
    routing.add_examples(kb, [(text, ship)], origin="conversation")
    model = routing.train_model(kb)
    seen, unseen = (routing.score_texts(kb, model, [text], leave_self_out=flag)[0] for flag in (False, True))
    assert seen.features["sim"] > unseen.features["sim"]
    assert unseen.entry_id == str(ship.pk)


def test_a_message_reads_where_the_index_is_once_and_embeds_and_searches_there(kb, write_faq, ingest):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ingest(write_faq(FAQ))
    route(kb, "How much is shipping?")  # models and index loaded once per process
    with CaptureQueriesContext(connection) as queries:
        decision = route(kb, "How much is shipping?")
    assert decision.entry is not None
    reads = [q["sql"] for q in queries.captured_queries if '"index_revision"' in q["sql"] and "SELECT" in q["sql"]]
    assert len(reads) == 1, reads


def test_a_built_index_whose_switch_is_called_off_is_dropped_and_the_live_one_kept(kb, write_faq, ingest):
    from knowledge.vectorstore import get_client

    ingest(write_faq(FAQ))
    live = kb.collection_name
    before = {c.name for c in get_client().list_collections()}
    built = index.build(kb, "")  # as a promotion builds it for its candidate
    new = {c.name for c in get_client().list_collections()} - before
    assert len(new) == 1  # the built one, not yet switched to

    index.abandon(kb, built)  # the promotion was called off (ops made another version live meanwhile)

    kb.refresh_from_db()
    assert kb.collection_name == live
    assert {c.name for c in get_client().list_collections()} == before
    assert index.collection_for(kb).count() > 0
