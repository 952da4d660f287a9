"""Choosing the interface language, `<html lang>`, the switcher, mixed content, formats, the
rubric guide per language and the catalogue's completeness."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.template import Context, Template
from django.test import Client
from django.urls import reverse
from django.utils import translation

from medcot import pofile
from medcot.lifecycle import Status
from review.models import Profile, RubricGuide
from tests.factories import ItemFactory

CHINESE = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9,en;q=0.5"}
ENGLISH = {"HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.9"}
LOCALE = Path(settings.LOCALE_PATHS[0]) / "zh_Hans" / "LC_MESSAGES"


def html_lang(response) -> str:
    return re.search(rb'<html lang="([^"]+)"', response.content).group(1).decode()


def switcher(response) -> dict[str, str]:
    """The switcher's buttons: language code → aria-pressed."""
    form = re.search(rb'<form[^>]*class="langswitch".*?</form>', response.content, re.S)
    assert form, "no language switcher on the page"
    return {
        code.decode(): pressed.decode()
        for code, pressed in re.findall(
            rb'value="([^"]+)"[^>]*aria-pressed="(true|false)"', form.group(0)
        )
    }


def test_a_chinese_browser_gets_the_login_page_in_chinese_with_the_switcher(db):
    response = Client().get(reverse("login"), **CHINESE)
    assert html_lang(response) == "zh-Hans"
    assert "登录 MedCoT" in response.content.decode()
    assert switcher(response) == {"en": "false", "zh-hans": "true"}
    assert response["Content-Language"] == "zh-hans"


def test_an_english_browser_gets_english_and_lang_en(db):
    response = Client().get(reverse("login"), **ENGLISH)
    assert html_lang(response) == "en"
    assert "Log in to MedCoT" in response.content.decode()
    assert switcher(response) == {"en": "true", "zh-hans": "false"}


def test_the_login_page_switcher_overrides_the_browser_with_a_cookie(db):
    client = Client()
    response = client.post(
        reverse("language_set"), {"language": "en", "next": "/login/"}, **CHINESE
    )
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"
    page = client.get("/login/", **CHINESE)
    assert html_lang(page) == "en" and "Log in to MedCoT" in page.content.decode()


def test_a_signed_in_choice_is_kept_on_the_profile_and_follows_the_person(reviewer):
    laptop = Client()
    laptop.force_login(reviewer)
    laptop.post(reverse("language_set"), {"language": "zh-hans", "next": "/review/"}, **ENGLISH)
    assert Profile.objects.get(user=reviewer).language == "zh-hans"
    page = laptop.get("/review/", **ENGLISH)
    assert html_lang(page) == "zh-Hans" and "我的队列" in page.content.decode()
    assert switcher(page) == {"en": "false", "zh-hans": "true"}

    # Another machine, an English browser, no cookie: the profile decides once signed in.
    desktop = Client()
    desktop.force_login(reviewer)
    page = desktop.get("/review/", **ENGLISH)
    assert html_lang(page) == "zh-Hans" and "我的队列" in page.content.decode()

    desktop.post(reverse("language_set"), {"language": "en", "next": "/review/"}, **CHINESE)
    assert Profile.objects.get(user=reviewer).language == "en"
    page = desktop.get("/review/", **CHINESE)
    assert html_lang(page) == "en" and "My queue" in page.content.decode()


def test_the_switcher_refuses_unknown_languages_and_foreign_redirects(db):
    client = Client()
    assert client.post(reverse("language_set"), {"language": "fr"}).status_code == 400
    response = client.post(
        reverse("language_set"), {"language": "en", "next": "https://evil.example/"}
    )
    assert response["Location"] == "/"
    assert client.get(reverse("language_set")).status_code == 405


def test_the_javascript_catalogue_speaks_chinese(db):
    body = Client().get(reverse("javascript_catalog"), **CHINESE).content.decode()
    assert (
        "\\u60a8\\u65e0\\u6743\\u6267\\u884c\\u6b64\\u64cd\\u4f5c" in body
        or "您无权执行此操作" in body
    )


@pytest.mark.parametrize(
    ("value", "unit", "english", "chinese"),
    [
        (timedelta(seconds=108.980052), "s", "1 min 49 s", "1分49秒"),
        (108, "s", "1 min 48 s", "1分48秒"),
        (4.25, "s", "4.2 s", "4.2秒"),
        (42, "s", "42 s", "42秒"),
        (850, "ms", "850 ms", "850毫秒"),
        (3600 * 2 + 60 * 5, "s", "2 h 5 min", "2小时5分"),
        (None, "s", "—", "—"),
    ],
)
def test_durations_read_as_people_say_them(value, unit, english, chinese):
    template = Template("{% load medcot_format %}{{ value|duration:unit }}")
    for language, expected in (("en", english), ("zh-hans", chinese)):
        with translation.override(language):
            assert template.render(Context({"value": value, "unit": unit})) == expected


