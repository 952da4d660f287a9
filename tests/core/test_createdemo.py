from django.contrib.auth import get_user_model
from django.core.management import call_command

from medcot.models import Project
from medcot.roles import roles_of


def test_it_makes_a_demo_project_in_both_languages_and_prints_the_logins(db, capsys):
    call_command("createdemo")
    out = capsys.readouterr().out
    project = Project.objects.get(slug="demo")
    languages = set(project.items.values_list("language", flat=True))
    assert languages == {"en", "zh"}
    assert project.items.filter(control__isnull=True).count() == 300
    # Control items seeded (review/quality): half should pass, half should fail.
    from review.quality.models import ControlItem

    controls = ControlItem.objects.filter(project=project)
    assert controls.count() == 12
    assert controls.filter(expected_valid=False).count() == 6
    for username in ("admin", "reviewer", "expert1", "expert2"):
        assert username in out
    assert "medcot-demo" in out
    User = get_user_model()
    assert roles_of(User.objects.get(username="admin")) == {"admin"}
    assert roles_of(User.objects.get(username="expert1")) == {"expert"}
    assert User.objects.get(username="expert1").medcot_profile.specialties
    assert User.objects.get(username="reviewer").check_password("medcot-demo")


def test_it_changes_nothing_when_run_again(db):
    call_command("createdemo")
    before = (Project.objects.get(slug="demo").items.count(), get_user_model().objects.count())
    call_command("createdemo")
    after = (Project.objects.get(slug="demo").items.count(), get_user_model().objects.count())
    assert before == after
