"""Which sentences the reading remembers the classifier's answer for: short ones only."""

from __future__ import annotations

from datetime import date

from ghl_real_estate_ai.understanding import reading
from ghl_real_estate_ai.understanding.reading import SENTENCE_CACHE_CHARS, read_message


def test_a_short_sentence_is_remembered_and_a_long_one_is_classified_every_time() -> None:
    long_sentence = "We are relocating for work and hope to sell the house on Foothill quickly"
    assert len(long_sentence) > SENTENCE_CACHE_CHARS
    reading._short_sentence_scores.cache_clear()
    first = read_message(f"Thanks so much! {long_sentence}.", today=date(2026, 12, 2))
    again = read_message(f"Thanks so much! {long_sentence}!", today=date(2026, 12, 2))
    info = reading._short_sentence_scores.cache_info()
    assert (info.hits, info.misses, info.currsize) == (1, 1, 1)  # "Thanks so much", twice
    assert first.intent_scores == again.intent_scores
