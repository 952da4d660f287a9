"""Control items: items with a known verdict, served unseen among the real ones.

A control is a copy of an item (or of a record from a control file) in the same project and in
the status of the queue it serves, so the page, the API payload and the queue's claim are those
of any other item, and its external id is shaped like the project's real ones. It never moves
on, but to whoever answered it, it reads as a real item would after the same answer
(`control_status_shown`, `control_answered`). When someone answers it, the hooks in
first_pass_apply and consensus_vote hand the review or vote to `control_first_pass_take` /
`control_consensus_take`, which keep the answer as a `ControlAnswer` and delete the placeholder
row in the same transaction: a control never becomes a real verdict, is never approved, and
never reaches a release. The review and vote rows are created first exactly as for a real
item, so the id sequences and responses give nothing away.
"""

from __future__ import annotations

import random
import secrets
import string
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Max, Min
from django.db.models.functions import Length
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from medcot.lifecycle import Status
from medcot.models import AuthorKind, Event, Item, ItemKind, Project
from medcot.services import item_version_create
from review.models import ConsensusVote, FirstPassReview, FirstPassState, Lease, Stage
from review.quality.aggregation import wilson_interval
from review.quality.models import ControlAnswer, ControlItem, ReliabilityAlert
from review.services.common import ReviewError

# Items a control can be copied from, and the verdict each status stands for.
KNOWN_VERDICT = {"approved": True, "discarded": False}


def control_check_stage(stage: str) -> None:
    if stage not in (Stage.FIRST_REVIEW, Stage.CONSENSUS):
        raise ReviewError(_("Controls serve the first-pass or the consensus queue."))


_HEX = set("abcdef")


def _split(model: str) -> tuple[str, str]:
    """An id as (prefix, tail): the prefix runs to its first digit (or, for an id without
    digits, to its last separator) and stays; the tail is what varies from id to id."""
    first_digit = next((i for i, ch in enumerate(model) if ch.isdigit()), None)
    if first_digit is None:
        first_digit = max(model.rfind(sep) for sep in "-_.:/ ") + 1
    return model[:first_digit], model[first_digit:]


def _shaped_like(model: str, *, longer: int = 0) -> str:
    """A fresh id of `model`'s shape: its prefix kept, and in its tail each digit, letter and
    hex letter replaced by a random one of the same kind (separators kept). `longer` puts that
    many more digits in front of the tail (the first one not 0)."""
    prefix, tail = _split(model)
    out = [secrets.choice("123456789")] if longer else []
    out += [secrets.choice(string.digits) for _ in range(max(0, longer - 1))]
    for ch in tail:
        if ch.isdigit():
            out.append(secrets.choice(string.digits))
        elif ch in _HEX:
            out.append(secrets.choice(string.digits + "abcdef"))
        elif ch.islower():
            out.append(secrets.choice(string.ascii_lowercase))
        elif ch.isupper():
            out.append(secrets.choice(string.ascii_uppercase))
        else:
            out.append(ch)
    return prefix + "".join(out)


def _real_ids(project_id: int):
    return Item.objects.filter(project_id=project_id).exclude(
        pk__in=ControlItem.objects.values("item_id")
    )


def _span(*, project_id: int, model: str) -> tuple[str, str]:
    """The part the project's real ids of `model`'s shape (its prefix, its length) all share,
    and the highest of them: a fresh id keeps the first and stays under the second."""
    prefix, _tail = _split(model)
    span = (
        _real_ids(project_id)
        .annotate(n=Length("external_id"))
        .filter(external_id__startswith=prefix, n=len(model))
        .aggregate(low=Min("external_id"), high=Max("external_id"))
    )
    low, high = span["low"] or model, span["high"] or model
    shared = next((i for i, (a, b) in enumerate(zip(low, high, strict=False)) if a != b), len(low))
    return model[: max(len(prefix), shared)], high


