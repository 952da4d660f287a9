"""Building a release from the database: what goes in, what stays out, and identical rebuilds."""

import json
import zipfile
from pathlib import Path

import pytest
from django.conf import settings

from medcot.lifecycle import Status
from review.models import ConsensusVote
from review.releases.models import Release, ReleaseItem
from review.releases.services import (
    ReleaseError,
    release_build,
    release_create,
    release_directory,
    release_retry,
    release_write_files,
)

pytestmark = pytest.mark.django_db


def _build(project, admin_user, version="v1", **kwargs):
    release = release_create(
        project=project, version=version, actor=admin_user, dispatch=False, **kwargs
    )
    return release_build(release_id=release.pk)


def _ids(release):
    lines = (release_directory(release) / "data.jsonl").read_text().splitlines()
    return [json.loads(line)["item_id"] for line in lines]


def test_it_releases_only_approved_items_with_consensus(
    project, admin_user, make_item, expert_a, expert_b
):
    good = make_item()
    modified = make_item(modified=True, specialty="Neurology")
    excluded = [
        make_item(status=Status.DISCARDED),
        make_item(status=Status.CONSENSUS),
        make_item(status=Status.FIRST_REVIEW),
        make_item(status=Status.PANEL_REVIEW),
        # Approved, but only one expert holds the key correct.
        make_item(agreeing=1),
        # Approved, but one of the two does not approve the phrasing.
        make_item(agreeing=2),
    ]
    ConsensusVote.objects.filter(item=excluded[-1], expert=expert_b).delete()
    ConsensusVote.objects.create(
        item=excluded[-1],
        version=excluded[-1].current_version,
        expert=expert_b,
        answer="A",
        approve_phrasing=False,
    )

    release = _build(project, admin_user)

    assert release.state == Release.State.BUILT, release.error
    assert _ids(release) == [good.pk, modified.pk]
    assert release.item_count == 2
    assert release.excluded_without_consensus == 2
    assert set(ReleaseItem.objects.filter(release=release).values_list("item_id", flat=True)) == {
        good.pk,
        modified.pk,
    }


def test_it_writes_the_fields_the_dataset_needs_and_no_names(
    project, admin_user, make_item, expert_a, expert_b
):
    for user in (expert_a, expert_b, admin_user):
        user.email = f"{user.username}@hospital.example"
        user.save()
    item = make_item(
        attempts=5, panel_scores={expert_a: [2, 2, 1, 2, 2], expert_b: [2, 1, 1, 2, 2]}
    )
    release = _build(project, admin_user)
    directory = release_directory(release)
    [line] = (directory / "data.jsonl").read_text().splitlines()
    rec = json.loads(line)
    pseudonyms = sorted([expert_a.medcot_profile.pseudonym, expert_b.medcot_profile.pseudonym])
    assert rec["item_id"] == item.pk
    assert rec["seed_family_id"] == item.pk
    assert rec["question"] == item.current_version.stem
    assert rec["options"]["A"] == "Aspirin and ECG"
    assert rec["options"]["E"] is None
    assert rec["answer"] == "A"
    assert rec["cot"] == item.current_version.cot
    assert rec["revision_status"] == "unrevised"
    assert rec["first_pass_result"] == "pass"
    assert rec["first_pass_score"] == 1
    assert rec["reanswer_attempts"] == 5
    assert rec["first_correct_attempt"] is None
    assert rec["escalated"] is True
    assert rec["consensus_size"] == 2
    assert rec["consensus_experts"] == pseudonyms
    assert {(s["expert"], s["reasoning_structure"]) for s in rec["rubric_scores"]} == {
        (expert_a.medcot_profile.pseudonym, 2),
        (expert_b.medcot_profile.pseudonym, 1),
    }
    everything = b"".join(
        p.read_bytes() for p in directory.rglob("*") if p.is_file() and p.suffix != ".zip"
    )
    for user in (expert_a, expert_b, admin_user):
        assert user.username.encode() not in everything
        assert user.email.encode() not in everything
        assert user.medcot_profile.display_name.encode() not in everything
    assert b"hospital.example" not in everything


def test_it_rebuilds_byte_identical_files(project, admin_user, make_item, expert_a, expert_b):
    for i in range(7):
        make_item(
            specialty=["Cardiology", "Neurology", "心内科"][i % 3],
            panel_scores={expert_a: [2, 1, 2, 2, i % 3], expert_b: [2, 2, 2, 1, 1]}
            if i % 2
            else None,
        )
    release = _build(project, admin_user)
    first = release_directory(release)
    again = Path(settings.MEDIA_ROOT) / "again"
    result = release_write_files(release=release, directory=again, chunk_size=3)
    names = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert names == sorted(result["files"])
    for name in names:
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    assert result["files"] == release.files

    # Another version of the same approved set carries the very same data files.
    second = _build(project, admin_user, version="v1.1")
    for name in ("data.jsonl", "data.csv", "data.parquet", "chat.jsonl"):
        assert second.files[name] == release.files[name]


