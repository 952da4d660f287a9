"""Judge runs end to end: the stage scores items through the real client over HTTP against
the simulator's judge mode; scores are validated, stored apart from the experts' and logged."""

import pytest

from generation import judge, pipeline, services
from generation.models import Job, JudgeScore, LLMCall, PromptVersion, Run
from generation.parsing import ReplyFormatError
from llmsim.server import judge_truth
from medcot.lifecycle import Status
from review.models import RubricScore
from tests.factories import ItemFactory
from tests.generation.conftest import make_profile

SOUND = "Chest pain with ST elevation.\nAspirin and an ECG first.\nThe answer is (A)."
OFF_KEY = "Chest pain may be reflux.\nAn antacid trial helps.\nThe answer is (D)."


def _start(capture, **kwargs):
    with capture(execute=True):
        run = services.run_start(**kwargs)
    run.refresh_from_db()
    return run


def test_it_scores_each_item_with_a_cot_on_five_dimensions(
    sim_profile, project, django_capture_on_commit_callbacks
):
    sound = ItemFactory(project=project, status=Status.FIRST_REVIEW, version__cot=SOUND)
    wrong = ItemFactory(project=project, status=Status.PANEL_REVIEW, version__cot=OFF_KEY)
    ItemFactory(project=project, status=Status.IMPORTED)  # no CoT yet: not judged
    run = _start(django_capture_on_commit_callbacks, project=project, stage="judge")
    assert run.state == Run.State.DONE and run.stage == "judge"
    assert JudgeScore.objects.count() == 2
    # The session simulator agrees with its truth 80 % of the time per dimension; the truth of
    # an off-key CoT has medical correctness 0 from its last step.
    truth = judge_truth(key="A", concluded="D", steps=3, stem=wrong.current_version.stem)
    assert truth["scores"]["medical_correctness"] == 0 and truth["first_wrong_step"] == 3
    for item in (sound, wrong):
        score = JudgeScore.objects.get(item=item)
        assert score.version_id == item.current_version_id
        assert set(score.rationales) == set(score.scores())
        assert all("[simulated]" in text for text in score.rationales.values())
        assert score.model.startswith("sim-") and score.profile_id == sim_profile.pk
        prompt = PromptVersion.objects.get(pk=score.prompt_version_id)
        assert (prompt.task, prompt.variant, prompt.language) == ("judge", "default", "en")
        call = LLMCall.objects.get(pk=score.llm_call_id)
        assert call.task == "judge" and call.outcome == "ok" and call.run_id == run.pk
        assert "medical_correctness" in call.messages[-1]["content"]
        assert "[1]" in call.messages[-1]["content"]
    # Machine scores never become expert scores, and the items stay where they were.
    assert not RubricScore.objects.exists()
    sound.refresh_from_db()
    assert sound.status == Status.FIRST_REVIEW


def test_the_judge_profile_may_differ_from_the_drafting_one(
    sim_profile, simulator, project, django_capture_on_commit_callbacks
):
    other = make_profile(simulator.base_url, name="judge", model="sim-judge", is_default=False)
    item = ItemFactory(project=project, status=Status.CONSENSUS, version__cot=SOUND)
    _start(django_capture_on_commit_callbacks, project=project, stage="judge", profile=other)
    score = JudgeScore.objects.get(item=item)
    assert score.profile_id == other.pk and score.model == "sim-judge"
    # A second run with the same profile finds nothing left; the drafting profile may still judge.
    again = _start(
        django_capture_on_commit_callbacks, project=project, stage="judge", profile=other
    )
    assert again.jobs.count() == 0
    _start(django_capture_on_commit_callbacks, project=project, stage="judge")
    assert JudgeScore.objects.filter(item=item).count() == 2


def test_a_redelivered_judge_job_stores_no_second_score(sim_profile, project):
    ItemFactory(project=project, status=Status.FIRST_REVIEW, version__cot=SOUND)
    run = services.run_start(project=project, stage="judge")
    job = Job.objects.get(run=run)
    assert pipeline.job_execute(job_id=job.pk, claim="t-1") == "done"
    # The message comes again while the run is still open (say, the worker died before acking).
    Run.objects.filter(pk=run.pk).update(state=Run.State.RUNNING)
    Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING, claim="t-1")
    assert pipeline.job_execute(job_id=job.pk, claim="t-1") == "done"
    assert JudgeScore.objects.count() == 1
    assert LLMCall.objects.filter(task="judge").count() == 1


def test_a_chinese_item_gets_the_chinese_prompt_with_the_rubric(
    sim_profile, project, django_capture_on_commit_callbacks
):
    item = ItemFactory(
        project=project,
        language="zh",
        status=Status.FIRST_REVIEW,
        version__stem="患者男，54岁，胸痛40分钟。下一步？",
        version__cot="胸痛伴ST段抬高。\n答案：A",
    )
    _start(django_capture_on_commit_callbacks, project=project, stage="judge")
    score = JudgeScore.objects.get(item=item)
    assert PromptVersion.objects.get(pk=score.prompt_version_id).language == "zh"
    content = LLMCall.objects.get(item=item, task="judge").messages[-1]["content"]
    assert "评分" in content and "参考答案：A" in content
    assert all("该维度" in text for text in score.rationales.values())


