"""No tell: what a reviewer sees of a control (page, API, afterwards) is what they would see of a
real item in the same position. Each test serves a control to one person and a real item of the
same content to another, and compares what each sees once the item's own ids are normalised."""

import re

import pytest

from medcot.lifecycle import Status
from medcot.models import Item, Project
from review.models import ConsensusVote, FirstPassReview
from review.quality.models import ControlAnswer, ControlItem
from tests.api.conftest import token_client
from tests.factories import ItemFactory

pytestmark = pytest.mark.django_db

NEXT = "/api/review/first-pass/next/"
UNDO = "/api/review/first-pass/undo/"
PASS = {"relevance": True, "correctness": True, "sufficiency": True, "action": "pass"}
AGREE = {"answer": "A", "approve_phrasing": True}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+(Z|[+-]\d\d:\d\d)?")


def _every(project, n):
    Project.objects.filter(pk=project.pk).update(control_every=n)


def _normalised(value, items: list[Item]):
    """`value` (text or JSON) with the ids of `items` replaced by markers numbered in the order
    they are given, and timestamps, CSRF tokens and the person's name by markers too."""
    if isinstance(value, dict):
        out = {}
        for key, v in value.items():
            ids = {item.pk: n for n, item in enumerate(items)}
            if key in ("id", "item", "family_id") and isinstance(v, int) and v in ids:
                out[key] = f"<item{ids[v]}>"
            else:
                out[key] = _normalised(v, items)
        return out
    if isinstance(value, list | tuple):
        return [_normalised(v, items) for v in value]
    if not isinstance(value, str):
        return value
    for n, item in enumerate(items):
        value = value.replace(item.external_id, f"<external{n}>")
        value = re.sub(rf"(?<=[/=\"-]){item.pk}(?=[/\"&-])", f"<item{n}>", value)
    value = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "<csrf>", value)
    value = re.sub(r'CSRFToken": "[^"]+"', "<csrf>", value)
    value = re.sub(r'data-shown-at="\d+"', "<shown-at>", value)
    value = re.sub(r'<span class="who".*?</span>', "<who>", value)
    value = re.sub(r"\breviewer_b\b", "reviewer", value)
    return TIMESTAMP.sub("<time>", value)


def _in_order(text: str, project) -> list[Item]:
    """The project's items whose external id `text` shows, in the order it shows them."""
    shown = [(text.find(i.external_id), i) for i in Item.objects.filter(project=project)]
    return [item for at, item in sorted(shown, key=lambda p: p[0]) if at >= 0]


def _serve_both(make_control, project, reviewer, reviewer_b, serve):
    """`serve(person)` once with a control in the queue (to `reviewer`) and once with controls
    off and only real items left (to `reviewer_b`), among real items of the same content.
    Returns (control, what `reviewer` saw, what `reviewer_b` saw)."""
    _every(project, 1)
    control = make_control()
    for _ in range(4):
        ItemFactory(project=project, status=Status.FIRST_REVIEW)
    seen_control = serve(reviewer)
    _every(project, 0)
    seen_real = serve(reviewer_b)
    return control.item, seen_control, seen_real


# --- Tell 1: the external id ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ids", "shape"),
    [
        (lambda n: f"q-{n * 7}", r"q-\d{3}"),
        (lambda n: f"pmc-{n:04d}-{(n * 2654435761) % 16**6:06x}", r"pmc-00\d\d-[0-9a-f]{6}"),
        (lambda n: f"USMLE_{n * 13:05d}", r"USMLE_00\d{3}"),
    ],
)
def test_a_control_copy_has_an_id_shaped_like_the_projects_own(project, admin_user, ids, shape):
    from review.quality.controls import control_create_from_item

    for n in range(15, 40):
        ItemFactory(project=project, status=Status.FIRST_REVIEW, external_id=ids(n))
    source = ItemFactory(project=project, status=Status.APPROVED, external_id=ids(40))
    copies = [
        control_create_from_item(admin=admin_user, item=source, stage=stage).item
        for stage in (Status.FIRST_REVIEW, Status.CONSENSUS)
    ]
    for copy in copies:
        assert re.fullmatch(shape, copy.external_id), copy.external_id
        assert source.external_id not in copy.external_id
        # Inside the range the project's ids already span: not the next id an import brings.
        assert len(copy.external_id) == len(source.external_id)
        assert copy.external_id < ids(40)
    # Admins still know where each control came from.
    assert {c.source_item_id for c in ControlItem.objects.all()} == {source.pk}


