"""The jobs end to end, against the simulator over real HTTP, tasks run eagerly."""

import pytest

from generation import pipeline, services
from generation.models import Job, LLMCall, PromptVersion, ReanswerAttempt, Run
from generation.selectors import reanswer_attempts_for_item
from medcot.lifecycle import Status, transition_many
from medcot.models import AuthorKind, Event, Item, ItemKind, RevisionStatus
from tests.factories import ItemFactory
from tests.generation.conftest import make_profile


def _start(django_capture_on_commit_callbacks, **kwargs):
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_start(**kwargs)
    run.refresh_from_db()
    return run


def test_it_drafts_a_cot_for_each_imported_seed(
    sim_profile, project, django_capture_on_commit_callbacks
):
    seed = ItemFactory(project=project)
    run = _start(django_capture_on_commit_callbacks, project=project, stage="cot")
    seed.refresh_from_db()
    assert seed.status == Status.GENERATED
    version = seed.current_version
    assert version.number == 2 and version.author_kind == AuthorKind.LLM
    assert version.cot and version.reasoning
    assert version.provenance["picked"] == "A" and version.provenance["matches_key"] is True
    prompt = PromptVersion.objects.get(pk=version.provenance["prompt_version"])
    assert (prompt.task, prompt.variant, prompt.language) == ("cot", "default", "en")
    call = LLMCall.objects.get(pk=version.provenance["llm_call"])
    assert call.outcome == "ok" and call.item_id == seed.pk and call.run_id == run.pk
    assert run.state == Run.State.DONE
    moves = list(
        Event.objects.filter(item=seed, kind="transition").values_list("from_status", "to_status")
    )
    assert moves == [("imported", "generating"), ("generating", "generated")]


def test_it_uses_the_chinese_prompt_for_a_chinese_item(
    sim_profile, project, django_capture_on_commit_callbacks
):
    seed = ItemFactory(
        project=project, language="zh", version__stem="患者男，54岁，胸痛40分钟。下一步？"
    )
    _start(django_capture_on_commit_callbacks, project=project, stage="cot")
    seed.refresh_from_db()
    prompt = PromptVersion.objects.get(pk=seed.current_version.provenance["prompt_version"])
    assert prompt.language == "zh"
    assert "选项" in LLMCall.objects.get(item=seed).messages[-1]["content"]


def test_a_redelivered_cot_job_creates_no_second_version(sim_profile, project):
    seed = ItemFactory(project=project)
    run = services.run_start(project=project, stage="cot")
    job = Job.objects.get(run=run)
    assert pipeline.job_execute(job_id=job.pk, claim="task-1") == "done"
    # The same message delivered again (same task id), and a stray duplicate (another id).
    assert pipeline.job_execute(job_id=job.pk, claim="task-1") == "skipped"
    assert pipeline.job_execute(job_id=job.pk, claim="task-2") == "skipped"
    assert seed.versions.count() == 2
    assert LLMCall.objects.filter(item=seed).count() == 1


def test_a_job_killed_mid_call_is_finished_by_its_redelivery(sim_profile, project):
    seed = ItemFactory(project=project)
    run = services.run_start(project=project, stage="cot")
    job = Job.objects.get(run=run)
    # What a worker killed during the model call leaves behind: the claim and the move.
    ctx = services.job_claim(job_id=job.pk, claim="task-1")
    assert services.cot_begin(ctx=ctx) is True
    assert pipeline.job_execute(job_id=job.pk, claim="task-2") == "skipped"
    assert pipeline.job_execute(job_id=job.pk, claim="task-1") == "done"
    seed.refresh_from_db()
    assert seed.status == Status.GENERATED and seed.versions.count() == 2


def test_a_seed_that_comes_with_a_cot_skips_generation(
    sim_profile, project, django_capture_on_commit_callbacks
):
    seed = ItemFactory(project=project, version__cot="Aspirin first because…")
    _start(django_capture_on_commit_callbacks, project=project, stage="cot")
    seed.refresh_from_db()
    assert seed.status == Status.GENERATED and seed.versions.count() == 1
    assert not LLMCall.objects.exists()


