"""The understanding pipeline on the way leads really text (issue 10, build 1 and 6)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from ghl_real_estate_ai.bots.intent_decoder import LeadIntent, analyze_lead, decode_lead_intent
from ghl_real_estate_ai.observability.testing import capture_spans
from ghl_real_estate_ai.understanding.classifier import load_classifier
from ghl_real_estate_ai.understanding.language import conversation_language, message_language
from ghl_real_estate_ai.understanding.places import find_places

T0 = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)  # a Tuesday


@dataclass
class Msg:
    direction: str
    body: str
    created_at: datetime = T0


def said(*bodies: str) -> LeadIntent:
    return analyze_lead([Msg("inbound", b, T0 + timedelta(minutes=i)) for i, b in enumerate(bodies)])


@pytest.mark.parametrize(
    ("text", "budget"),
    [
        ("budget ~$400k", 400_000),
        ("looking to buy, like 600ish", 600_000),
        ("we have a budget of 700k", 700_000),
        ("up to 1.2m", 1_200_000),
        ("buying, max $450,000", 450_000),
        ("quiero comprar, tengo como 400 mil de presupuesto", 400_000),
        ("budget is like 550", 550_000),
    ],
)
def test_money_in_every_texted_form(text: str, budget: int) -> None:
    assert said(text).facts.budget == budget


def test_monthly_rent_is_its_own_amount() -> None:
    facts = said("we rent now, paying 2500/mo").facts
    assert (facts.monthly_rent, facts.budget, facts.price_expectation) == (2_500, None, None)
    assert said("busco renta de 1500 al mes").facts.monthly_rent == 1_500


@pytest.mark.parametrize(("text", "beds"), [("4bd in redlands", 4), ("3 br pls", 3), ("tres cuartos", 3)])
def test_bedroom_shorthand(text: str, beds: int) -> None:
    assert said(text).facts.bedrooms == beds


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("after thanksgiving", date(2026, 12, 3)),
        ("end of next month", date(2026, 4, 30)),
        ("b4 summer", date(2026, 6, 21)),
        ("by fall", date(2026, 9, 22)),
        ("in a couple yrs", date(2028, 3, 2)),
        ("by june", date(2026, 6, 1)),
        ("antes de navidad", date(2026, 12, 25)),
        ("para el 15 de junio", date(2026, 6, 15)),
        ("a finales de mayo", date(2026, 5, 31)),
        ("prolly in 3 months", date(2026, 6, 1)),
    ],
)
def test_dates_relative_to_the_message_timestamp(text: str, target: date) -> None:
    facts = said(text).facts
    assert facts.target_date == target
    assert facts.timeline_days == (target - T0.date()).days


def test_the_same_words_on_another_day_give_another_date() -> None:
    later = analyze_lead([Msg("inbound", "by fall", datetime(2026, 10, 1, tzinfo=UTC))])
    assert later.facts.target_date == date(2027, 9, 22)


def test_may_the_verb_is_no_date() -> None:
    assert said("we may sell next spring").facts.target_date == date(2027, 3, 20)
    assert said("we may want to sell").facts.target_date is None


@pytest.mark.parametrize(
    ("text", "areas"),
    [
        ("looking in claremont or redlands", ("Claremont", "Redlands")),
        ("yucaipa", ("Yucaipa",)),
        ("something in yucaippa", ("Yucaipa",)),
        ("we like redlands and clairmont", ("Redlands", "Claremont")),
        ("moving from texas to riverside", ("Texas", "Riverside")),
        ("near orange", ("Orange",)),
        ("the orange tree in the yard stays", ()),
        ("i want to sell my mobile home", ()),
        ("can we meet in person?", ()),
        ("we're in escrow already", ()),
    ],
)
def test_places_from_the_gazetteer(text: str, areas: tuple[str, ...]) -> None:
    assert tuple(find_places(text)) == areas


@pytest.mark.parametrize(
    ("text", "side", "kind"),
    [
        ("we wanna sell our fourplex", "seller", "multi_unit"),
        ("looking to buy a condo", "buyer", "condo"),
        ("want to list our townhouse", "seller", "townhouse"),
        ("I'm a cash buyer looking for a fixer", "buyer", None),
        ("investor here, looking for rentals to buy", "buyer", None),
        ("quiero vender mi casa", "seller", None),
    ],
)
def test_a_plain_statement_of_intent_passes_the_handoff_threshold(
    text: str, side: str, kind: str | None
) -> None:
    intent = said(text)
    confidence = intent.buyer_confidence if side == "buyer" else intent.seller_confidence
    assert confidence > 0.7
    assert intent.facts.property_type == kind


@pytest.mark.parametrize(
    ("text", "financing"),
    [
        ("cash buyer, can close in 2 weeks", "cash"),
        ("we'd pay cash", "cash"),
        ("I have a VA loan approval", "va"),
        ("FHA buyer here", "fha"),
        ("going conventional", "conventional"),
        ("pre-approved with chase", "preapproved"),
        ("not pre-approved yet", None),
    ],
)
def test_financing_kinds(text: str, financing: str | None) -> None:
    assert said(text).facts.financing == financing


def test_a_two_sided_lead_keeps_each_amount_on_its_side() -> None:
    facts = said("We have to sell ours first, hoping to get 650k, then buy something around 800k").facts
    assert (facts.price_expectation, facts.budget, facts.must_sell_first) == (650_000, 800_000, True)
    facts = said("we'd sell our condo, about 500k, and buy a house for 700k").facts
    assert (facts.price_expectation, facts.budget) == (500_000, 700_000)


def test_who_the_home_is_for_and_agent_status() -> None:
    assert said("looking for a single story home for my parents").facts.buyer_for == "parents"
    assert said("we already have an agent").facts.agent_status == "has_agent"
    assert said("we don't have a realtor yet").facts.agent_status == "no_agent"


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("my mom passed away and we need to sell her house", "probate"),
        ("we've missed 3 mortgage payments", "delinquent_mortgage"),
        ("the bank is taking our home", "foreclosure"),
        ("filed chapter 7 last month", "bankruptcy"),
        ("el banco nos va a quitar la casa", "foreclosure"),
        ("nos estamos divorciando", "divorce"),
    ],
)
def test_red_flags_in_plain_words(text: str, flag: str) -> None:
    assert flag in said(text).red_flags


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("i'm just looking to rent", "renter"),
        ("we're working with a realtor already", "has_agent"),
        ("wrong number, i don't know any jorge", "wrong_number"),
        ("no thanks, we're not selling", "not_interested"),
        ("no", None),
        ("looking to buy a condo", None),
    ],
)
def test_not_a_prospect(text: str, reason: str | None) -> None:
    assert said(text).not_prospect == reason


def test_acts_question_topic_scores_and_slots_of_the_latest_message() -> None:
    intent = said("we want to sell our 3 bed in redlands", "what are your fees?")
    assert intent.question_topic == "fees"
    assert "question" in intent.acts
    assert intent.slots_filled == ()
    assert set(intent.intent_scores) == set(load_classifier().labels)
    assert intent.classifier_version == load_classifier().version
    first = said("we want to sell our 3 bed in redlands by fall")
    assert first.slots_filled == ("bedrooms", "areas", "timeline_days", "target_date")
    assert first.question_topic is None and "sell" in first.acts
    assert said("any idea what ours is worth?").question_topic == "value"


def test_opt_in_is_the_latest_message_asking_for_texts_again() -> None:
    assert said("STOP", "you can text me again").opt_in
    assert not said("STOP", "you can text me again").opt_out
    assert not said("hello").opt_in


async def test_the_analyze_span_carries_scores_slot_names_and_version_never_values() -> None:
    with capture_spans() as capture:
        intent = await decode_lead_intent(
            [Msg("inbound", "pre-approved for 600k, 4bd in chino hills, call me at 909-555-0100")],
            contact_id="c-7",
        )
    (span,) = capture.by_name("intent_decoder.analyze_lead")
    attributes = dict(span.attributes or {})
    assert attributes["intent.classifier_version"] == intent.classifier_version
    assert list(attributes["intent.slots_filled"]) == list(intent.slots_filled)
    assert {"budget", "bedrooms", "areas", "financing"} <= set(intent.slots_filled)
    assert attributes["intent.score.buy"] == intent.intent_scores["buy"]
    assert [dict(e.attributes or {})["slot"] for e in span.events if e.name == "slot_filled"] == list(
        intent.slots_filled
    )
    values = [*attributes.values(), *(v for e in span.events for v in dict(e.attributes or {}).values())]
    # Neither the amount, the place nor the phone number, in any form (scores are floats).
    assert 600_000 not in values
    text = " ".join(str(v) for v in values if isinstance(v, str | list | tuple)).lower()
    assert "600" not in text and "chino" not in text and "909" not in text


async def test_the_classifier_and_gazetteer_are_loaded_at_start_up_not_per_message(tmp_path: Path) -> None:
    from ghl_real_estate_ai.app import create_app
    from ghl_real_estate_ai.settings import Settings
    from ghl_real_estate_ai.understanding.places import gazetteer

    load_classifier.cache_clear()
    gazetteer.cache_clear()
    app = create_app(Settings(otel_exporter_type="none", data_dir=tmp_path), manage_observability=False)
    async with app.running():
        assert load_classifier.cache_info().currsize == 1
        assert gazetteer.cache_info().currsize == 1
        loaded = load_classifier()
        said("looking to buy a condo", "in redlands")
        assert load_classifier() is loaded and load_classifier.cache_info().misses == 1


def test_a_place_lookup_starts_only_at_a_word_that_starts_a_name() -> None:
    from ghl_real_estate_ai.understanding.places import _known_keys, gazetteer

    starts = gazetteer().first_words
    assert {"rancho", "new", "chino"} <= starts and not {"hello", "bedroom", "approved"} & starts
    _known_keys.cache_clear()
    for _ in range(3):
        assert find_places("a condo in north upland", ["North Upland", "Eastvale"]) == ["North Upland"]
    # The known areas are folded once for all the messages that name them.
    assert (_known_keys.cache_info().misses, _known_keys.cache_info().hits) == (1, 2)


def test_a_message_read_again_is_read_once_and_reads_the_same() -> None:
    from ghl_real_estate_ai.bots.intent_decoder import _decode
    from ghl_real_estate_ai.understanding.reading import read_message, read_message_cached

    read_message_cached.cache_clear()
    _decode.cache_clear()
    turns = [
        Msg("inbound", "we want to buy in upland, 3 beds", T0),
        Msg("outbound", "What budget do you have in mind?", T0 + timedelta(minutes=1)),
        Msg("inbound", "450k", T0 + timedelta(minutes=2)),
    ]
    first = analyze_lead(turns)
    # The service's check, then each bot's analysis: the same conversation, decoded once.
    assert analyze_lead(list(turns)) is first
    assert (_decode.cache_info().misses, _decode.cache_info().hits) == (1, 1)
    # The next turn reads only its new message.
    later = analyze_lead([*turns, Msg("inbound", "asap please", T0 + timedelta(minutes=3))])
    assert later.facts.budget == 450_000 and later.facts.timeline_days is not None
    info = read_message_cached.cache_info()
    assert (info.misses, info.hits) == (3, 2)
    fresh = read_message("450k", today=T0.date(), asked="budget")
    assert read_message_cached("450k", T0.date(), "budget") == fresh
    assert fresh.budget == 450_000


@pytest.mark.parametrize(
    "text",
    [
        "i buy cash, no lender involved",
        "we're buying all cash this time",
        "cash only buyer, want something in riverside",
        "vamos a pagar de contado",
    ],
)
def test_a_cash_buyer_is_read_as_cash_in_any_wording(text: str) -> None:
    assert said(text).facts.financing == "cash"


def test_cash_flow_is_not_cash_financing() -> None:
    assert said("looking to buy cash flow rentals").facts.financing is None


@pytest.mark.parametrize(
    ("text", "budget"),
    [
        ("preapproved 480k", 480_000),
        ("pre-approved at $615,000", 615_000),
        ("prequalified for 390k", 390_000),
        ("preaprobado por 350 mil", 350_000),
    ],
)
def test_a_pre_approval_amount_is_the_budget(text: str, budget: int) -> None:
    facts = said(text).facts
    assert (facts.budget, facts.price_expectation) == (budget, None)


@pytest.mark.parametrize(
    "text",
    [
        "need a 4 bedroom near good schools",
        "we want a 3br with a yard",
        "estamos buscando una casa en fontana",
        "busco casita para mi mama",
    ],
)
def test_asking_for_a_home_by_its_size_or_in_spanish_is_buying(text: str) -> None:
    assert "looking_to_buy" in said(text).signals


@pytest.mark.parametrize(
    ("text", "motivation", "condition"),
    [
        ("me mudo por el trabajo de mi esposo", "relocation", None),
        ("nos vamos a jubilar y la casa es muy grande", "downsizing", None),
        ("la casa esta en malas condiciones", None, "needs_work"),
        ("esta como nueva, la remodelamos", None, "excellent"),
        ("necesita algunas reparaciones", None, "fair"),
    ],
)
def test_spanish_motives_and_condition(text: str, motivation: str | None, condition: str | None) -> None:
    facts = said(text).facts
    assert (facts.motivation, facts.condition) == (motivation, condition)


def test_a_spanish_price_expectation_is_the_asking_price() -> None:
    facts = said("queremos vender", "esperamos sacar unos 640 mil").facts
    assert (facts.price_expectation, facts.budget) == (640_000, None)


@pytest.mark.parametrize(
    "text",
    [
        "btw what would ours sell for? 4bd 2ba 1,900 sqft",
        "curious what mine is worth these days, it's a 3 bed in rialto",
        "cuanto valdria nuestra casa? tiene 3 recamaras",
    ],
)
def test_a_value_question_about_the_contacts_own_home_is_confident_enough_for_the_seller_path(
    text: str,
) -> None:
    intent = said(text)
    assert intent.value_question
    assert intent.value_confidence >= 0.8


def test_the_value_phrase_precision_used_in_confidences_holds_on_the_corpus() -> None:
    from ghl_real_estate_ai.understanding.dataset import load_split
    from ghl_real_estate_ai.understanding.normalise import normalise
    from ghl_real_estate_ai.understanding.phrases import _VALUE
    from ghl_real_estate_ai.understanding.reading import VALUE_PHRASE_PRECISION
    from ghl_real_estate_ai.understanding.text import _affirmed

    examples = load_split("train") + load_split("test")
    matched = [e.label for e in examples if _affirmed(_VALUE, normalise(e.text))]
    assert len(matched) >= 30
    assert matched.count("value_question") / len(matched) >= VALUE_PHRASE_PRECISION


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("hola, queremos vender nuestra casa", "es"),
        ("busco casa para mis papas", "es"),
        ("looking to buy a condo this summer", "en"),
        # Place names are taken out first: they are Spanish all over California.
        ("want to buy in rancho cucamonga or san bernardino", None),  # never "es"
        ("estamos en la casa de san bernardino", "es"),
        # Too little to tell: a word, a number, an emoji.
        ("ok", None),
        ("650k", None),
        ("👍", None),
        ("gracias", None),
    ],
)
def test_the_language_a_message_is_written_in(text: str, language: str | None) -> None:
    assert message_language(text) == language


def test_the_conversation_language_is_the_majority_and_a_tie_goes_to_the_first() -> None:
    assert conversation_language(["es", None, "en"]) == "es"
    assert conversation_language(["en", "es"]) == "en"
    assert conversation_language(["es", "en", "en"]) == "en"
    assert conversation_language([None, None]) is None


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("en unos 3 meses", 90),
        ("en un mes", 30),
        ("en los proximos 6 meses", 180),
        ("dentro de unas 3 semanas", 21),
        ("in about 1 mes lol", 30),
    ],
)
def test_spanish_durations(text: str, days: int) -> None:
    assert said(text).facts.timeline_days == days


@pytest.mark.parametrize(
    ("text", "signal"),
    [
        ("si, cuando pueden venir a verla?", "wants_appointment"),
        ("podemos agendar una cita el sabado", "wants_appointment"),
        ("queremos ver esas casas", "wants_showing"),
    ],
)
def test_spanish_visits_and_showings(text: str, signal: str) -> None:
    assert signal in said(text).signals


def test_a_spanish_fee_question_is_no_value_question() -> None:
    intent = said("y ustedes cuanto cobran?")
    assert not intent.value_question
    assert intent.question_topic == "fees"


@pytest.mark.parametrize(
    ("text", "budget"),
    [
        ("prob 550 max", 550_000),
        ("600k tops", 600_000),
        ("450 or less", 450_000),
        ("500 mil como maximo", 500_000),
    ],
)
def test_a_ceiling_said_after_the_amount_is_the_budget(text: str, budget: int) -> None:
    assert said(text).facts.budget == budget


@pytest.mark.parametrize(
    "text",
    [
        "me n my wife wanna get a place",
        "VA buyer, 4 bedrooms in perris",
        "do you have any 3 bedroom homes for sale in fontana?",
        "cash buyers here, what do you have",
    ],
)
def test_more_ways_of_saying_i_want_to_buy(text: str) -> None:
    assert "looking_to_buy" in said(text).signals


@pytest.mark.parametrize(
    "text", ["looking to get a place to rent", "busco casa para rentar, unos 2500 al mes"]
)
def test_a_place_to_rent_is_not_buying(text: str) -> None:
    intent = said(text)
    assert "looking_to_buy" not in intent.signals
    assert intent.not_prospect == "renter"


@pytest.mark.parametrize(
    "text",
    [
        "idk what its worth tho",
        "want to know what our current house is worth",
        "we already have an agent for buying but want to know what our current house is worth",
    ],
)
def test_value_questions_in_looser_words_and_a_has_agent_lead_asking_one_stays_a_prospect(text: str) -> None:
    intent = said(text)
    assert intent.value_question
    assert intent.not_prospect is None


def test_a_lead_who_only_says_they_have_an_agent_is_still_no_prospect() -> None:
    assert said("we already have an agent").not_prospect == "has_agent"


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("whats a 3br in redlands going for these days?", "market"),
        ("how much are homes in fontana?", "market"),
        ("what would mine go for?", "value"),
        ("si, cuando puede venir?", "availability"),
    ],
)
def test_question_topics(text: str, topic: str) -> None:
    assert said(text).question_topic == topic


def test_spanish_asap() -> None:
    assert said("lo mas pronto posible").facts.timeline_days == 14


@pytest.mark.parametrize(
    ("text", "days"),
    [("maybe 6 months", 180), ("2-3 weeks", 21), ("unos 6 meses", 180), ("idk, like a year?", 365)],
)
def test_a_message_that_is_only_a_duration_is_the_timeline(text: str, days: int) -> None:
    intent = said(text)
    assert intent.facts.timeline_days == days
    assert intent.question_topic is None


def test_a_duration_inside_a_sentence_is_not_a_timeline() -> None:
    assert said("we've been behind 6 months on the hoa").facts.timeline_days is None


def test_a_message_that_is_only_a_hedged_amount_is_in_thousands_and_no_question() -> None:
    intent = said("i want to sell", "idk like 500?")
    assert intent.facts.price_expectation == 500_000
    assert intent.question_topic is None


@pytest.mark.parametrize(
    "text",
    [
        "quiero comprar casa pero primero tengo que vender la mia",
        "first we have to sell, then buy something bigger",
    ],
)
def test_must_sell_first_in_more_words(text: str) -> None:
    assert said(text).facts.must_sell_first


def test_already_sold_is_no_prospect() -> None:
    assert said("sold already, thanks").not_prospect == "not_interested"


def test_a_huge_message_is_read_by_its_start_and_end_and_keys_the_language_cache_by_its_start() -> None:
    from ghl_real_estate_ai.understanding.language import _message_language, message_language

    filler = "we talked about the weather and the neighbours for a long while. " * 3000  # ~200 KB
    assert "sell_my_house" in said("we want to sell our house. " + filler).signals
    assert said(filler + " please remove me from your list").opt_out
    assert "sell_my_house" not in said(filler[:100_000] + "we want to sell our house. " + filler).signals

    _message_language.cache_clear()
    message_language(filler)
    message_language(filler[:1000])
    assert _message_language.cache_info().currsize == 1  # one key: the first 1,000 characters


def test_a_negation_counts_only_near_the_phrase() -> None:
    from ghl_real_estate_ai.understanding.text import _negated

    text = "not " + "really " * 40 + "selling"
    assert not _negated(text, text.index("selling"), window=100)  # looked back 160 characters only
    assert _negated("not selling", 4)


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("homes in riversid county", "Riverside"),
        ("we like the fontanna area", "Fontana"),
        ("the ontaio side is fine", "Ontario"),
    ],
)
def test_a_misspelt_place_before_a_place_noun(text: str, place: str) -> None:
    assert find_places(text) == [place]


def test_a_place_noun_alone_names_no_place() -> None:
    assert find_places("looking for a great area to live") == []