def test_with_no_gap_left_a_copy_takes_a_longer_id_than_the_sequence(project, admin_user):
    from review.quality.controls import control_create_from_item

    for n in range(10):
        ItemFactory(project=project, status=Status.FIRST_REVIEW, external_id=f"q-{n}")
    source = ItemFactory(project=project, status=Status.APPROVED, external_id="q-10")
    ItemFactory(project=project, status=Status.APPROVED, external_id="q-11")
    copy = control_create_from_item(admin=admin_user, item=source).item
    assert re.fullmatch(r"q-[1-9]\d{3,4}", copy.external_id), copy.external_id


def test_the_first_pass_page_of_a_control_is_a_real_items_page(
    make_control, project, reviewer, reviewer_b, client
):
    def serve(person):
        client.force_login(person)
        return client.get("/review/first-pass/").content.decode()

    control, page_control, page_real = _serve_both(
        make_control, project, reviewer, reviewer_b, serve
    )
    shown_control, shown_real = _in_order(page_control, project), _in_order(page_real, project)
    assert shown_control[0] == control and not hasattr(shown_real[0], "control")
    assert _normalised(page_control, shown_control) == _normalised(page_real, shown_real)


def test_the_api_payload_of_a_control_is_a_real_items_payload(
    make_control, project, reviewer, reviewer_b
):
    def serve(person):
        return token_client(person).post(NEXT, {}, format="json").json()

    control, body_control, body_real = _serve_both(
        make_control, project, reviewer, reviewer_b, serve
    )
    assert body_control["item"]["id"] == control.pk
    assert body_control["item"]["family_id"] == control.pk
    served = [
        Item.objects.get(pk=b[k]["id"])
        for b in (body_control, body_real)
        for k in ("item", "following")
    ]
    assert _normalised(body_control, served[:2]) == _normalised(body_real, served[2:])


# --- Tell 2: the item after the verdict ------------------------------------------------------


@pytest.mark.parametrize("verdict", ["pass", "discard"])
def test_after_the_verdict_a_control_reads_like_a_real_item(
    make_control, project, reviewer, reviewer_b, verdict
):
    body = (
        PASS
        if verdict == "pass"
        else {**PASS, "correctness": False, "action": "discard", "reason": "wrong key"}
    )

    def serve(person):
        api = token_client(person)
        item = Item.objects.get(pk=api.post(NEXT, {}, format="json").json()["item"]["id"])
        url = f"/api/review/items/{item.pk}/first-pass/"
        submitted = api.post(url, body, format="json")
        again = api.post(url, body, format="json")
        skip = api.post(f"/api/review/items/{item.pk}/first-pass/skip/", {}, format="json")
        undo = api.post(UNDO, {}, format="json")
        seen = [(r.status_code, r.json()) for r in (submitted, again, skip, undo, api.get(UNDO))]
        return _normalised(seen, [item])

    control, seen_control, seen_real = _serve_both(
        make_control, project, reviewer, reviewer_b, serve
    )
    assert seen_control[0][1]["item_status"] == (
        Status.REANSWERING if verdict == "pass" else Status.DISCARDED
    )
    assert "already judged" in repr(seen_control[1][1]), seen_control[1]
    for control_seen, real_seen in zip(seen_control, seen_real, strict=True):
        # The review's own id is a row id of the reviews table, whichever item it is about.
        control_body = {k: v for k, v in control_seen[1].items() if k != "id"}
        real_body = {k: v for k, v in real_seen[1].items() if k != "id"}
        assert (control_seen[0], control_body) == (real_seen[0], real_body)
    # Still never a verdict: the control moved nowhere and holds a control answer only.
    control.refresh_from_db()
    assert control.status == Status.FIRST_REVIEW
    assert not FirstPassReview.objects.filter(item=control).exists()
    assert ControlAnswer.objects.filter(control__item=control, reviewer=reviewer).count() == 1


# --- Tell 3: the consensus vote that settles -------------------------------------------------


def test_the_vote_that_would_settle_a_control_answers_like_the_real_one(
    make_control, project, expert_a, expert_b
):
    _every(project, 1)
    control = make_control(stage=Status.CONSENSUS).item
    real = ItemFactory(project=project, status=Status.CONSENSUS)

    def votes(item):
        seen = []
        for expert in (expert_a, expert_b):
            api = token_client(expert)
            url = f"/api/review/items/{item.pk}/consensus/"
            response = api.post(url, AGREE, format="json")
            seen.append((response.status_code, _normalised(response.json(), [item])))
            again = api.post(url, AGREE, format="json")
            seen.append((again.status_code, _normalised(again.json(), [item])))
        return seen

    seen_control = votes(control)
    seen_real = votes(real)
    assert [s[1].get("item_status") for s in seen_real[::2]] == [
        Status.CONSENSUS,
        Status.APPROVED,
    ]
    for control_seen, real_seen in zip(seen_control, seen_real, strict=True):
        control_body = {k: v for k, v in control_seen[1].items() if k != "id"}
        real_body = {k: v for k, v in real_seen[1].items() if k != "id"}
        assert (control_seen[0], control_body) == (real_seen[0], real_body)
    # The real item is approved on two votes; the control is neither approved nor voted on.
    real.refresh_from_db()
    control.refresh_from_db()
    assert real.status == Status.APPROVED and control.status == Status.CONSENSUS
    assert not ConsensusVote.objects.filter(item=control).exists()
    assert ControlAnswer.objects.filter(control__item=control).count() == 2