def test_it_expands_a_seed_into_its_family(
    sim_profile, project, django_capture_on_commit_callbacks
):
    project.expansion_factor = 4
    project.save()
    seed = ItemFactory(project=project, status=Status.GENERATED, version__cot="Because aspirin…")
    _start(django_capture_on_commit_callbacks, project=project, stage="expand")
    family = Item.objects.filter(family=seed).exclude(pk=seed.pk).order_by("external_id")
    assert family.count() == 3
    assert [i.external_id for i in family] == [f"{seed.external_id}~s{n}" for n in (1, 2, 3)]
    for sibling in family:
        assert sibling.kind == ItemKind.SYNTHETIC and sibling.status == Status.FIRST_REVIEW
        version = sibling.current_version
        assert version.number == 1 and version.author_kind == AuthorKind.LLM
        assert version.cot and version.answer in version.options
        assert version.provenance["task"] == "synthesize" and version.provenance["prompt_version"]
    seed.refresh_from_db()
    assert seed.status == Status.FIRST_REVIEW


def test_it_asks_for_a_few_spare_questions_and_keeps_only_what_the_family_needs(
    sim_profile, project, django_capture_on_commit_callbacks
):
    project.expansion_factor = 10
    project.save()
    seed = ItemFactory(project=project, status=Status.GENERATED, version__cot="Because aspirin…")
    _start(django_capture_on_commit_callbacks, project=project, stage="expand")
    first = LLMCall.objects.filter(item=seed, task="synthesize").order_by("id").first()
    # Nine needed, a quarter more asked for (rounded up): twelve.
    assert "Write 12 NEW multiple-choice questions" in first.messages[-1]["content"]
    assert Item.objects.filter(family=seed, kind=ItemKind.SYNTHETIC).count() == 9


def test_a_second_expansion_adds_nobody_to_a_complete_family(
    sim_profile, project, django_capture_on_commit_callbacks
):
    project.expansion_factor = 3
    project.save()
    seed = ItemFactory(project=project, status=Status.GENERATED, version__cot="Because…")
    run = services.run_start(project=project, stage="expand")
    job = Job.objects.get(run=run)
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.job_execute(job_id=job.pk, claim="t")
    with django_capture_on_commit_callbacks(execute=True):
        Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING)
        pipeline.job_execute(job_id=job.pk, claim="t")
    assert Item.objects.filter(family=seed, kind=ItemKind.SYNTHETIC).count() == 2


def test_it_drops_and_logs_near_duplicates(sim_profile, project):
    project.expansion_factor = 4
    project.save()
    seed = ItemFactory(project=project, status=Status.GENERATED, version__cot="Because…")
    other = ItemFactory(
        project=project,
        status=Status.GENERATED,
        version__stem=(
            "Which drug lowers mortality after a myocardial infarction in a diabetic patient?"
        ),
        version__option_a="Metoprolol",
        version__option_b="Nifedipine",
        version__option_c="Digoxin",
        version__option_d="Verapamil",
    )
    run = services.run_start(project=project, stage="expand")
    job = Job.objects.get(run=run, item=other)
    ctx = services.job_claim(job_id=job.pk, claim="t")
    services.expand_plan(ctx=ctx)
    seed_ctx = services.job_claim(job_id=Job.objects.get(run=run, item=seed).pk, claim="t")
    assert services.expand_plan(ctx=seed_ctx) == 3
    reworded = {
        "stem": "Which drug lowers mortality after a myocardial infarction in a diabetic patient ?",
        "options": {"A": "Nifedipine", "B": "Metoprolol", "C": "Verapamil", "D": "Digoxin"},
        "answer": "B",
        "cot": "Beta blockers…",
        "aspect": "mechanism",
    }
    fresh = {
        "stem": "A 30-year-old woman with a thyroid storm needs which first drug?",
        "options": {
            "A": "Propranolol",
            "B": "Levothyroxine",
            "C": "Iodine contrast",
            "D": "Aspirin",
        },
        "answer": "A",
        "cot": "Beta blockade first…",
        "aspect": "next step",
    }
    twin_of_fresh = dict(fresh, stem=fresh["stem"].replace("30-year-old", "30 year old"))
    from generation.client import TryRecord
    from generation.services import CallInfo

    call = CallInfo(
        record=TryRecord(1, "ok", "sim-x", 5),
        task="synthesize",
        messages=[],
        prompt_version_id=None,
    )
    plan = services.family_plan(ctx=seed_ctx, questions=[reworded, fresh, twin_of_fresh], need=3)
    stored = services.family_store(ctx=seed_ctx, call=call, plan=plan)
    assert (stored.created, stored.dropped, stored.complete) == (1, 2, False)
    logged = Event.objects.filter(kind="near_duplicate_dropped", item=seed)
    assert logged.count() == 2
    assert {e.data["similar_to"] for e in logged} == {
        other.pk,
        Item.objects.get(external_id=f"{seed.external_id}~s1").pk,
    }


