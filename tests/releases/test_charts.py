"""SVG charts: well-formed, accessible, escaped, deterministic."""

import xml.etree.ElementTree as ET

import pytest
from django.template import Context, Template

from review.reports.charts import (
    ChartError,
    bar_chart,
    funnel,
    hbar_chart,
    histogram,
    stacked_bar,
    svg_document,
)

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script> & "quotes" \x07'


def _parse(chart) -> ET.Element:
    # Our own output, parsed to prove it is well-formed XML.
    root = ET.fromstring(svg_document(chart))  # noqa: S314
    assert root.tag == f"{SVG}svg"
    return root


def _all_charts(label):
    return [
        bar_chart(title=label, data=[(label, 3), ("b", 1)]),
        hbar_chart(title=label, data=[(label, 3), ("b", 1)]),
        histogram(title=label, bins=[("0", 2), ("1", 5), ("2", 9)]),
        stacked_bar(title=label, categories=[label, "x"], series=[("s1", [1, 2]), (label, [3, 0])]),
        funnel(title=label, steps=[(label, 100), ("confirmed", 94), ("final", 88)]),
    ]


@pytest.mark.parametrize("chart", _all_charts("Specialties"))
def test_it_draws_a_standalone_svg_with_title_and_description(chart):
    root = _parse(chart)
    assert root.get("role") == "img"
    title_id, desc_id = root.get("aria-labelledby").split()
    assert root.find(f"{SVG}title").get("id") == title_id
    assert root.find(f"{SVG}desc").get("id") == desc_id
    assert root.find(f"{SVG}title").text == "Specialties"
    assert "style" not in svg_document(chart).decode()
    assert "<script" not in chart


@pytest.mark.parametrize("chart", _all_charts(HOSTILE))
def test_it_escapes_every_label(chart):
    root = _parse(chart)
    assert "<script>" not in chart
    assert root.find(f"{SVG}title").text == HOSTILE.replace("\x07", "")
    assert not root.findall(f".//{SVG}script")


def test_it_prints_values_so_the_chart_reads_in_black_and_white():
    chart = funnel(title="Funnel", steps=[("Constructed", 36210), ("Confirmed", 34062)])
    texts = "".join(_parse(chart).itertext())
    assert "36,210" in texts
    assert "34,062" in texts
    assert "94.1%" in texts
    assert "Constructed: 36,210; Confirmed: 34,062" in texts


def test_it_is_deterministic_and_ids_differ_between_charts():
    a = hbar_chart(title="A", data=[("x", 1)])
    assert a == hbar_chart(title="A", data=[("x", 1)])
    b = hbar_chart(title="A", data=[("x", 2)])
    assert _parse(a).get("aria-labelledby") != _parse(b).get("aria-labelledby")


def test_it_says_so_when_there_is_nothing_to_draw():
    chart = bar_chart(title="Difficulty", data=[], empty_message="No approved items yet.")
    assert "No approved items yet." in "".join(_parse(chart).itertext())
    assert "No data yet." in funnel(title="F", steps=[("a", 0)])


def test_it_refuses_negative_values_and_ragged_series():
    with pytest.raises(ChartError):
        bar_chart(title="x", data=[("a", -1)])
    with pytest.raises(ChartError):
        stacked_bar(title="x", categories=["a", "b"], series=[("s", [1])])


def test_it_renders_unescaped_in_a_template_because_it_is_already_safe():
    chart = hbar_chart(title="T & U", data=[("a", 1)])
    out = Template("{{ chart }}").render(Context({"chart": chart}))
    assert out == str(chart)
    assert "T &amp; U" in out
