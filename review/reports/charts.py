"""Server-side SVG charts for the dashboard and the dataset card.

No JavaScript and no external resources: each chart is one self-contained `<svg>` element with
a `<title>` and `<desc>` (read by screen readers through `aria-labelledby`), values printed next
to their bars so the chart still reads in black-and-white print, and only presentation
attributes (no `style`), so it passes a `style-src 'self'` CSP when inlined into a page.

Every label is escaped here; the returned `Chart` is a `str` with `__html__`, which tells Django
templates it is already safe. The same string, passed through `svg_document()`, is a valid
standalone `.svg` file. Output is deterministic (ids derive from the content), so a dataset
card rebuilt from the same data is byte-identical.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Sequence

# Colours chosen to stay distinguishable as greys in print and for common colour blindness.
PALETTE = ("#1f4e79", "#c55a11", "#7f7f7f", "#bf9000", "#2e75b6", "#548235", "#7030a0")
TEXT = "#1a1a1a"
MUTED = "#595959"
GRID = "#d9d9d9"
FONT = "system-ui, -apple-system, 'Segoe UI', 'Noto Sans', 'Noto Sans CJK SC', sans-serif"

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


class ChartError(ValueError):
    """The data cannot be drawn (negative counts, mismatched series, nothing to show)."""


class Chart(str):
    """An SVG string that is already escaped; Django templates print it as it is."""

    def __html__(self) -> str:
        return str(self)


def esc(text: object) -> str:
    """Escape for XML text and attributes, dropping characters XML 1.0 forbids."""
    return html.escape(_CONTROL.sub("", str(text)), quote=True)


def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def _check_values(values: Sequence[float]) -> None:
    for v in values:
        if v is None or v != v or v < 0:
            raise ChartError(f"Chart values must be non-negative numbers, got {v!r}")


def _open(kind: str, title: str, desc: str, width: int, height: int, extra: str = "") -> list[str]:
    digest = hashlib.sha256(f"{kind}\n{title}\n{desc}\n{extra}".encode()).hexdigest()[:10]
    tid, did = f"c{digest}-t", f"c{digest}-d"
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-labelledby="{tid} {did}" font-family="{esc(FONT)}" font-size="12" fill="{TEXT}">',
        f'<title id="{tid}">{esc(title)}</title>',
        f'<desc id="{did}">{esc(desc)}</desc>',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="8" y="18" font-size="14" font-weight="600">{esc(_short(title, 90))}</text>',
    ]


def _close(parts: list[str]) -> Chart:
    parts.append("</svg>")
    return Chart("\n".join(parts))


def _describe(pairs: Sequence[tuple[str, float]], unit: str = "") -> str:
    suffix = f" {unit}" if unit else ""
    return "; ".join(f"{label}: {_number(v)}{suffix}" for label, v in pairs)


def _empty(kind: str, title: str, width: int, message: str) -> Chart:
    parts = _open(kind, title, message, width, 60)
    parts.append(f'<text x="8" y="44" fill="{MUTED}">{esc(message)}</text>')
    return _close(parts)


def hbar_chart(
    *,
    title: str,
    data: Sequence[tuple[str, float]],
    width: int = 640,
    unit: str = "",
    empty_message: str = "No data yet.",
    label_width: int = 180,
) -> Chart:
    """Horizontal bars, one per (label, value): the right shape for long category names such
    as specialties."""
    values = [v for _, v in data]
    _check_values(values)
    if not data:
        return _empty("hbar", title, width, empty_message)
    row, top = 22, 32
    height = top + row * len(data) + 10
    top_value = max(values) or 1
    plot = width - label_width - 70
    parts = _open("hbar", title, _describe(data, unit), width, height, repr(data))
    for i, (label, value) in enumerate(data):
        y = top + i * row
        length = plot * value / top_value
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 15}" text-anchor="end">'
            f"<title>{esc(label)}</title>{esc(_short(label, 28))}</text>"
        )
        parts.append(
            f'<rect x="{label_width}" y="{y + 3}" width="{length:.1f}" height="{row - 6}" '
            f'fill="{PALETTE[0]}"/>'
        )
        parts.append(
            f'<text x="{label_width + length + 4:.1f}" y="{y + 15}">{esc(_number(value))}</text>'
        )
    return _close(parts)


def bar_chart(
    *,
    title: str,
    data: Sequence[tuple[str, float]],
    width: int = 640,
    height: int = 240,
    unit: str = "",
    empty_message: str = "No data yet.",
    kind: str = "bar",
) -> Chart:
    """Vertical bars with the value above each bar and the label below."""
    values = [v for _, v in data]
    _check_values(values)
    if not data:
        return _empty(kind, title, width, empty_message)
    top, bottom, left = 36, 40, 12
    plot_h = height - top - bottom
    slot = (width - 2 * left) / len(data)
    bar_w = max(4.0, slot * (0.9 if kind == "histogram" else 0.6))
    top_value = max(values) or 1
    parts = _open(kind, title, _describe(data, unit), width, height, repr(data))
    base = top + plot_h
    parts.append(
        f'<line x1="{left}" y1="{base}" x2="{width - left}" y2="{base}" stroke="{MUTED}"/>'
    )
    label_limit = max(3, int(slot / 7))
    for i, (label, value) in enumerate(data):
        cx = left + slot * i + slot / 2
        h = plot_h * value / top_value
        parts.append(
            f'<rect x="{cx - bar_w / 2:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" '
            f'height="{h:.1f}" fill="{PALETTE[0]}"/>'
        )
        parts.append(
            f'<text x="{cx:.1f}" y="{base - h - 4:.1f}" text-anchor="middle">'
            f"{esc(_number(value))}</text>"
        )
        parts.append(
            f'<text x="{cx:.1f}" y="{base + 16}" text-anchor="middle">'
            f"<title>{esc(label)}</title>{esc(_short(label, label_limit))}</text>"
        )
    return _close(parts)


def histogram(
    *,
    title: str,
    bins: Sequence[tuple[str, float]],
    width: int = 320,
    height: int = 200,
    empty_message: str = "No data yet.",
) -> Chart:
    """A distribution over ordered bins (e.g. rubric scores 0, 1, 2): adjacent bars."""
    return bar_chart(
        title=title,
        data=bins,
        width=width,
        height=height,
        empty_message=empty_message,
        kind="histogram",
    )


def stacked_bar(
    *,
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    width: int = 640,
    empty_message: str = "No data yet.",
    label_width: int = 180,
) -> Chart:
    """One horizontal bar per category, split into the series (shares of 100 %), with a
    legend; each segment's count is in its tooltip and in the description."""
    if any(len(values) != len(categories) for _, values in series):
        raise ChartError("Every series needs one value per category")
    for _, values in series:
        _check_values(values)
    totals = [sum(values[i] for _, values in series) for i in range(len(categories))]
    if not categories or not any(totals):
        return _empty("stacked", title, width, empty_message)
    row, top = 24, 54
    height = top + row * len(categories) + 10
    plot = width - label_width - 20
    desc = "; ".join(
        f"{cat}: " + ", ".join(f"{name} {_number(values[i])}" for name, values in series)
        for i, cat in enumerate(categories)
    )
    parts = _open("stacked", title, desc, width, height, repr((categories, series)))
    x = 8.0
    for s, (name, _values) in enumerate(series):
        colour = PALETTE[s % len(PALETTE)]
        parts.append(f'<rect x="{x:.1f}" y="28" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{x + 16:.1f}" y="38">{esc(_short(name, 30))}</text>')
        x += 28 + 7 * len(_short(name, 30))
    for i, cat in enumerate(categories):
        y = top + i * row
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 16}" text-anchor="end">'
            f"<title>{esc(cat)}</title>{esc(_short(cat, 28))}</text>"
        )
        offset = float(label_width)
        total = totals[i] or 1
        for s, (name, values) in enumerate(series):
            share = values[i] / total
            seg = plot * share
            if seg <= 0:
                continue
            colour = PALETTE[s % len(PALETTE)]
            parts.append(
                f'<rect x="{offset:.1f}" y="{y + 3}" width="{seg:.1f}" height="{row - 6}" '
                f'fill="{colour}"><title>{esc(cat)} · {esc(name)}: '
                f"{esc(_number(values[i]))} ({share:.0%})</title></rect>"
            )
            if seg > 34:
                parts.append(
                    f'<text x="{offset + seg / 2:.1f}" y="{y + 16}" text-anchor="middle" '
                    f'fill="#ffffff">{share:.0%}</text>'
                )
            offset += seg
    return _close(parts)


