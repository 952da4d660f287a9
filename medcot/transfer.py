"""Whole-project export and load: one gzipped JSON-lines file that carries a project with every
row that belongs to it, for moving a project between installations or keeping it beside a
database dump.

Which rows belong to a project is discovered, not listed: every model of the MedCoT apps with a
chain of foreign keys to `Project` (items, versions, events, imports, runs, reviews, panels,
scores, releases, ...), plus the rows those reference that belong to no project (LLM profiles,
prompt versions, rubric guides). A model added later is carried without touching this file.

People are carried by username, with their roles and their one-to-one profile rows, never with
passwords: a loaded user signs in after an admin sets a password. Primary keys are kept, so the
target must not already hold rows with those keys ("load into an empty database"); a clash is
refused before anything is written. The file is deterministic: export, load elsewhere, export
again, and the two files are byte-identical.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections import defaultdict, deque
from collections.abc import Iterator
from pathlib import Path

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import serializers
from django.core.management.color import no_style
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction

from medcot.models import Project

FORMAT = "medcot-project-export"
VERSION = 1
APP_LABELS = ("medcot", "generation", "review", "releases")


class TransferError(Exception):
    """The file cannot be loaded here; the message says why."""


class ExportEncoder(DjangoJSONEncoder):
    """DjangoJSONEncoder, but times keep all six digits of their microseconds.

    Django's encoder cuts datetimes to milliseconds and drops the fraction when it is zero, so
    a timestamp at .000500 s was written as ".000", loaded as .000000, and written the second
    time with no fraction at all: the round trip lost data and the two files differed for any
    row stamped in the first millisecond of a second (about one timestamp in a thousand).
    """

    def default(self, o):
        if isinstance(o, dt.datetime):
            if o.tzinfo is not None:
                o = o.astimezone(dt.UTC)
            return o.isoformat(timespec="microseconds")
        if isinstance(o, dt.time):
            return o.isoformat(timespec="microseconds")
        return super().default(o)


def _our_models() -> list[type[models.Model]]:
    found = []
    for label in APP_LABELS:
        try:
            config = apps.get_app_config(label)
        except LookupError:
            continue
        found.extend(m for m in config.get_models() if not m._meta.proxy)
    return found


def _label(model) -> str:
    return model._meta.label_lower


def _project_paths() -> dict[type[models.Model], str]:
    """For each model with a foreign-key chain to Project, the lookup that reaches it."""
    # A list, not a set: when a model reaches Project along two chains, the one found first
    # wins, and that must not depend on the hash order of model classes in this process.
    ours = _our_models()
    paths: dict[type[models.Model], str] = {Project: "pk"}
    queue = deque([Project])
    while queue:
        target = queue.popleft()
        for model in ours:
            if model in paths:
                continue
            for field in model._meta.concrete_fields:
                if field.is_relation and field.related_model is target:
                    prefix = paths[target]
                    paths[model] = field.name if prefix == "pk" else f"{field.name}__{prefix}"
                    queue.append(model)
                    break
    return paths


def _user_fields(model) -> list[str]:
    user_model = get_user_model()
    return [
        f.name
        for f in model._meta.get_fields()
        if f.is_relation
        and f.concrete
        and f.related_model is user_model
        and (f.many_to_one or f.one_to_one or f.many_to_many)
    ]


def _profile_models() -> list[type[models.Model]]:
    user_model = get_user_model()
    return [
        m
        for m in _our_models()
        if any(f.one_to_one and f.related_model is user_model for f in m._meta.concrete_fields)
    ]


def _serialize(obj) -> dict:
    return serializers.serialize("python", [obj])[0]


def _referenced_rows_add(rows: dict, *, paths: dict) -> None:
    """Add the rows outside any project that exported rows point at (profiles, prompts,
    rubric guides), following references until none is missing."""
    ours = set(_our_models())
    pending = deque(m for m in list(rows))
    while pending:
        model = pending.popleft()
        for field in model._meta.concrete_fields:
            target = field.related_model
            if not field.is_relation or target not in ours or target in paths:
                continue
            wanted = (
                {r["fields"].get(field.name) for r in rows[model].values()}
                - set(rows[target])
                - {None}
            )
            if wanted:
                for obj in target._base_manager.filter(pk__in=wanted):
                    rows[target][obj.pk] = _serialize(obj)
                pending.append(target)


def _referenced_user_ids(rows: dict) -> set[int]:
    """The ids of every user the exported rows name."""
    user_ids: set[int] = set()
    for model, by_pk in rows.items():
        for name in _user_fields(model):
            for row in by_pk.values():
                value = row["fields"].get(name)
                if isinstance(value, list):
                    user_ids.update(value)
                elif value is not None:
                    user_ids.add(value)
    return user_ids


def _user_lines(user, *, profile_models: set) -> Iterator[dict]:
    """A user's line (by username, with their groups), then each of their profile rows."""
    user_model = get_user_model()
    yield {
        "model": "auth.user",
        "username": user.get_username(),
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "is_active": user.is_active,
        "groups": sorted(user.groups.values_list("name", flat=True)),
    }
    for profile_model in sorted(profile_models, key=_label):
        field = next(
            f.name
            for f in profile_model._meta.concrete_fields
            if f.one_to_one and f.related_model is user_model
        )
        profile = profile_model._base_manager.filter(**{field: user}).first()
        if profile is not None:
            data = _serialize(profile)
            data["fields"][field] = user.get_username()
            data.pop("pk")
            yield data