def control_external_id(*, project_id: int) -> str:
    """An external id for a control copy that reads like the project's real ones: shaped like
    the id of a real item drawn at random (same prefix, length and kinds of characters) and
    unrelated to the control's source, so a reviewer can neither tell a copy by its id nor
    trace it to its source. Admins find the source through the ControlItem row.

    A free id inside the range the project's ids of that shape already span is preferred: with
    sequential ids (q-1, q-2, …) it is a gap, not the id the next import will bring. With no gap
    left, the id gets three more digits, out of reach of the sequence for a thousandfold growth;
    an import that still brings it is refused for that line (changed content), nothing lost."""
    models = list(
        _real_ids(project_id).order_by("?").values_list("external_id", flat=True)[:5]
    ) or [secrets.token_hex(4)]
    taken = Item.objects.filter(project_id=project_id)
    spans: dict[str, tuple[str, str]] = {}
    for attempt in range(60):
        model = models[attempt % len(models)]
        if model not in spans:
            spans[model] = _span(project_id=project_id, model=model)
        fixed, ceiling = spans[model]
        candidate = (fixed + _shaped_like(model)[len(fixed) :])[:200]
        if candidate > ceiling or taken.filter(external_id=candidate).exists():
            continue
        return candidate
    while True:
        candidate = _shaped_like(secrets.choice(models), longer=3)[:200]
        if not taken.filter(external_id=candidate).exists():
            return candidate


def _copy_item(*, source: Item, stage: str, content: dict) -> Item:
    copy = Item.objects.create(
        project_id=source.project_id,
        kind=source.kind,
        external_id=control_external_id(project_id=source.project_id),
        question_type=source.question_type,
        specialty=source.specialty,
        cognitive_level=source.cognitive_level,
        difficulty=source.difficulty,
        language=source.language,
        source=source.source,
        case_text=source.case_text,
        status=stage,
    )
    # A seed is its own family (as every imported seed is); a variant keeps its seed's family.
    copy.family_id = copy.pk if source.family_id in (None, source.pk) else source.family_id
    Item.objects.filter(pk=copy.pk).update(family_id=copy.family_id)
    _versions_like_real(copy=copy, content=content)
    return copy


def _version_authors(*, project_id: int, kind: str) -> list[str]:
    """Who wrote each version of a real item of this kind as it reaches review, read off the
    project's newest such item that nobody has edited (a seed: imported, then the model's chain
    of thought), so a control shows the same version number and history; a seed's usual two
    when the project has none."""
    real = (
        Item.objects.filter(project_id=project_id, kind=kind, control__isnull=True)
        .exclude(status__in=(Status.IMPORTED, Status.GENERATING))
        .exclude(current_version=None)
        .exclude(versions__author_kind__in=(AuthorKind.HUMAN, AuthorKind.LLM_GUIDED))
        .order_by("-id")
        .first()
    )
    if real is not None:
        return list(real.versions.order_by("number").values_list("author_kind", flat=True))
    return [AuthorKind.IMPORT, AuthorKind.LLM] if kind == ItemKind.SEED else [AuthorKind.LLM]


def _versions_like_real(*, copy: Item, content: dict) -> None:
    """Write the copy's content as the versions a real item of its kind shows in review: an
    imported version carries the question without the chain of thought, the last one all of it.
    A control reviewed at "v1" among items at "v2" would give itself away."""
    authors = _version_authors(project_id=copy.project_id, kind=copy.kind)
    for number, author_kind in enumerate(authors, start=1):
        last = number == len(authors)
        version = (
            dict(content)
            if last or author_kind != AuthorKind.IMPORT
            else content
            | {
                "cot": "",
                "reasoning": "",
            }
        )
        item_version_create(item=copy, author_kind=author_kind, reason="", **version)