def _reanswering(project, n=1):
    return [ItemFactory(project=project, status=Status.REANSWERING) for _ in range(n)]


def test_it_stops_re_answering_at_the_first_correct_answer(
    sim_profile, project, django_capture_on_commit_callbacks
):
    (item,) = _reanswering(project)
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.reanswer_enqueue(item_ids=[item.pk])
    item.refresh_from_db()
    assert item.status == Status.CONSENSUS
    (attempt,) = reanswer_attempts_for_item(item=item)
    assert attempt.number == 1 and attempt.correct and attempt.parsed
    assert attempt.answer == "A" and attempt.option_order == "ABCD"
    assert attempt.llm_call.task == "reanswer" and attempt.variant == "direct"


def test_five_strikes_send_the_item_to_the_panel(
    db, start_simulator, project, django_capture_on_commit_callbacks
):
    sim = start_simulator(accuracy=0.0)
    make_profile(sim.base_url)
    (item,) = _reanswering(project)
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.reanswer_enqueue(item_ids=[item.pk])
    item.refresh_from_db()
    assert item.status == Status.PANEL
    attempts = reanswer_attempts_for_item(item=item)
    assert [a.number for a in attempts] == [1, 2, 3, 4, 5]
    assert all(a.parsed and not a.correct and a.answer != "A" for a in attempts)
    assert [a.variant for a in attempts] == ["direct", "stepwise", "elimination", "exam", "direct"]
    assert attempts[0].option_order == "ABCD"
    assert len({a.option_order for a in attempts}) > 1
    for a in attempts:
        # The letter the model gave, in the order it saw, maps back to the item's letter.
        assert a.option_order["ABCD".index(a.raw_answer)] == a.answer
    event = Event.objects.get(item=item, to_status=Status.PANEL)
    assert event.reason == "5 re-answer attempts failed"


def test_an_unparseable_reply_is_retried_strictly_and_never_counted_wrong(
    db, start_simulator, project, django_capture_on_commit_callbacks
):
    sim = start_simulator(rate_malformed=1.0)
    make_profile(sim.base_url)
    project.reanswer_attempts = 2
    project.save()
    (item,) = _reanswering(project)
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.reanswer_enqueue(item_ids=[item.pk])
    item.refresh_from_db()
    attempts = reanswer_attempts_for_item(item=item)
    assert len(attempts) == 2 + services.UNPARSED_ALLOWANCE
    assert all(not a.parsed and not a.correct and a.answer == "" for a in attempts)
    assert [a.variant for a in attempts[1:]] == ["strict"] * (len(attempts) - 1)
    # Never a strike, so never the panel: the item waits in `error` for someone to look.
    assert item.status == Status.ERROR
    assert "could not be parsed" in item.status_reason


