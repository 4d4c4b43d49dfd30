"""find_places remembers a text's places for the reads known areas cannot change (issue 14)."""

from __future__ import annotations

from ghl_real_estate_ai.bots.intent_decoder import _bundled_areas
from ghl_real_estate_ai.understanding import places as places_module
from ghl_real_estate_ai.understanding.dataset import load_split
from ghl_real_estate_ai.understanding.places import find_places


def test_places_are_the_same_whichever_read_comes_first() -> None:
    areas = _bundled_areas()
    texts = [e.text for e in load_split("test")] + [f"moving from {a} to Upland" for a in areas]
    for text in texts:
        places_module._SHARED.clear()
        with_areas_first = (find_places(text, areas), find_places(text))
        places_module._SHARED.clear()
        without_first = find_places(text)
        assert with_areas_first == (find_places(text, areas), without_first), text


def test_a_known_area_in_the_text_is_never_answered_from_memory() -> None:
    places_module._SHARED.clear()
    text = "looking near Alta Loma and Upland"
    plain = find_places(text)
    assert find_places(text, ["Alta Loma"]) != plain or "Alta Loma" in plain
    assert "Alta Loma" in find_places(text, ["Alta Loma"])


def test_changing_a_result_does_not_change_the_next() -> None:
    places_module._SHARED.clear()
    first = find_places("homes in Upland or Redlands")
    expected = list(first)
    assert expected
    first.append("Nowhere")
    assert find_places("homes in Upland or Redlands") == expected