def control_create_from_item(
    *, admin, item: Item, stage: str = Stage.FIRST_REVIEW, expected_valid: bool | None = None
) -> ControlItem:
    """Make a reviewed item a control for `stage`. Its verdict is the one the pipeline reached
    (approved: valid; discarded: not valid) unless the admin says otherwise."""
    control_check_stage(stage)
    item = Item.objects.select_related("current_version").get(pk=item.pk)
    if hasattr(item, "control"):
        raise ReviewError(_("This item is a control copy already."))
    if expected_valid is None:
        if item.status not in KNOWN_VERDICT:
            raise ReviewError(
                _("Only approved or discarded items have a known verdict; say which it is.")
            )
        expected_valid = KNOWN_VERDICT[item.status]
    version = item.current_version
    if version is None:
        raise ReviewError(_("This item has no content yet."))
    if ControlItem.objects.filter(source_item=item, stage=stage, active=True).exists():
        raise ReviewError(_("This item is already a control for that queue."))
    content = {
        "stem": version.stem,
        "options": version.options,
        "answer": version.answer,
        "cot": version.cot,
        "reasoning": version.reasoning,
    }
    with transaction.atomic():
        copy = _copy_item(source=item, stage=stage, content=content)
        control = ControlItem.objects.create(
            project_id=item.project_id,
            item=copy,
            source_item=item,
            source=ControlItem.Source.ITEM,
            stage=stage,
            expected_valid=expected_valid,
            expected_answer=version.answer,
            created_by=admin,
        )
        Event.objects.create(
            project_id=item.project_id,
            item_id=item.pk,
            actor=admin,
            kind="control_created",
            data={"control": control.pk, "stage": stage, "valid": expected_valid},
        )
    return control


def control_create_from_record(
    *, admin, project: Project, record, stage: str, expected_valid: bool
) -> ControlItem:
    """A control from one record of a control file (a parsed import record)."""
    control_check_stage(stage)
    with transaction.atomic():
        copy = Item.objects.create(
            project=project,
            kind="seed",
            external_id=control_external_id(project_id=project.pk),
            question_type=record.question_type or "K",
            specialty=record.specialty or "",
            cognitive_level=record.cognitive_level or "",
            difficulty=record.difficulty or "",
            language=record.language or project.language,
            source=record.source or "",
            case_text=getattr(record, "case_text", "") or "",
            status=stage,
        )
        Item.objects.filter(pk=copy.pk).update(family_id=copy.pk)
        copy.family_id = copy.pk
        content = {
            "stem": record.stem,
            "options": record.options,
            "answer": record.answer,
            "cot": getattr(record, "cot", "") or "",
        }
        _versions_like_real(copy=copy, content=content)
        return ControlItem.objects.create(
            project=project,
            item=copy,
            source=ControlItem.Source.FILE,
            stage=stage,
            expected_valid=expected_valid,
            expected_answer=record.answer,
            created_by=admin,
        )


def control_set_active(*, control: ControlItem, active: bool) -> ControlItem:
    ControlItem.objects.filter(pk=control.pk).update(active=active)
    control.active = active
    return control


# --- Serving ----------------------------------------------------------------------------------


def control_probe_sql(
    *, user_id: int, now_db, stage: str, project_id: int | None, skipped: set[int]
) -> tuple[str, list]:
    """A free, active control of `stage` that `user` has not answered, in random order (so that
    controls are spread over people). Same locking as the queue's own probe."""
    item_t = Item._meta.db_table
    control_t = ControlItem._meta.db_table
    answer_t = ControlAnswer._meta.db_table
    lease_t = Lease._meta.db_table
    review_t = FirstPassReview._meta.db_table
    project_t = Project._meta.db_table
    params: list = [stage, stage]
    where = ["c.active", "c.stage = %s", "i.status = %s", "p.control_every > 0"]
    if project_id is not None:
        where.append("i.project_id = %s")
        params.append(project_id)
    if skipped:
        where.append(f"i.id NOT IN ({', '.join(['%s'] * len(skipped))})")
        params.extend(sorted(skipped))
    where.append(
        f"NOT EXISTS (SELECT 1 FROM {lease_t} l WHERE l.item_id = i.id "  # noqa: S608
        "AND l.stage = %s AND l.expires_at > %s)"
    )
    params.extend([stage, now_db])
    where.append(
        f"NOT EXISTS (SELECT 1 FROM {answer_t} a WHERE a.control_id = c.id "  # noqa: S608
        "AND a.reviewer_id = %s)"
    )
    params.append(user_id)
    where.append(
        f"NOT EXISTS (SELECT 1 FROM {review_t} r WHERE r.item_id = i.id "  # noqa: S608
        "AND r.state <> %s)"
    )
    params.append(FirstPassState.UNDONE)
    sql = (
        f"SELECT i.*, p.control_every AS control_every FROM {item_t} i "  # noqa: S608
        f"JOIN {control_t} c ON c.item_id = i.id JOIN {project_t} p ON p.id = i.project_id "
        f"WHERE {' AND '.join(where)} ORDER BY random() LIMIT 1"
    )
    if connection.features.has_select_for_update_skip_locked:
        sql += " FOR UPDATE OF i SKIP LOCKED"
    return sql, params