def test_unusable_replies_are_logged_and_fail_the_job(
    start_simulator, project, django_capture_on_commit_callbacks
):
    sim = start_simulator(rate_malformed=1.0)
    make_profile(sim.base_url)
    ItemFactory(project=project, status=Status.FIRST_REVIEW, version__cot=SOUND)
    run = _start(django_capture_on_commit_callbacks, project=project, stage="judge")
    job = run.jobs.get()
    assert job.state == Job.State.ERROR and "unusable" in job.error
    calls = LLMCall.objects.filter(task="judge")
    assert calls.count() == 2 and all(c.error.startswith("Unusable reply: ") for c in calls)
    assert not JudgeScore.objects.exists()


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ("no json here", "no JSON object"),
        ('{"scores": {}}', "does not fit the schema"),
        (
            '{"scores": {"medical_correctness": 3, "reasoning_structure": 2, '
            '"information_sufficiency": 2, "terminology_clarity": 2, "clinical_utility": 2}, '
            '"rationales": {"medical_correctness": "", "reasoning_structure": "", '
            '"information_sufficiency": "", "terminology_clarity": "", "clinical_utility": ""}, '
            '"first_wrong_step": null, "answer": "A"}',
            "scores/medical_correctness",
        ),
    ],
)
def test_replies_are_validated_against_the_schema(reply, problem):
    with pytest.raises(ReplyFormatError, match=problem):
        judge.parse_judgement(reply, options={"A": "a", "B": "b"}, steps=3)


def test_a_step_beyond_the_cot_or_an_absent_option_is_refused():
    base = (
        '{"scores": {"medical_correctness": 1, "reasoning_structure": 2, '
        '"information_sufficiency": 2, "terminology_clarity": 2, "clinical_utility": 2}, '
        '"rationales": {"medical_correctness": "a", "reasoning_structure": "b", '
        '"information_sufficiency": "c", "terminology_clarity": "d", "clinical_utility": "e"}, '
    )
    ok = judge.parse_judgement(
        "```json\n" + base + '"first_wrong_step": 2, "answer": "B"}\n```',
        options={"A": "a", "B": "b"},
        steps=3,
    )
    assert ok.scores["medical_correctness"] == 1 and ok.first_wrong_step == 2
    with pytest.raises(ReplyFormatError, match="step 9"):
        judge.parse_judgement(
            base + '"first_wrong_step": 9, "answer": "B"}', options={"A": "a", "B": "b"}, steps=3
        )
    with pytest.raises(ReplyFormatError, match="option E"):
        judge.parse_judgement(
            base + '"first_wrong_step": null, "answer": "E"}', options={"A": "a"}, steps=3
        )


@pytest.mark.django_db(transaction=True)
def test_run_pipeline_runs_the_judge_stage_with_its_own_profile(
    sim_profile, simulator, project, capsys
):
    from django.core.management import call_command

    make_profile(simulator.base_url, name="judge", model="sim-judge", is_default=False)
    items = [
        ItemFactory(project=project, status=Status.FIRST_REVIEW, version__cot=SOUND)
        for _ in range(3)
    ]
    call_command(
        "run_pipeline",
        project=project.slug,
        stage="judge",
        profile="judge",
        wait=True,
        interval=0.05,
    )
    out = capsys.readouterr().out
    assert "3 jobs" in out and "judge      [##############################] 3/3" in out
    assert sorted(JudgeScore.objects.values_list("item_id", flat=True)) == [i.pk for i in items]
    assert set(JudgeScore.objects.values_list("model", flat=True)) == {"sim-judge"}


def test_the_api_starts_a_judge_run_with_a_chosen_profile(
    sim_profile, simulator, project, admin_user, django_capture_on_commit_callbacks
):
    from tests.api.conftest import token_client

    other = make_profile(simulator.base_url, name="judge", model="sim-judge", is_default=False)
    item = ItemFactory(project=project, status=Status.CONSENSUS, version__cot=SOUND)
    with django_capture_on_commit_callbacks(execute=True):
        response = token_client(admin_user).post(
            f"/api/projects/{project.slug}/runs/",
            {"stage": "judge", "profile_id": other.pk},
            format="json",
        )
    assert response.status_code == 201, response.json()
    assert [s["kind"] for s in response.json()["stages"]] == ["judge"]
    assert JudgeScore.objects.get(item=item).profile_id == other.pk


def test_the_browser_run_form_offers_and_starts_the_judge_stage(
    sim_profile, project, admin_user, client, django_capture_on_commit_callbacks
):
    item = ItemFactory(project=project, status=Status.FIRST_REVIEW, version__cot=SOUND)
    client.force_login(admin_user)
    page = client.get(f"/projects/{project.slug}/runs/").content.decode()
    assert 'value="judge"' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/projects/{project.slug}/runs/start/",
            {"stage": "judge", "profile": sim_profile.pk},
        )
    assert response.status_code in (200, 302)
    assert JudgeScore.objects.filter(item=item).count() == 1


def test_the_simulated_judge_agrees_with_its_truth_as_configured(
    start_simulator, project, django_capture_on_commit_callbacks
):
    perfect = start_simulator(judge_agreement=1.0)
    profile = make_profile(perfect.base_url)
    items = [
        ItemFactory(
            project=project,
            status=Status.FIRST_REVIEW,
            version__stem=f"Patient {n} has chest pain. Next step?",
            version__cot=OFF_KEY if n % 2 else SOUND,
        )
        for n in range(6)
    ]
    _start(django_capture_on_commit_callbacks, project=project, stage="judge", profile=profile)
    for item in items:
        version = item.current_version
        concluded = "D" if version.cot == OFF_KEY else "A"
        truth = judge_truth(key="A", concluded=concluded, steps=3, stem=version.stem)
        score = JudgeScore.objects.get(item=item)
        assert score.scores() == truth["scores"]
        assert score.first_wrong_step == truth["first_wrong_step"] and score.answer == "A"
