"""The dataset card's language: chosen at build (the project's language by default), recorded
on the release, and used for its headings and charts whoever builds or rebuilds it, so a
rebuild stays byte-identical."""

from pathlib import Path

import pytest
from django.conf import settings
from django.utils import translation

from review.releases.services import (
    release_build,
    release_create,
    release_directory,
    release_write_files,
)
from tests.releases.conftest import _media_root, make_item  # noqa: F401

pytestmark = pytest.mark.django_db


def _build(project, admin_user, version="v1", **kwargs):
    release = release_create(
        project=project, version=version, actor=admin_user, dispatch=False, **kwargs
    )
    return release_build(release_id=release.pk)


def test_a_chinese_project_gets_a_card_in_chinese_and_rebuilds_it_identically(
    project,
    admin_user,
    make_item,  # noqa: F811
    expert_a,
    expert_b,
):
    project.language = "zh"
    project.save(update_fields=["language"])
    make_item(
        language="zh", specialty="心内科", panel_scores={expert_a: [2] * 5, expert_b: [2] * 5}
    )
    make_item(language="zh", specialty="心内科")
    with translation.override("en"):  # an English-speaking admin builds it
        release = _build(project, admin_user)
    assert release.card_language == "zh-hans"
    first = release_directory(release)
    card = (first / "README.md").read_text()
    for heading in ("文件", "题目如何经过验证", "本版本包含的内容", "专家间一致性", "隐私"):
        assert f"\n## {heading}\n" in card
    assert f"# {project.name} — 版本 v1\n" in card
    assert "## Files" not in card and "## Privacy" not in card
    assert "本版本各专科题目数" in (first / "charts" / "specialty.svg").read_text()

    # A rebuild by someone reading Chinese, or English, writes the very same bytes.
    for language in ("zh-hans", "en"):
        again = Path(settings.MEDIA_ROOT) / f"again-{language}"
        with translation.override(language):
            release_write_files(release=release, directory=again, chunk_size=1)
        for name in ("README.md", "charts/specialty.svg", "charts/funnel.svg"):
            assert (first / name).read_bytes() == (again / name).read_bytes(), (language, name)


def test_a_mixed_project_defaults_to_english_and_the_builder_may_choose(
    project,
    admin_user,
    make_item,  # noqa: F811
):
    project.language = "mixed"
    project.save(update_fields=["language"])
    make_item(language="zh", specialty="心内科")
    with translation.override("zh-hans"):  # a Chinese-speaking admin builds it
        english = _build(project, admin_user)
    card = (release_directory(english) / "README.md").read_text()
    assert english.card_language == "en"
    assert "\n## Files\n" in card and "\n## Privacy\n" in card and "隐私" not in card

    chinese = _build(project, admin_user, version="v2", card_language="zh-hans")
    card = (release_directory(chinese) / "README.md").read_text()
    assert chinese.card_language == "zh-hans"
    assert "\n## 隐私\n" in card
    assert "\n## 自版本 v1 以来的变化\n" in card


def test_the_release_form_offers_the_card_language_in_chinese(client, admin_user, project):
    client.force_login(admin_user)
    page = client.get(
        f"/projects/{project.slug}/releases/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9"
    ).content.decode()
    assert "数据集说明卡的语言" in page and "与项目语言一致" in page
