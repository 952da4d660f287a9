"""The issue's scenario in a real browser: first pass by keyboard, a panel, blind scoring, a
disagreement that brings in a third expert, consensus, approval, and the history page.

Playwright drives Debian's Chromium against Django's live server. It runs twice: with an
English browser and with a Chinese one (Accept-Language zh-CN, Chinese items), the second proving
the flow works in Chinese. Screenshots of every page go to test-artifacts/review/ (English) and
test-artifacts/review/zh-hans/ (Chinese).
"""

import importlib
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import translation
from playwright.sync_api import expect

from medcot.lifecycle import Status, transition
from medcot.models import Item
from medcot.roles import ADMIN, EXPERT, REVIEWER
from review.models import Panel
from review.services import person_create
from review.services.first_pass import first_pass_apply_due
from tests.factories import ItemFactory, ProjectFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts" / "review"
PASSWORD = "correct horse battery staple"


BROWSER_LOCALES = {"en": "en-US", "zh-hans": "zh-CN"}
# The Chinese run's items: the same case, as a Chinese exam writes it.
CHINESE_ITEM = {
    "language": "zh",
    "version__stem": "患者男，54岁，胸骨后压榨性疼痛40分钟。下一步应如何处理？",
    "version__option_a": "嚼服阿司匹林并行心电图检查",
    "version__option_b": "嘱其回家观察",
    "version__option_c": "腹部超声检查",
    "version__option_d": "试用抗酸药",
}


def open_as(browser, live_server, username, language="en"):
    locale = BROWSER_LOCALES[language]
    context = browser.new_context(
        viewport={"width": 1366, "height": 900},
        locale=locale,
        extra_http_headers={"Accept-Language": f"{locale},{locale[:2]};q=0.9"},
    )
    page = context.new_page()
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/projects/")
    return page


def shot(page, name):
    lang = page.evaluate("document.documentElement.lang")
    folder = ARTIFACTS if lang == "en" else ARTIFACTS / "zh-hans"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def wait_for_keys(page):
    """The review script binds the keys once the page has loaded; a click that navigates returns
    before that, so a test waits for the script's mark before it types."""
    page.wait_for_selector("html[data-review-ready]", state="attached")


def wait_for_item(page, item):
    page.wait_for_selector(f"#item-{item.pk}-title")
    wait_for_keys(page)


@pytest.fixture
def rubric_v1():
    """Transactional tests flush the tables, data migrations included: put the shipped guide
    back the way its migration writes it."""
    from django.apps import apps

    migration = importlib.import_module("review.migrations.0004_rubric_guide_v1")
    migration.create_v1(apps, None)
    chinese = importlib.import_module(
        "review.migrations.0005_profile_language_rubric_guide_language"
    )
    chinese.create_zh_v1(apps, None)