def test_a_redelivered_re_answer_job_adds_no_attempt(sim_profile, project):
    (item,) = _reanswering(project)
    pipeline.reanswer_enqueue(item_ids=[item.pk])
    job = Job.objects.get(item=item, kind=Job.Kind.REANSWER)
    assert pipeline.job_execute(job_id=job.pk, claim="m1") == "done"
    Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING)
    assert pipeline.job_execute(job_id=job.pk, claim="m1") == "done"
    assert ReanswerAttempt.objects.filter(item=item).count() == 1


def test_reanswer_enqueue_is_idempotent(sim_profile, project):
    items = _reanswering(project, n=2)
    ids = [i.pk for i in items]
    pipeline.reanswer_enqueue(item_ids=ids)
    pipeline.reanswer_enqueue(item_ids=ids)
    assert Job.objects.filter(kind=Job.Kind.REANSWER).count() == 2
    run = Run.objects.get()
    assert run.hands_off and run.stage == "reanswer"


def test_a_failure_after_retries_moves_the_item_to_error_with_a_retry_action(
    db, start_simulator, project, django_capture_on_commit_callbacks
):
    broken = start_simulator(rate_500=1.0)
    profile = make_profile(broken.base_url, max_retries=1)
    seed = ItemFactory(project=project)
    run = _start(django_capture_on_commit_callbacks, project=project, stage="cot")
    seed.refresh_from_db()
    job = Job.objects.get(run=run)
    assert seed.status == Status.ERROR and "Gave up after 2 tries" in seed.status_reason
    assert job.state == Job.State.ERROR and job.error == seed.status_reason
    assert LLMCall.objects.filter(item=seed, outcome="transient").count() == 2
    assert run.state == Run.State.DONE

    healthy = start_simulator()
    profile.base_url = healthy.base_url
    profile.save()
    from generation import client

    client.clients_reset()
    services.run_facts_clear()  # workers see a profile edit within RUN_FACTS_SECONDS
    with django_capture_on_commit_callbacks(execute=True):
        services.job_retry(job=job)
    seed.refresh_from_db()
    assert seed.status == Status.GENERATED
    job.refresh_from_db()
    assert job.state == Job.State.DONE


def test_a_402_pauses_the_run_with_a_clear_message(
    db, start_simulator, project, django_capture_on_commit_callbacks
):
    sim = start_simulator(rate_402=1.0)
    make_profile(sim.base_url)
    seed = ItemFactory(project=project)
    run = _start(django_capture_on_commit_callbacks, project=project, stage="cot")
    assert run.state == Run.State.PAUSED
    assert "402" in run.message and "resume" in run.message
    job = Job.objects.get(run=run)
    assert job.state == Job.State.QUEUED
    seed.refresh_from_db()
    assert seed.status == Status.GENERATING
    assert LLMCall.objects.filter(outcome="payment").count() == 1


def test_pause_holds_jobs_and_resume_finishes_them(
    sim_profile, project, django_capture_on_commit_callbacks
):
    seeds = [ItemFactory(project=project) for _ in range(2)]
    run = services.run_start(project=project, stage="cot")
    services.run_pause(run=run)
    for job in Job.objects.filter(run=run):
        assert pipeline.job_execute(job_id=job.pk, claim="t") == "skipped"
    assert set(Job.objects.values_list("state", flat=True)) == {Job.State.QUEUED}
    with django_capture_on_commit_callbacks(execute=True):
        services.run_resume(run=run)
    run.refresh_from_db()
    assert run.state == Run.State.DONE
    assert {s.status for s in Item.objects.filter(pk__in=[s.pk for s in seeds])} == {
        Status.GENERATED
    }


def test_cancel_drops_queued_work(sim_profile, project):
    seed = ItemFactory(project=project)
    run = services.run_start(project=project, stage="cot")
    services.run_cancel(run=run)
    job = Job.objects.get(run=run)
    assert job.state == Job.State.CANCELLED
    assert pipeline.job_execute(job_id=job.pk, claim="t") == "skipped"
    seed.refresh_from_db()
    assert seed.status == Status.IMPORTED