def control_probe(*, user, now, stage: str, project_id: int | None, skipped: set[int]):
    """The control to serve on this claim, or None. Called on every claim (the query runs
    whether or not a control is then served, so a claim takes the same time either way); a
    control is served with probability 1 / the project's `control_every`."""
    sql, params = control_probe_sql(
        user_id=user.pk,
        now_db=connection.ops.adapt_datetimefield_value(now),
        stage=stage,
        project_id=project_id,
        skipped=skipped,
    )
    item = next(iter(Item.objects.raw(sql, params)), None)
    if item is None:
        return None
    return item if random.random() * item.control_every < 1 else None


# --- Answers ----------------------------------------------------------------------------------


def _record(*, control: ControlItem, reviewer, given_valid: bool, answer: str, seconds: int, data):
    correct = given_valid == control.expected_valid
    if control.stage == Stage.CONSENSUS and control.expected_valid and given_valid:
        correct = answer == control.expected_answer
    record, _created = ControlAnswer.objects.get_or_create(
        control=control,
        reviewer=reviewer,
        defaults={
            "stage": control.stage,
            "given_valid": given_valid,
            "answer": answer,
            "correct": correct,
            "seconds_on_item": seconds,
            "data": data,
        },
    )
    reliability_alert_check(project_id=control.project_id, reviewer=reviewer)
    return record


def control_first_pass_take(*, review: FirstPassReview, item: Item) -> bool:
    """Called by first_pass_apply with the item locked: if the item is a control, keep the
    verdict as a control answer, delete the review and the lease, and return True."""
    control = ControlItem.objects.filter(item_id=item.pk).first()
    if control is None:
        return False
    _record(
        control=control,
        reviewer=review.reviewer,
        given_valid=review.outcome == "pass",
        answer=(review.fix or {}).get("answer", "") or item.current_version.answer,
        seconds=review.seconds_on_item,
        data={
            "relevance": review.relevance,
            "correctness": review.correctness,
            "sufficiency": review.sufficiency,
            "outcome": review.outcome,
            "reason": review.reason,
            "comment": review.comment,
            "confirmations": review.confirmations,
            "submitted_at": review.created_at.isoformat(),
        },
    )
    FirstPassReview.objects.filter(pk=review.pk).delete()
    Lease.objects.filter(item=item, stage=Stage.FIRST_REVIEW).delete()
    return True


def control_consensus_take(*, vote: ConsensusVote, item: Item) -> bool:
    """Called by consensus_vote with the item locked, after the vote row was written."""
    control = ControlItem.objects.filter(item_id=item.pk).first()
    if control is None:
        return False
    _record(
        control=control,
        reviewer=vote.expert,
        given_valid=vote.answer == item.current_version.answer and vote.approve_phrasing,
        answer=vote.answer,
        seconds=0,
        data={
            "approve_phrasing": vote.approve_phrasing,
            "comment": vote.comment,
            "confirmations": vote.confirmations,
        },
    )
    ConsensusVote.objects.filter(pk=vote.pk).delete()
    Lease.objects.filter(item=item, stage=Stage.CONSENSUS).delete()
    return True