@override_settings(REVIEW_UNDO_SECONDS=60)
@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_it_takes_items_from_first_pass_through_panel_to_approved(
    browser, live_server, rubric_v1, language
):
    def t(text):  # what the page says for an English text, in this run's language
        with translation.override(language):
            return translation.gettext(text)

    item_fields = CHINESE_ITEM if language == "zh-hans" else {}
    project = ProjectFactory(panel_size=2, consensus_minimum=2)
    person_create(username="doc", password=PASSWORD, roles=[REVIEWER])
    person_create(username="lead", password=PASSWORD, roles=[ADMIN])
    for name, specialties in [
        ("cardio1", ["Cardiology"]),
        ("cardio2", ["Cardiology"]),
        ("neuro", ["Neurology"]),
    ]:
        person_create(username=name, password=PASSWORD, roles=[EXPERT], specialties=specialties)
    first, second, third = (
        ItemFactory(
            project=project,
            status=Status.FIRST_REVIEW,
            version__cot=f"1. Chest pain suggests ACS.\n2. **Aspirin** and an ECG first. ({n})",
            **item_fields,
        )
        for n in range(3)
    )

    # A reviewer works through three items by keyboard alone.
    doc = open_as(browser, live_server, "doc", language)
    doc.keyboard.press("g")  # an unbound key does nothing
    doc.goto(f"{live_server.url}/review/first-pass/")
    wait_for_item(doc, first)
    shot(doc, "01-first-pass")
    doc.keyboard.press("Enter")  # all three criteria are 1: pass
    wait_for_item(doc, second)  # shown at once from the prefetched copy
    doc.wait_for_selector(".rv-undo")  # patched in when the server confirms
    assert doc.locator("#rv-current").count() == 1 and doc.locator(".rv-previous").count() == 0
    # The item on screen is the prefetched copy, kept when the server's answer came in.
    assert doc.locator("#rv-current[data-shown-by=prefetch]").count() == 1
    doc.keyboard.press("u")  # take it back
    wait_for_item(doc, first)
    doc.keyboard.press("Enter")
    wait_for_item(doc, second)

    doc.keyboard.press("2")  # medical correctness → 0
    expect(doc.locator("#rv-current [data-zero-only]")).to_be_visible()
    doc.keyboard.press("f")  # fix, focus goes to the reason
    doc.keyboard.type("Step 2 must say ECG within 10 minutes")
    doc.keyboard.press("Escape")
    doc.keyboard.press("e")  # edit the CoT
    doc.keyboard.press("Control+End")
    doc.keyboard.type("\n3. ECG within 10 minutes of arrival.")
    shot(doc, "02-first-pass-fix")
    doc.keyboard.press("Control+Enter")
    wait_for_item(doc, third)

    doc.keyboard.press("r")  # relevance → 0
    doc.keyboard.press("d")  # discard, focus goes to the reason
    doc.keyboard.type("Duplicate of an earlier item")
    doc.keyboard.press("Enter")
    doc.wait_for_selector(".rv-empty")
    shot(doc, "03-first-pass-empty")

    # The undo window closes (here: the end of the reviewer's session).
    assert first_pass_apply_due(force=True) == 3
    for item in (first, second, third):
        item.refresh_from_db()
    assert (first.status, second.status, third.status) == (
        Status.REANSWERING,
        Status.REANSWERING,
        Status.DISCARDED,
    )
    assert second.revision_status == "modified" and second.current_version.number == 2
    assert "ECG within 10 minutes of arrival" in second.current_version.cot

    # Five strikes in re-answering (the generation side's move) send the first item to a panel.
    from generation.models import ReanswerAttempt

    for number, (order, raw, answer) in enumerate(
        [("ABCD", "B", "B"), ("CADB", "A", "C"), ("DCBA", "C", "B"), ("BDAC", "A", "B"),
         ("ABCD", "D", "D")],
        start=1,
    ):  # fmt: skip
        ReanswerAttempt.objects.create(
            item=first,
            number=number,
            variant=f"variant-{number}",
            model="sim-model",
            option_order=order,
            raw_answer=raw,
            answer=answer,
            parsed=True,
            correct=False,
            reply=f"The answer is {raw}.",
            reasoning=f"Attempt {number}: discharge seems safe <b>because</b> pain resolved.",
        )
    transition(Item.objects.get(pk=first.pk), Status.PANEL, reason="five strikes")

    lead = open_as(browser, live_server, "lead", language)
    lead.goto(f"{live_server.url}/review/panels/")
    shot(lead, "04-panels-admin")
    lead.click(f"a[href='/review/panels/assign/{first.pk}/']")
    lead.wait_for_url(f"**/review/panels/assign/{first.pk}/")
    expect(lead.locator(".rv-attempt-list li")).to_have_count(5)
    lead.click(".rv-attempt-list summary >> nth=0")
    # Model text is shown as text: the <b> arrives escaped, never as markup.
    assert "<b>because</b>" in lead.locator(".rv-attempt-list pre >> nth=0").inner_text()
    lead.check("input[name=experts] >> nth=0")
    lead.check("input[name=experts] >> nth=1")
    shot(lead, "05-panel-assign")
    lead.click(f"text={t('Assign selected')}")
    lead.wait_for_url(f"**/review/panels/item/{first.pk}/")
    panel = Panel.objects.get(item=first)
    assert set(panel.memberships.values_list("expert__username", flat=True)) == {
        "cardio1",
        "cardio2",
    }

    # Two experts score independently and blind.
    cardio1 = open_as(browser, live_server, "cardio1", language)
    cardio1.goto(f"{live_server.url}/review/panels/item/{first.pk}/")
    cardio1.wait_for_selector("form[data-rubric]")
    wait_for_keys(cardio1)
    for key in "22222":
        cardio1.keyboard.press(key)
    cardio1.keyboard.press("y")
    shot(cardio1, "06-rubric-scoring")
    cardio1.keyboard.press("Enter")
    cardio1.wait_for_selector(f".rv-notice:has-text('{first.external_id}')")

    cardio2 = open_as(browser, live_server, "cardio2", language)
    cardio2.goto(f"{live_server.url}/review/panels/item/{first.pk}/")
    cardio2.wait_for_selector("form[data-rubric]")
    wait_for_keys(cardio2)
    expect(cardio2.locator(".rv-hidden-scores")).to_be_visible()
    assert "cardio1" not in cardio2.locator(".rv-round").inner_text()
    shot(cardio2, "07-rubric-blind")
    for key in "21122":
        cardio2.keyboard.press(key)
    cardio2.keyboard.press("b")  # holds B correct
    cardio2.keyboard.press("y")
    cardio2.keyboard.press("w")
    cardio2.keyboard.type("B fits the stem better")
    cardio2.keyboard.press("Enter")
    cardio2.wait_for_selector(f".rv-notice:has-text('{first.external_id}')")
    # A third expert joined the round, so the others' scores stay hidden until they submit.
    assert "cardio1" not in cardio2.locator(".rv-round").first.inner_text()

    # The disagreement brings in a third expert, who sides with the key.
    assert panel.memberships.filter(expert__username="neuro", why="adjudication").exists()
    neuro = open_as(browser, live_server, "neuro", language)
    neuro.goto(f"{live_server.url}/review/")
    neuro.click(f"a[href='/review/panels/item/{first.pk}/']")
    neuro.wait_for_selector("form[data-rubric]")
    wait_for_keys(neuro)
    for key in "22212":
        neuro.keyboard.press(key)
    neuro.keyboard.press("y")
    neuro.keyboard.press("Enter")
    # The third score closes the round; wait for that in the database (the page's notice is
    # checked for the two scores above).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        first.refresh_from_db()
        if first.status == Status.APPROVED:
            break
        time.sleep(0.2)
    assert first.status == Status.APPROVED, neuro.locator("main").inner_text()[:2000]
    cardio2.reload()
    revealed = cardio2.locator(".rv-round").first.inner_text()
    assert "cardio1" in revealed and "neuro" in revealed
    shot(cardio2, "08-rubric-revealed")

    # The history page tells the whole story.
    lead.goto(f"{live_server.url}/review/items/{first.pk}/history/")
    text = lead.locator("main").inner_text()
    for expected in (t("Approved"), t("Pass"), "cardio1", "cardio2", "neuro", t("Panel review")):
        assert expected in text
    assert "B fits" in text
    # In words, not the internal codes of statuses and events.
    for code in ("panel_review", "first_review", "version_created", "→ reanswering"):
        assert code not in text
    shot(lead, "09-history")
    lead.goto(f"{live_server.url}/review/overview/")
    shot(lead, "10-overview")

    # The fixed item answered correctly on re-answering: it still needs two experts' consensus.
    transition(Item.objects.get(pk=second.pk), Status.CONSENSUS, reason="attempt 1 correct")
    for page in (cardio1, neuro):
        page.goto(f"{live_server.url}/review/consensus/")
        wait_for_item(page, second)
        if page is cardio1:
            shot(page, "11-consensus")
        page.keyboard.press("Enter")  # the key and the phrasing are approved by default
        page.wait_for_selector(".rv-empty")
    second.refresh_from_db()
    assert second.status == Status.APPROVED

    # The admin's dashboard and releases pages for the project.
    lead.goto(f"{live_server.url}/projects/{project.slug}/dashboard/")
    lead.wait_for_selector("main h1")
    shot(lead, "12-dashboard")
    lead.goto(f"{live_server.url}/projects/{project.slug}/releases/")
    lead.wait_for_selector("main h1")
    shot(lead, "13-releases")
    for page in (doc, lead, cardio1, cardio2, neuro):
        assert page.evaluate("document.documentElement.lang") == (
            "zh-Hans" if language == "zh-hans" else "en"
        )