def test_it_freezes_the_item_set_and_never_changes_a_built_release(project, admin_user, make_item):
    make_item()
    release = _build(project, admin_user)
    files = dict(release.files)
    make_item()
    assert release_build(release_id=release.pk).files == files
    assert ReleaseItem.objects.filter(release=release).count() == 1
    assert release_retry(release=release) is False


def test_it_zips_every_file_with_the_checksums(project, admin_user, make_item):
    make_item()
    release = _build(project, admin_user)
    directory = release_directory(release)
    with zipfile.ZipFile(directory / release.zip_name) as archive:
        names = archive.namelist()
        prefix = f"{project.slug}-v1/"
        assert all(n.startswith(prefix) for n in names)
        inside = {n.removeprefix(prefix) for n in names}
        assert {
            "data.jsonl",
            "data.csv",
            "data.parquet",
            "chat.jsonl",
            "README.md",
            "agreement.json",
            "checksums.sha256",
            "charts/funnel.svg",
            "charts/specialty.svg",
            "charts/rubric_means.svg",
        } <= inside
        checksums = archive.read(prefix + "checksums.sha256").decode().splitlines()
    listed = {line.split("  ")[1]: line.split("  ")[0] for line in checksums}
    assert set(listed) == inside - {"checksums.sha256"}
    for name, digest in listed.items():
        assert release.files[name]["sha256"] == digest


def test_it_writes_a_dataset_card_with_yaml_header_funnel_and_agreement(
    project, admin_user, make_item, expert_a, expert_b
):
    make_item(panel_scores={expert_a: [2, 2, 2, 2, 2], expert_b: [2, 1, 2, 2, 1]})
    make_item(language="zh", specialty="心内科")
    make_item(status=Status.DISCARDED)
    release = _build(project, admin_user, license="cc-by-4.0")
    card = (release_directory(release) / "README.md").read_text()
    header, body = card.split("---\n", 2)[1:]
    assert 'license: "cc-by-4.0"' in header
    assert '- "en"\n- "zh"' in header
    assert "size_categories:\n- n<1K" in header
    assert "path: data.jsonl" in header
    assert "config_name: chat" in header
    assert "![Funnel](charts/funnel.svg)" in body
    assert "| Constructed (seeds and synthetic) | 3 |" in body
    assert "| Five-strike escalations to an expert panel | 1 |" in body
    assert "| Discarded | 1 | 33.3% of decided |" in body
    assert "ICC(2,1)" in body
    assert "Krippendorff's α (ordinal)" in body
    assert "| `consensus_experts` |" in body


def test_it_puts_a_diff_against_the_previous_release_in_the_zip(project, admin_user, make_item):
    a = make_item()
    make_item()
    first = _build(project, admin_user)
    c = make_item()
    second = _build(project, admin_user, version="v2")
    assert second.previous_id == first.pk
    diff = [
        json.loads(x) for x in (release_directory(second) / "diff.jsonl").read_text().splitlines()
    ]
    assert diff == [{"change": "added", "item_id": c.pk}]
    assert second.stats["diff"]["added"] == 1
    assert "1 added, 0 removed, 0 changed." in (release_directory(second) / "README.md").read_text()
    assert a.pk in _ids(second)


def test_it_refuses_a_bad_version_a_duplicate_and_an_empty_release(project, admin_user, make_item):
    with pytest.raises(ReleaseError, match="nothing to release"):
        release_create(project=project, version="v1", actor=admin_user, dispatch=False)
    make_item()
    with pytest.raises(ReleaseError, match="letters, digits"):
        release_create(project=project, version="../etc", actor=admin_user, dispatch=False)
    release_create(project=project, version="v1", actor=admin_user, dispatch=False)
    with pytest.raises(ReleaseError, match="already exists"):
        release_create(project=project, version="v1", actor=admin_user, dispatch=False)
    with pytest.raises(ReleaseError, match="Unknown filter"):
        release_create(
            project=project, version="v2", actor=admin_user, dispatch=False, filters={"x": []}
        )


def test_it_filters_by_specialty_language_and_type(project, admin_user, make_item):
    make_item(specialty="Cardiology")
    neuro = make_item(specialty="Neurology", language="zh")
    release = _build(
        project, admin_user, filters={"specialties": ["Neurology"], "languages": ["zh"]}
    )
    assert _ids(release) == [neuro.pk]
    assert release.filters == {"languages": ["zh"], "specialties": ["Neurology"]}


def test_it_records_a_failed_build_and_builds_on_retry(project, admin_user, make_item, settings):
    make_item()
    release = release_create(project=project, version="v1", actor=admin_user, dispatch=False)
    # A file where the release directory's parent must go makes the build fail.
    settings.MEDIA_ROOT.mkdir(parents=True)
    (settings.MEDIA_ROOT / "releases").write_text("not a directory")
    failed = release_build(release_id=release.pk)
    assert failed.state == Release.State.FAILED
    assert failed.error
    (settings.MEDIA_ROOT / "releases").unlink()
    assert release_retry(release=failed, dispatch=False) is True
    built = release_build(release_id=release.pk)
    assert built.state == Release.State.BUILT
    assert built.item_count == 1