def project_export_rows(*, project: Project) -> Iterator[dict]:
    """Every line of the export file, header first, in a stable order."""
    paths = _project_paths()
    profile_models = set(_profile_models())
    ordered = [m for m in _our_models() if m in paths and m not in profile_models]
    rows: dict[type[models.Model], dict[object, dict]] = defaultdict(dict)
    for model in ordered:
        lookup = paths[model]
        for obj in model._base_manager.filter(**{lookup: project.pk}).order_by("pk"):
            rows[model][obj.pk] = _serialize(obj)
    _referenced_rows_add(rows, paths=paths)
    user_model = get_user_model()
    user_ids = _referenced_user_ids(rows)
    users = {u.pk: u for u in user_model._base_manager.filter(pk__in=user_ids)}
    names = {pk: u.get_username() for pk, u in users.items()}
    model_order = [m for m in _our_models() if m in rows]
    yield {
        "format": FORMAT,
        "version": VERSION,
        "project": project.slug,
        "counts": {_label(m): len(rows[m]) for m in model_order},
        "users": len(users),
    }
    for user in sorted(users.values(), key=lambda u: u.get_username()):
        yield from _user_lines(user, profile_models=profile_models)
    for model in model_order:
        user_fields = _user_fields(model)
        for pk in sorted(rows[model]):
            data = rows[model][pk]
            for name in user_fields:
                value = data["fields"].get(name)
                if isinstance(value, list):
                    data["fields"][name] = sorted(names[v] for v in value)
                elif value is not None:
                    data["fields"][name] = names[value]
            yield data


def project_export(*, project: Project, path: Path) -> dict:
    """Write the project to `path` (gzip when it ends in .gz); return the header."""
    header: dict = {}
    with open(path, "wb") as raw:
        # No name and mtime=0 in the gzip header, so equal contents give equal files.
        out = (
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0)
            if path.suffix == ".gz"
            else raw
        )
        try:
            for row in project_export_rows(project=project):
                header = header or row
                line = json.dumps(row, cls=ExportEncoder, sort_keys=True, ensure_ascii=False)
                out.write(line.encode() + b"\n")
        finally:
            if out is not raw:
                out.close()
    return header


def _read(path: Path) -> Iterator[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError as exc:
                raise TransferError(f"line {number} is not JSON: {exc}") from None


def _header_check(header: dict | None) -> None:
    """Refuse a file that is not an export of this version, or a project already here."""
    if not header or header.get("format") != FORMAT:
        raise TransferError("not a MedCoT project export (the first line has no format marker)")
    if header.get("version") != VERSION:
        raise TransferError(f"export version {header.get('version')} is not {VERSION}")
    if Project.objects.filter(slug=header["project"]).exists():
        raise TransferError(f"a project with slug {header['project']!r} already exists here")


def _users_load(users: list[dict]) -> dict[str, int]:
    """Match the file's users by username, creating the missing ones (with no usable password)
    and adding their groups; returns {username: id here}."""
    user_model = get_user_model()
    user_ids = {}
    for data in users:
        user = user_model._base_manager.filter(username=data["username"]).first()
        if user is None:
            user = user_model(
                username=data["username"],
                email=data["email"],
                first_name=data["first_name"],
                last_name=data["last_name"],
                is_active=data["is_active"],
            )
            user.set_unusable_password()
            user.save()
        for name in data["groups"]:
            user.groups.add(Group.objects.get_or_create(name=name)[0])
        user_ids[data["username"]] = user.pk
    return user_ids


def _profiles_load(profiles: list[dict], *, known: dict, user_ids: dict[str, int]) -> None:
    """Save each user's profile rows unless the user here has one already."""
    user_model = get_user_model()
    for data in profiles:
        model = known[data["model"]]
        field = next(
            f.name
            for f in model._meta.concrete_fields
            if f.one_to_one and f.related_model is user_model
        )
        data["fields"][field] = user_ids[data["fields"][field]]
        if not model._base_manager.filter(**{field: data["fields"][field]}).exists():
            _save_raw(data)


def project_load(*, path: Path) -> dict:
    """Load an export into this database in one transaction; return the header."""
    lines = _read(path)
    header = next(lines, None)
    _header_check(header)
    users: list[dict] = []
    profiles: list[dict] = []
    rows: dict[str, list[dict]] = defaultdict(list)
    for line in lines:
        label = line.get("model")
        if label == "auth.user":
            users.append(line)
        elif "pk" not in line:
            profiles.append(line)
        else:
            rows[label].append(line)
    known = {_label(m): m for m in _our_models()}
    unknown = sorted(set(rows) - set(known))
    if unknown:
        raise TransferError(f"this installation has no models {unknown}; upgrade it first")
    for label, model_rows in rows.items():
        model = known[label]
        clash = model._base_manager.filter(pk__in=[r["pk"] for r in model_rows]).count()
        if clash:
            raise TransferError(
                f"{clash} {label} rows already use the file's ids; load into an empty database"
            )
    with transaction.atomic():
        user_ids = _users_load(users)
        _profiles_load(profiles, known=known, user_ids=user_ids)
        touched = []
        for label in [_label(m) for m in _our_models() if _label(m) in rows]:
            model = known[label]
            user_fields = _user_fields(model)
            for data in rows[label]:
                for name in user_fields:
                    value = data["fields"].get(name)
                    if isinstance(value, list):
                        data["fields"][name] = [user_ids[v] for v in value]
                    elif value is not None:
                        data["fields"][name] = user_ids[value]
                _save_raw(data)
            touched.append(model)
        _reset_sequences(touched)
    return header


def _save_raw(data: dict) -> None:
    # A raw save keeps stored timestamps (auto_now_add would stamp "now") and skips the
    # append-only guard in Model.save, which is right for rows that already existed once.
    for obj in serializers.deserialize("python", [data]):
        obj.save(force_insert=True)


def _reset_sequences(models_touched) -> None:
    statements = connection.ops.sequence_reset_sql(no_style(), models_touched)
    if statements:
        with connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)
