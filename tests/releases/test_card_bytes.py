"""The dataset card keeps its bytes: fixed inputs render exactly the files in
tests/releases/cards/, written when the card was built from Python string lists. A rebuild of
a release must stay byte-identical (docs/releases.md), whatever renders the card."""

from pathlib import Path

import pytest

from review.releases.card import render_card
from tests.releases.card_inputs import CASES

CARDS = Path(__file__).with_name("cards")


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_card_renders_the_same_bytes(name):
    expected = (CARDS / f"{name}.md").read_bytes()
    assert render_card(**CASES[name]).encode() == expected