# --- What the person who answered sees afterwards ----------------------------------------------


def control_answered(*, item_id: int, reviewer) -> bool:
    """Whether `reviewer` has answered the control served as item `item_id` (a real item's
    review or vote row plays this part: "already judged", "already voted")."""
    return ControlAnswer.objects.filter(control__item_id=item_id, reviewer=reviewer).exists()


def control_last_answered_at(*, reviewer, stage: str):
    """When `reviewer` submitted their latest answer to a control of `stage`, or None."""
    data = (
        ControlAnswer.objects.filter(reviewer=reviewer, stage=stage)
        .order_by("-created_at", "-id")
        .values_list("data", "created_at")
        .first()
    )
    if data is None:
        return None
    submitted = data[0].get("submitted_at")
    return parse_datetime(submitted) if submitted else data[1]


def _consensus_status_shown(*, control: ControlItem, reviewer_id: int) -> str | None:
    """The status a real item would have reached with this person's vote. The control's answers,
    in order, are played as successive real items: each takes votes until the consensus rule
    (review.services.consensus) settles it, then the next answer starts a fresh one."""
    from review.services.consensus import consensus_outcome

    project = Project.objects.get(pk=control.project_id)
    answers = control.answers.order_by("created_at", "id").values_list("reviewer_id", "given_valid")
    agree = votes = 0
    for answerer, valid in answers:
        votes += 1
        agree += int(valid)
        status = consensus_outcome(agree=agree, votes=votes, needed=project.consensus_minimum)
        if answerer == reviewer_id:
            return status
        if status != Stage.CONSENSUS:
            agree = votes = 0
    return None


def control_status_shown(*, item_id: int, reviewer) -> str | None:
    """What the item's status reads to `reviewer` once they have answered it, when it is a
    control: the status a real item would have after the same answer (first pass: discarded or
    on to re-answering; consensus: approved, discarded or still waiting). None for a real item
    or a control this person has not answered."""
    reviewer_id = getattr(reviewer, "pk", reviewer)
    answer = (
        ControlAnswer.objects.filter(control__item_id=item_id, reviewer_id=reviewer_id)
        .select_related("control")
        .first()
    )
    if answer is None:
        return None
    if answer.stage == Stage.FIRST_REVIEW:
        return "discarded" if answer.data.get("outcome") == "discarded" else "reanswering"
    return _consensus_status_shown(control=answer.control, reviewer_id=reviewer_id)


# --- Accuracy and alerts ------------------------------------------------------------------------


def control_accuracy(*, project_id: int, reviewer_id: int) -> dict:
    rows = ControlAnswer.objects.filter(
        control__project_id=project_id, reviewer_id=reviewer_id
    ).values_list("correct", flat=True)
    n = len(rows)
    k = sum(1 for correct in rows if correct)
    low, high = wilson_interval(k, n)
    return {"n": n, "correct": k, "accuracy": (k / n) if n else None, "low": low, "high": high}


def reliability_alert_check(*, project_id: int, reviewer) -> ReliabilityAlert | None:
    """Open an alert (and write an Event) when the reviewer's control accuracy in the project
    is below the threshold over at least the minimum number of controls. One open alert per
    reviewer; it stays open until an admin acts on it."""
    project = Project.objects.get(pk=project_id)
    figures = control_accuracy(project_id=project_id, reviewer_id=reviewer.pk)
    if figures["n"] < max(1, project.control_minimum):
        return None
    if figures["accuracy"] * 100 >= project.control_threshold:
        return None
    if ReliabilityAlert.objects.filter(
        project_id=project_id, reviewer=reviewer, closed_at__isnull=True
    ).exists():
        return None
    alert = ReliabilityAlert.objects.create(
        project_id=project_id,
        reviewer=reviewer,
        accuracy=figures["accuracy"],
        n_controls=figures["n"],
    )
    Event.objects.create(
        project_id=project_id,
        actor=None,
        kind="reviewer_below_control_threshold",
        data={
            "reviewer": reviewer.pk,
            "accuracy": round(figures["accuracy"], 4),
            "controls": figures["n"],
            "threshold": project.control_threshold,
        },
    )
    return alert


