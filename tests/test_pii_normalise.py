"""Folding invisible and look-alike characters before the scan (appliance/pii/normalise.py)."""

from __future__ import annotations

import time

import pytest
from visionality.pii.normalise import fold


def test_ascii_is_returned_as_it_is() -> None:
    text = "plain ASCII 5425 2334"
    assert fold(text).text is text


@pytest.mark.parametrize(
    ("attack", "folded"),
    [
        ("5425\u200b2334", "54252334"),  # zero-width space (Cf)
        ("5425\u00ad2334\u2060\ufeff", "54252334"),  # soft hyphen, word joiner, BOM (Cf)
        ("5425\u00a02334\u202f3010\u3000", "5425 2334 3010 "),  # no-break, narrow no-break, ideographic spaces
        ("536\u201322\u20141234\u2212", "536-22-1234-"),  # en dash, em dash, minus sign
        ("\uff15\uff14\uff12\uff15", "5425"),  # full-width digits
        ("\u0665\u0664\u0968", "542"),  # Arabic-Indic and Devanagari digits
        ("jane\uff20acme", "jane@acme"),  # full-width commercial at
        ("wait\u2026 \ufb01le", "wait... file"),  # NFKC expansions
    ],
)
def test_attack_invisible_and_look_alike_characters(attack: str, folded: str) -> None:
    assert fold(attack).text == folded


def test_spans_map_back_to_the_original() -> None:
    original = "a\u200b\u200bb\u2026c\ufb01d5"
    f = fold(original)
    assert f.text == "ab...cfid5"
    for start, end in [(0, 1), (1, 2), (2, 5), (3, 4), (5, 6), (6, 8), (9, 10), (0, 10)]:
        s, e = f.original_start(start), f.original_end(end)
        assert fold(original[s:e]).text == f.text[start:end] or f.text[start:end] in fold(original[s:e]).text


def test_folding_is_linear() -> None:
    text = ("x\u200b5\u00a0" * 50_000) + ("\u4e2d" * 100_000)
    t0 = time.perf_counter()
    f = fold(text)
    assert time.perf_counter() - t0 < 1.0
    assert len(f.text) == 250_000 and f.original_end(len(f.text)) == len(text)