def funnel(
    *,
    title: str,
    steps: Sequence[tuple[str, float]],
    width: int = 640,
    empty_message: str = "No data yet.",
    label_width: int = 260,
) -> Chart:
    """Centred bars narrowing step by step, each with its count and its share of the first
    step."""
    values = [v for _, v in steps]
    _check_values(values)
    if not steps or not values[0]:
        return _empty("funnel", title, width, empty_message)
    row, top = 28, 32
    height = top + row * len(steps) + 10
    plot = width - label_width - 130
    first = values[0]
    parts = _open("funnel", title, _describe(steps), width, height, repr(steps))
    centre = label_width + plot / 2
    for i, (label, value) in enumerate(steps):
        y = top + i * row
        w = max(1.0, plot * value / max(values))
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 18}" text-anchor="end">'
            f"<title>{esc(label)}</title>{esc(_short(label, 40))}</text>"
        )
        parts.append(
            f'<rect x="{centre - w / 2:.1f}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" '
            f'fill="{PALETTE[i % 2]}"/>'
        )
        parts.append(
            f'<text x="{label_width + plot + 8}" y="{y + 18}">{esc(_number(value))} '
            f'<tspan fill="{MUTED}">({value / first:.1%})</tspan></text>'
        )
    return _close(parts)


def svg_document(chart: str) -> bytes:
    """The chart as the bytes of a standalone .svg file."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + str(chart) + "\n").encode("utf-8")
