"""Licences of question sources and releases, and which is more restrictive.

Each licence is described by the restrictions it puts on reuse. A release made from several
sources must carry at least every restriction of each (the "join"), so its default is the least
restrictive licence that keeps them all, and a chosen licence that drops one is flagged.
"""

from django.utils.translation import gettext_lazy as _

ATTRIBUTION = "attribution"
SHARE_ALIKE = "share-alike"
NON_COMMERCIAL = "non-commercial"
CLOSED = "no-redistribution"

UNKNOWN = "proprietary"

# (code, label, restrictions), least restrictive first within each family.
LICENSE_TABLE: tuple[tuple[str, str, frozenset], ...] = (
    ("cc0-1.0", "CC0 1.0", frozenset()),
    ("mit", "MIT", frozenset({ATTRIBUTION})),
    ("apache-2.0", "Apache-2.0", frozenset({ATTRIBUTION})),
    ("cc-by-4.0", "CC BY 4.0", frozenset({ATTRIBUTION})),
    ("cc-by-sa-4.0", "CC BY-SA 4.0", frozenset({ATTRIBUTION, SHARE_ALIKE})),
    ("cc-by-nc-4.0", "CC BY-NC 4.0", frozenset({ATTRIBUTION, NON_COMMERCIAL})),
    ("cc-by-nc-sa-4.0", "CC BY-NC-SA 4.0", frozenset({ATTRIBUTION, NON_COMMERCIAL, SHARE_ALIKE})),
    (
        UNKNOWN,
        _("Proprietary / unknown"),
        frozenset({ATTRIBUTION, NON_COMMERCIAL, SHARE_ALIKE, CLOSED}),
    ),
    (
        "other",
        _("Other (explain in the notes)"),
        frozenset({ATTRIBUTION, NON_COMMERCIAL, SHARE_ALIKE, CLOSED}),
    ),
)
RESTRICTIONS = {code: restrictions for code, _label, restrictions in LICENSE_TABLE}
LABELS = {code: label for code, label, _restrictions in LICENSE_TABLE}
SOURCE_LICENSES = [(code, label) for code, label, _r in LICENSE_TABLE if code != "other"]
RELEASE_LICENSES = [(code, label) for code, label, _r in LICENSE_TABLE]
# What a join lands on: the CC family (and the unknown) covers every combination.
_JOIN_ORDER = ("cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0", UNKNOWN)


def restrictions(code: str) -> frozenset:
    return RESTRICTIONS.get(code or UNKNOWN, RESTRICTIONS[UNKNOWN])


def most_restrictive(codes) -> str:
    """The least restrictive licence that keeps every restriction of `codes`."""
    codes = {c or UNKNOWN for c in codes}
    if not codes:
        return UNKNOWN
    if len(codes) == 1:
        return next(iter(codes))
    needed = frozenset().union(*(restrictions(c) for c in codes))
    return next(c for c in _JOIN_ORDER if RESTRICTIONS[c] >= needed)


def less_restrictive(chosen: str, source: str) -> bool:
    """True if releasing under `chosen` drops a restriction of `source`."""
    return not restrictions(chosen) >= restrictions(source)


def label(code: str) -> str:
    return str(LABELS.get(code, code))
