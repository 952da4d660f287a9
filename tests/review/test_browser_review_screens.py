"""The review screens as a physician uses them all day, in Debian's Chromium: the item as
written on every screen, the model's conclusion next to the key (and the confirmation a flagged
or quick pass needs), the panel's controls in view, bulk panel assignment, the consensus queue's
prefetched next item, and axe-core on the key pages.

Screenshots go to test-artifacts/review-screens/.
"""

import importlib
from pathlib import Path

import axe_playwright_python
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import override_settings

from generation.models import ReanswerAttempt
from medcot.lifecycle import Status
from medcot.models import AuthorKind, Item
from medcot.roles import ADMIN, EXPERT, REVIEWER
from medcot.services import item_version_create
from review.models import ConsensusVote, FirstPassReview, Panel
from review.services import person_create
from review.services.panels import panel_assign
from tests.factories import ItemFactory, ProjectFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts" / "review-screens"
PASSWORD = "correct horse battery staple"
AXE = (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text()

STEM = "A 54-year-old man has chest pain.\nHR 112/min\nBP 88/54 mm Hg\nWhat is the next step?"
COT = (
    "Reading the case:\n"
    "Hypotension with tachycardia means shock.\n"
    "1. Option A is too slow.\n"
    "2. Option B treats the cause.\n"
    "The answer is ({letter})."
)


def open_as(browser, live_server, username, width=1280, height=800):
    # bypass_csp only so axe-core can be injected; the pages themselves run under their CSP.
    context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
    page = context.new_page()
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/projects/")
    return page


def shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def make(project, status, letter=None, **kwargs):
    """An item in `status` whose model-written CoT concludes on `letter` (the key by default)."""
    item = ItemFactory(project=project, status=status, version__stem=STEM, **kwargs)
    item_version_create(
        item=item,
        author_kind=AuthorKind.LLM,
        reason="chain of thought generated",
        cot=COT.format(letter=letter or item.current_version.answer),
    )
    item.refresh_from_db()
    return item


def attempts(item, answers):
    for number, answer in enumerate(answers, start=1):
        ReanswerAttempt.objects.create(
            item=item,
            number=number,
            variant=f"variant-{number}",
            model="sim-model",
            option_order="ABCD",
            raw_answer=answer,
            answer=answer,
            parsed=True,
            correct=answer == item.current_version.answer,
            reply=f"The answer is {answer}.",
        )


@pytest.fixture
def rubric_v1():
    from django.apps import apps

    importlib.import_module("review.migrations.0004_rubric_guide_v1").create_v1(apps, None)


@pytest.fixture
def people(db):
    person_create(username="doc", password=PASSWORD, roles=[REVIEWER])
    person_create(username="lead", password=PASSWORD, roles=[ADMIN])
    for name in ("cardio1", "cardio2", "cardio3"):
        person_create(username=name, password=PASSWORD, roles=[EXPERT], specialties=["Cardiology"])


def lines_of(page, selector):
    """The distinct vertical positions of the text lines inside `selector`'s <br>/<li>."""
    return page.evaluate(
        """(sel) => {
            const el = document.querySelector(sel);
            const tops = new Set();
            const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
            while (walker.nextNode()) {
                const n = walker.currentNode;
                if (!n.textContent.trim()) continue;
                const r = document.createRange(); r.selectNodeContents(n);
                for (const rect of r.getClientRects()) tops.add(Math.round(rect.top));
            }
            return tops.size;
        }""",
        selector,
    )


def assert_as_written(page, item):
    """Stem and CoT keep their line breaks and their list, on this screen."""
    scope = f"#item-{item.pk}-title >> xpath=ancestor::article"
    card = page.locator(scope)
    assert card.locator(".stem br").count() == 3
    assert (
        lines_of(page, f"#rv-current .stem, article[aria-labelledby='item-{item.pk}-title'] .stem")
        >= 4
    )
    cot = card.locator(".rv-cot")
    assert cot.locator("br").count() >= 1
    assert cot.locator("ol > li").count() == 2
    text = cot.inner_text()
    assert "Reading the case:\nHypotension" in text


def test_it_keeps_line_breaks_on_every_review_screen(browser, live_server, people, rubric_v1):
    project = ProjectFactory(panel_size=2)
    first = make(project, Status.FIRST_REVIEW)
    at_consensus = make(project, Status.CONSENSUS)
    attempts(at_consensus, "AAAA")
    in_panel = make(project, Status.PANEL)
    User = get_user_model()
    panel_assign(
        item=in_panel,
        experts=list(User.objects.filter(username__in=["cardio1", "cardio2"])),
        actor=User.objects.get(username="lead"),
    )

    doc = open_as(browser, live_server, "doc")
    doc.goto(f"{live_server.url}/review/first-pass/")
    doc.wait_for_selector(f"#item-{first.pk}-title")
    assert_as_written(doc, first)
    shot(doc, "first-pass")

    cardio3 = open_as(browser, live_server, "cardio3")
    cardio3.goto(f"{live_server.url}/review/consensus/")
    cardio3.wait_for_selector(f"#item-{at_consensus.pk}-title")
    assert_as_written(cardio3, at_consensus)

    cardio1 = open_as(browser, live_server, "cardio1")
    cardio1.goto(f"{live_server.url}/review/panels/item/{in_panel.pk}/")
    cardio1.wait_for_selector("form[data-rubric]")
    assert_as_written(cardio1, in_panel)

    # The admin's item page renders the item through the same tag.
    lead = open_as(browser, live_server, "lead")
    lead.goto(f"{live_server.url}/projects/{project.slug}/items/{first.pk}/")
    assert lead.locator(".stem br").count() == 3
    assert lead.locator(".cot ol > li").count() == 2


def test_it_flags_a_cot_off_the_key_and_needs_confirmations(browser, live_server, people):
    project = ProjectFactory(min_pass_seconds=3)
    # The key is A; the CoT ends on C.
    flagged = make(project, Status.FIRST_REVIEW, letter="C")
    fine = make(project, Status.FIRST_REVIEW)
    assert flagged.current_version.answer == "A"

    doc = open_as(browser, live_server, "doc")
    doc.goto(f"{live_server.url}/review/first-pass/")
    doc.wait_for_selector(f"#item-{flagged.pk}-title")
    flag = doc.locator("#rv-current .rv-item [data-verdict]")
    assert flag.get_attribute("data-mismatch") == "C"
    assert "concludes on C, not on the key A" in flag.inner_text()
    # The same flag sits in the verdict panel, next to the controls.
    assert doc.locator("#rv-current form [data-verdict][data-mismatch=C]").is_visible()
    shot(doc, "first-pass-flagged")

    doc.keyboard.press("Enter")  # one Enter does not pass a flagged item
    doc.wait_for_selector("#rv-current [data-confirm-hint]:visible")
    assert FirstPassReview.objects.count() == 0
    doc.keyboard.press("y")  # confirm the key is right
    assert doc.locator("#rv-current input[name=confirm_mismatch]").is_checked()
    doc.keyboard.press("Enter")  # still under the project's 3 s: the quick pass needs its key
    doc.wait_for_selector("#rv-current [data-fast-confirm]:visible")
    assert FirstPassReview.objects.count() == 0
    shot(doc, "first-pass-confirm")
    doc.keyboard.press("g")
    doc.keyboard.press("Enter")
    doc.wait_for_selector(f"#item-{fine.pk}-title")
    wait_until(lambda: FirstPassReview.objects.filter(item=flagged).exists())
    review = FirstPassReview.objects.get(item=flagged)
    assert review.confirmations == ["mismatch", "fast"]
    assert review.cot_concluded == "C"

    # An unflagged item read for longer than the minimum passes with one Enter, nothing asked.
    doc.wait_for_timeout(3200)
    doc.keyboard.press("Enter")
    doc.wait_for_selector(".rv-empty")
    wait_until(lambda: FirstPassReview.objects.filter(item=fine).exists())
    assert FirstPassReview.objects.get(item=fine).confirmations == []


def test_the_panel_controls_are_in_view_without_scrolling(browser, live_server, people, rubric_v1):
    project = ProjectFactory(panel_size=2)
    item = make(project, Status.PANEL)
    attempts(item, "BBBBB")
    User = get_user_model()
    panel_assign(
        item=item,
        experts=list(User.objects.filter(username__in=["cardio1", "cardio2"])),
        actor=User.objects.get(username="lead"),
    )
    for width, height in ((1280, 800), (800, 800)):
        page = open_as(browser, live_server, "cardio1", width=width, height=height)
        page.goto(f"{live_server.url}/review/panels/item/{item.pk}/")
        page.wait_for_selector("form[data-rubric]")
        assert page.evaluate("window.scrollY") == 0
        controls = [
            "[data-rubric-row] >> nth=0",
            "[data-rubric-row] >> nth=4",
            "form[data-rubric] input[name=answer][value=A] >> xpath=..",
            "form[data-rubric] input[name=decision][value=discard] >> xpath=..",
            "#rs-comment",
            "form[data-rubric] button[type=submit]",
        ]
        for selector in controls:
            box = page.locator(selector).bounding_box()
            assert box is not None, selector
            assert box["y"] >= 0 and box["y"] + box["height"] <= height, (width, selector, box)
            assert box["x"] + box["width"] <= width, (width, selector, box)
        shot(page, f"panel-{width}")
        # Scrolled to the item's end, the panel stays in view (sticky).
        page.mouse.wheel(0, 3000)
        page.wait_for_timeout(200)
        box = page.locator("form[data-rubric] button[type=submit]").bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= height

    # A missing decision is named, next to its field.
    page = open_as(browser, live_server, "cardio2")
    page.goto(f"{live_server.url}/review/panels/item/{item.pk}/")
    for key in "22222":
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    error = page.locator("#rs-err-decision")
    error.wait_for()
    assert "Decision" in error.inner_text()
    assert page.locator("fieldset.rv-invalid #rs-err-decision").count() == 1
    assert "This field is required" not in page.locator("main").inner_text()


@override_settings(REVIEW_MAX_OPEN_PANELS=100)
def test_an_admin_assigns_fifty_panels_in_one_action(browser, live_server, people):
    project = ProjectFactory(panel_size=2)
    items = [make(project, Status.PANEL) for _ in range(50)]
    # One more, of a specialty nobody has, and whose only eligible experts are too few.
    odd = make(project, Status.PANEL, specialty="Dermatology")
    for name in ("cardio1", "cardio2"):
        FirstPassReview.objects.create(
            item=odd,
            version=odd.current_version,
            reviewer=get_user_model().objects.get(username=name),
            relevance=True,
            correctness=True,
            sufficiency=True,
            outcome="pass",
            state="applied",
            effective_at=odd.created_at,
        )

    lead = open_as(browser, live_server, "lead")
    lead.goto(f"{live_server.url}/review/panels/")
    lead.select_option("#f-specialty", "Cardiology")
    lead.click("form.rv-filter button[type=submit]")
    assert "50" in lead.locator("[data-all-matching] >> xpath=..").inner_text()
    lead.check("[data-all-matching]")
    lead.click("button[name=action][value=auto]")
    summary = lead.locator(".rv-summary")
    summary.wait_for()
    assert "50 items assigned" in summary.inner_text()
    shot(lead, "panels-bulk")
    assert Panel.objects.filter(item__in=items).count() == 50
    assert set(
        Item.objects.filter(pk__in=[i.pk for i in items]).values_list("status", flat=True)
    ) == {Status.PANEL_REVIEW}
    # The choice is explained: specialty first, then the fewest open panels.
    assert "Cardiology" in lead.locator(".rv-assigned li >> nth=0").text_content()

    # The odd item cannot be assigned, and the summary says why.
    lead.goto(f"{live_server.url}/review/panels/")
    lead.check(f"input[name=items][value='{odd.pk}']")
    lead.click("button[name=action][value=auto]")
    lead.locator(".rv-summary").wait_for()
    why = lead.locator(".rv-not-assigned").inner_text()
    assert "No expert of Dermatology" in why
    odd.refresh_from_db()
    assert odd.status == Status.PANEL

    # Specialty in bulk.
    lead.check(f"input[name=items][value='{odd.pk}']")
    lead.click("text=Set specialty…")
    lead.fill("#b-specialty", "Cardiology")
    lead.click("button[name=action][value=specialty]")
    lead.locator(".rv-notice").wait_for()
    odd.refresh_from_db()
    assert odd.specialty == "Cardiology"


def test_the_consensus_queue_shows_the_next_item_at_once(browser, live_server, people):
    project = ProjectFactory(consensus_minimum=3)
    items = [make(project, Status.CONSENSUS) for _ in range(4)]
    for item in items:
        attempts(item, "AAAA")
    page = open_as(browser, live_server, "cardio1")
    page.goto(f"{live_server.url}/review/consensus/")
    timings = []
    for _ in range(3):
        page.wait_for_selector("#rv-next", state="attached")
        following = page.get_attribute("#rv-next", "data-item")
        # Measured in the page: from the key press to the next item's title in the document.
        ms = page.evaluate(
            """(id) => new Promise((resolve) => {
                const t0 = performance.now();
                const seen = () => document.getElementById('item-' + id + '-title');
                const obs = new MutationObserver(() => {
                    if (seen()) { obs.disconnect(); resolve(performance.now() - t0); }
                });
                obs.observe(document.body, {childList: true, subtree: true});
                document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true}));
            })""",
            following,
        )
        timings.append(ms)
        # The server's answer brings the prefetch of the item after; wait for it to land.
        page.wait_for_function("() => !document.querySelector('.rv-previous')")
    assert max(timings) < 50, timings
    votes = ConsensusVote.objects.filter(expert__username="cardio1")
    wait_until(lambda: votes.count() == 3)
    shot(page, "consensus")


def wait_until(check, seconds=10.0):
    """Poll the database for what the page's last request wrote."""
    import time

    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def axe_serious(page) -> list:
    page.evaluate(AXE)
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        (v["id"], [n["target"] for n in v["nodes"]][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_axe_finds_no_serious_violation_on_the_key_pages(browser, live_server, people, rubric_v1):
    project = ProjectFactory(panel_size=2)
    make(project, Status.FIRST_REVIEW, letter="C")
    at_consensus = make(project, Status.CONSENSUS)
    attempts(at_consensus, "ABAA")
    in_panel = make(project, Status.PANEL)
    User = get_user_model()
    panel_assign(
        item=in_panel,
        experts=list(User.objects.filter(username__in=["cardio1", "cardio2"])),
        actor=User.objects.get(username="lead"),
    )
    make(project, Status.PANEL)  # one waiting, so the admin's panels list has rows

    anonymous = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    login = anonymous.new_page()
    login.goto(f"{live_server.url}/login/")
    pages = {"login": login}
    doc = open_as(browser, live_server, "doc")
    doc.goto(f"{live_server.url}/review/first-pass/")
    pages["first pass"] = doc
    cardio3 = open_as(browser, live_server, "cardio3")
    cardio3.goto(f"{live_server.url}/review/consensus/")
    pages["consensus"] = cardio3
    cardio1 = open_as(browser, live_server, "cardio1")
    cardio1.goto(f"{live_server.url}/review/panels/item/{in_panel.pk}/")
    pages["panel"] = cardio1
    for name, url in (
        ("dashboard", f"/projects/{project.slug}/dashboard/"),
        ("releases", f"/projects/{project.slug}/releases/"),
        ("panels", "/review/panels/"),
        ("history", f"/review/items/{in_panel.pk}/history/"),
    ):
        lead = open_as(browser, live_server, "lead")
        lead.goto(f"{live_server.url}{url}")
        pages[name] = lead
    found = {name: axe_serious(page) for name, page in pages.items()}
    assert found == {name: [] for name in pages}, found
