import pytest
from django.core.management import CommandError, call_command

from medcot.lifecycle import Status
from tests.factories import ItemFactory


@pytest.mark.django_db(transaction=True)
def test_it_runs_a_stage_and_prints_progress(sim_profile, project, capsys):
    # A transactional test: jobs dispatch on commit and run eagerly while the command waits.
    seeds = [ItemFactory(project=project) for _ in range(3)]
    call_command("run_pipeline", project=project.slug, stage="cot", wait=True, interval=0.05)
    out = capsys.readouterr().out
    assert "3 jobs" in out and "(simulated)" in out
    assert "cot        [##############################] 3/3" in out
    assert "3 calls" in out
    for seed in seeds:
        seed.refresh_from_db()
        assert seed.status == Status.GENERATED


def test_it_refuses_an_unknown_project_or_profile(sim_profile, project):
    with pytest.raises(CommandError, match="No project"):
        call_command("run_pipeline", project="nope", stage="cot")
    with pytest.raises(CommandError, match="No LLM profile"):
        call_command("run_pipeline", project=project.slug, stage="cot", profile="nope")