def test_guided_regeneration_appends_a_modified_version(
    sim_profile, project, expert_a, django_capture_on_commit_callbacks
):
    item = ItemFactory(project=project, status=Status.PANEL_REVIEW, version__cot="Old reasoning.")
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.regenerate_enqueue(
            item_id=item.pk, guidance="Explain why B is unsafe.", actor_id=expert_a.pk
        )
    item.refresh_from_db()
    assert item.status == Status.PANEL_REVIEW
    assert item.revision_status == RevisionStatus.MODIFIED
    version = item.current_version
    assert version.number == 2 and version.author_kind == AuthorKind.LLM_GUIDED
    assert version.cot != "Old reasoning." and version.provenance["guidance"]
    event = Event.objects.get(item=item, kind="regenerated")
    assert event.actor == expert_a and event.data["version"] == 2
    job = Job.objects.get(kind=Job.Kind.REGENERATE)
    Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING, claim="x")
    pipeline.job_execute(job_id=job.pk, claim="x")
    assert item.versions.count() == 2


@pytest.mark.parametrize(
    ("status", "guidance", "message"),
    [
        (Status.PANEL_REVIEW, "   ", "comments"),
        (Status.FIRST_REVIEW, "Fix it", "panel review"),
    ],
)
def test_guided_regeneration_refuses_bad_requests(sim_profile, project, status, guidance, message):
    item = ItemFactory(project=project, status=status)
    with pytest.raises(services.GenerationError, match=message):
        pipeline.regenerate_enqueue(item_id=item.pk, guidance=guidance, actor_id=None)


def test_the_hands_off_run_carries_seeds_through_to_consensus(
    sim_profile, project, django_capture_on_commit_callbacks
):
    project.expansion_factor = 3
    project.save()
    for _ in range(2):
        ItemFactory(project=project)
    run = _start(django_capture_on_commit_callbacks, project=project, stage="all")
    assert run.hands_off and run.state == Run.State.RUNNING
    items = Item.objects.filter(project=project)
    assert items.count() == 6
    assert set(items.values_list("status", flat=True)) == {Status.FIRST_REVIEW}
    # The reviewers pass everything; the open run picks the items up.
    ids = list(items.values_list("pk", flat=True))
    transition_many(ids, Status.FIRST_REVIEW, Status.REANSWERING)
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.reanswer_enqueue(item_ids=ids)
    assert set(items.values_list("status", flat=True)) == {Status.CONSENSUS}
    assert Job.objects.filter(run=run, kind=Job.Kind.REANSWER).count() == 6


def test_option_orders_map_back(db):
    labels = ["A", "B", "C", "D", "E"]
    assert pipeline.option_order_for(item_id=1, number=1, labels=labels) == labels
    for number in range(2, 7):
        order = pipeline.option_order_for(item_id=1, number=number, labels=labels)
        assert sorted(order) == labels and order != labels
        assert order == pipeline.option_order_for(item_id=1, number=number, labels=labels)


def test_run_start_refuses_an_unknown_stage(project):
    with pytest.raises(services.GenerationError, match="Unknown stage"):
        services.run_start(project=project, stage="everything")


def test_item_retry_finds_the_failed_job(db, start_simulator, project, admin_user):
    profile = make_profile(start_simulator(rate_500=1.0).base_url, max_retries=0)
    (item,) = _reanswering(project)
    pipeline.reanswer_enqueue(item_ids=[item.pk])
    job = Job.objects.get(item=item)
    assert pipeline.job_execute(job_id=job.pk, claim="t") == "error"
    item.refresh_from_db()
    assert item.status == Status.ERROR
    services.item_retry(item=item, actor=admin_user)
    item.refresh_from_db()
    job.refresh_from_db()
    assert item.status == Status.REANSWERING and job.state == Job.State.QUEUED
    assert Event.objects.filter(item=item, to_status=Status.REANSWERING, actor=admin_user).exists()
    with pytest.raises(services.GenerationError, match="No failed"):
        services.item_retry(item=item)
    assert profile.calls.filter(outcome="transient").count() == 1