def reliability_alert_close(*, alert: ReliabilityAlert, admin) -> ReliabilityAlert:
    ReliabilityAlert.objects.filter(pk=alert.pk, closed_at__isnull=True).update(
        closed_at=timezone.now(), closed_by=admin
    )
    alert.refresh_from_db()
    return alert


def control_item_ids(*, project_id: int | None = None):
    """Ids of control copies (to keep them out of anything that counts real items)."""
    qs = ControlItem.objects.all()
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    return qs.values("item_id")


# Above this many records a control file is refused: controls are a sample, not a data set.
CONTROL_FILE_MAX = 2000


def control_file_import(
    *,
    admin,
    project: Project,
    data: bytes,
    file_name: str,
    stage: str = Stage.FIRST_REVIEW,
    expected_valid: bool = True,
) -> list[ControlItem]:
    """Controls from a file in any layout the seed import reads (medcot/imports). Every record
    of the file gets the verdict given (a file of correct items, or one of faulty ones). All or
    nothing: a file with any bad line creates no control and the error says which lines."""
    from medcot.imports.formats import FormatError, ImportOptions, parse_seed_file

    control_check_stage(stage)
    try:
        parsed = parse_seed_file(data, ImportOptions(file_name=file_name))
    except FormatError as exc:
        raise ReviewError(str(exc)) from exc
    if parsed.errors:
        lines = "; ".join(f"{e.line}: {e.message}" for e in parsed.errors.kept[:5])
        raise ReviewError(
            _("The control file has %(n)d bad records (%(lines)s); no control was created.")
            % {"n": len(parsed.errors), "lines": lines}
        )
    if not parsed.records:
        raise ReviewError(_("The control file holds no question."))
    if len(parsed.records) > CONTROL_FILE_MAX:
        raise ReviewError(
            _("A control file holds at most %(n)d questions.") % {"n": CONTROL_FILE_MAX}
        )
    with transaction.atomic():
        made = [
            control_create_from_record(
                admin=admin, project=project, record=r, stage=stage, expected_valid=expected_valid
            )
            for r in parsed.records
        ]
        Event.objects.create(
            project=project,
            actor=admin,
            kind="controls_imported",
            data={"file": file_name, "count": len(made), "stage": stage, "valid": expected_valid},
        )
    return made


def second_opinion_request(*, alert: ReliabilityAlert, admin) -> ReliabilityAlert:
    """The admin's one action on an alert: every first-pass verdict the reviewer gives from now
    on, while the alert is open, gets a second independent verdict (review/quality/double.py);
    the ones they gave in the last 30 days are listed on the reliability page for a look.
    Idempotent."""
    with transaction.atomic():
        locked = ReliabilityAlert.objects.select_for_update().get(pk=alert.pk)
        if locked.closed_at is not None:
            raise ReviewError(_("This alert is closed."))
        if locked.second_opinion_at is None:
            locked.second_opinion_at = timezone.now()
            locked.save(update_fields=["second_opinion_at"])
            Event.objects.create(
                project_id=locked.project_id,
                actor=admin,
                kind="second_opinion_requested",
                data={"reviewer": locked.reviewer_id, "alert": locked.pk},
            )
    return locked


def recent_verdicts(*, project_id: int, reviewer_id: int, days: int = 30):
    since = timezone.now() - timedelta(days=days)
    return (
        FirstPassReview.objects.filter(
            item__project_id=project_id, reviewer_id=reviewer_id, created_at__gte=since
        )
        .exclude(state=FirstPassState.UNDONE)
        .select_related("item")
        .order_by("-created_at")
    )