def test_numbers_and_percentages_use_the_interface_format():
    template = Template("{% load humanize medcot_format %}{{ n|intcomma }} · {{ share|percent }}")
    for language in ("en", "zh-hans"):
        with translation.override(language):
            assert template.render(Context({"n": 1234567, "share": 0.1234})) == (
                "1,234,567 · 12.3%"
            )


def test_dates_use_the_interface_format():
    from datetime import date

    template = Template("{{ day|date }}")
    with translation.override("zh-hans"):
        assert template.render(Context({"day": date(2026, 12, 4)})) == "2026年12月4日"
    with translation.override("en"):
        assert template.render(Context({"day": date(2026, 12, 4)})) == "Dec. 4, 2026"


def test_item_content_carries_its_own_language_in_either_interface(client, reviewer, project):
    ItemFactory(
        project=project,
        status=Status.FIRST_REVIEW,
        language="zh",
        version__stem="患者男，54岁，胸骨后压榨性疼痛40分钟。下一步应如何处理？",
    )
    client.force_login(reviewer)
    for headers, page_lang in ((ENGLISH, "en"), (CHINESE, "zh-Hans")):
        page = client.get(reverse("review:first_pass"), **headers)
        assert html_lang(page) == page_lang
        body = page.content.decode()
        # The stem sits inside a block that declares Chinese, whatever the interface says.
        block = re.search(
            r'<[^>]+lang="zh(?:-Hans)?"[^>]*>(?:(?!</article>).)*胸骨后压榨性疼痛', body, re.S
        )
        assert block, f"the Chinese stem has no lang=zh block in the {page_lang} interface"


def test_a_mixed_project_says_so(client, admin_user):
    from tests.factories import ProjectFactory

    ProjectFactory(name="示例", slug="demo-mixed", language="mixed")
    client.force_login(admin_user)
    assert "中英混合" in client.get(reverse("project_list"), **CHINESE).content.decode()
    assert (
        "Mixed (Chinese and English)"
        in client.get(reverse("project_list"), **ENGLISH).content.decode()
    )


def test_the_rubric_guide_is_read_and_edited_per_language(client, expert_a, admin_user):
    client.force_login(expert_a)
    chinese = client.get(reverse("review:rubric_guide"), **CHINESE).content.decode()
    assert "存在事实性错误" in chinese and "医学准确性" in chinese
    english = client.get(reverse("review:rubric_guide"), **ENGLISH).content.decode()
    assert "Contains a factual error" in english

    guide = RubricGuide.objects.get(language="zh-hans", version=1)
    data = {f"{d}_{lv}": text for d, levels in guide.levels.items() for lv, text in levels.items()}
    data.update(introduction="请严格评分。", note="收紧引言")
    client.force_login(admin_user)
    response = client.post(reverse("review:rubric_guide_edit"), data, **CHINESE)
    assert response.status_code == 302
    assert RubricGuide.objects.filter(language="zh-hans").order_by("-version").first().version == 2
    assert RubricGuide.objects.filter(language="en").count() == 1
    client.force_login(expert_a)
    assert "请严格评分。" in client.get(reverse("review:rubric_guide"), **CHINESE).content.decode()


def test_the_catalogues_are_complete_and_compiled():
    for po in sorted(LOCALE.glob("*.po")):
        assert not pofile.problems(po), f"{po.name}: {pofile.problems(po)[:20]}"
        assert not pofile.stale_compiled(po), f"{po.name}: run `make messages`"
    assert {p.name for p in LOCALE.glob("*.po")} == {"django.po", "djangojs.po"}


@pytest.mark.skipif(
    not (shutil.which("xgettext") and shutil.which("msgmerge")),
    reason="GNU gettext is not installed (CI installs it; `make messages-check` runs there)",
)
def test_the_code_has_no_string_the_catalogue_lacks():
    call_command("catalogue", check=True)


def test_system_text_stored_in_english_reads_in_the_interface_language():
    from medcot.templatetags.medcot_format import event_label, status_label, stored_text

    with translation.override("zh-hans"):
        assert stored_text("imported from seeds.csv line 2") == "导入自 seeds.csv 第 2 行"
        assert stored_text("5 re-answer attempts failed") == "模型重答 5 次均未答对"
        assert stored_text("synthesized from its seed") == "由种子题合成"
        assert stored_text("心电图提示急性下壁心肌梗死") == "心电图提示急性下壁心肌梗死"
        assert status_label("panel_review") == "专家组评审"
        assert event_label("transition") == "状态变更"
    with translation.override("en"):
        assert stored_text("imported from seeds.csv line 2") == "imported from seeds.csv line 2"
        assert status_label("panel_review") == "Panel review"