def test_after_settling_a_control_a_third_expert_starts_afresh(
    make_control, project, expert_a, expert_b, expert_c
):
    """The control's answers are played as successive real items: the vote after the one that
    'approved' it opens a new round, as a fresh item would."""
    _every(project, 1)
    control = make_control(stage=Status.CONSENSUS).item
    statuses = [
        token_client(e)
        .post(f"/api/review/items/{control.pk}/consensus/", AGREE, format="json")
        .json()["item_status"]
        for e in (expert_a, expert_b, expert_c)
    ]
    assert statuses == [Status.CONSENSUS, Status.APPROVED, Status.CONSENSUS]
    # The expert whose vote "approved" it no longer finds it, as with an approved item.
    assert token_client(expert_b).get(f"/api/review/items/{control.pk}/consensus/").status_code in (
        404,
        405,
    )


def test_after_the_undo_window_a_control_reads_like_a_real_item(
    make_control, project, reviewer, reviewer_b, settings
):
    """With an undo window: while held both read first_review and can be undone; once the
    window has passed (the periodic apply), both read as judged and taken effect."""
    from review.services.first_pass import first_pass_apply_due

    settings.REVIEW_UNDO_SECONDS = 60

    def serve(person):
        api = token_client(person)
        item = Item.objects.get(pk=api.post(NEXT, {}, format="json").json()["item"]["id"])
        url = f"/api/review/items/{item.pk}/first-pass/"
        held = api.post(url, PASS, format="json")
        undoable = api.get(UNDO)
        first_pass_apply_due(force=True, reviewer=person)
        later = [api.post(url, PASS, format="json"), api.get(UNDO), api.post(UNDO, {})]
        seen = [(r.status_code, r.json()) for r in (held, undoable, *later)]
        return _normalised(seen, [item])

    control, seen_control, seen_real = _serve_both(
        make_control, project, reviewer, reviewer_b, serve
    )
    assert seen_control[0][1]["item_status"] == Status.FIRST_REVIEW
    assert "already judged" in repr(seen_control[2][1])
    for control_seen, real_seen in zip(seen_control, seen_real, strict=True):
        control_body = _without_ids(control_seen[1])
        assert (control_seen[0], control_body) == (real_seen[0], _without_ids(real_seen[1]))
    assert ControlAnswer.objects.filter(control__item=control, reviewer=reviewer).count() == 1
    assert not FirstPassReview.objects.filter(item=control).exists()


def _without_ids(body):
    """A review's own row id (and the time it takes effect) is no item's: left out."""
    if isinstance(body, dict):
        return {k: _without_ids(v) for k, v in body.items() if k != "id"}
    return body


# --- The version history ---------------------------------------------------------------------


def test_a_control_shows_the_version_history_of_a_real_item_of_its_kind(project, admin_user):
    """A seed reaches review as "v2" (imported, then the model's chain of thought): a control
    copied from an item a reviewer fixed (v3, by a person) still reads as v2, with the imported
    version holding no chain of thought, as a real seed's does."""
    from medcot.services import item_version_create
    from review.quality.controls import control_create_from_item

    real = ItemFactory(project=project, status=Status.FIRST_REVIEW, version__cot="")
    item_version_create(item=real, author_kind="llm", reason="", cot="1. Because.")
    source = ItemFactory(project=project, status=Status.APPROVED)
    item_version_create(item=source, author_kind="human", reason="fixed", cot="1. Fixed.")
    expected = list(real.versions.order_by("number").values_list("author_kind", flat=True))
    assert expected == ["import", "llm"]

    copy = control_create_from_item(admin=admin_user, item=source).item
    versions = list(copy.versions.order_by("number"))
    assert [v.author_kind for v in versions] == expected
    assert versions[0].cot == "" and versions[-1].cot == "1. Fixed."
    assert copy.current_version.number == real.current_version.number == 2
