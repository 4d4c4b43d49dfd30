"""The dialogue state and the reply rules (issue 10, Build 2): merge, acknowledgement, compose."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from conversation_kit import TurnRecord, reply_rule_violations
from opentelemetry import trace

from ghl_real_estate_ai.bots.dialogue import (
    Dialogue,
    acknowledgement,
    compose,
    is_negative,
    merge,
    record_understanding,
    sent_texts,
    turn_language,
)
from ghl_real_estate_ai.bots.intent_decoder import LeadIntent, PropertyFacts
from ghl_real_estate_ai.bots.state import BotOutcome
from ghl_real_estate_ai.bots.templates import replying_in
from ghl_real_estate_ai.conversation import ConversationResult
from ghl_real_estate_ai.observability.testing import capture_spans
from ghl_real_estate_ai.storage.base import Slot


def intent(
    facts: PropertyFacts, *, filled: tuple[str, ...] = (), buyer: float = 0.0, seller: float = 0.0
) -> LeadIntent:
    return LeadIntent(
        buyer_confidence=buyer,
        seller_confidence=seller,
        value_question=False,
        opt_out=False,
        human_request=False,
        red_flags=(),
        objections=(),
        facts=facts,
        signals=(),
        slots_filled=filled,
    )


class _CountingSpan:
    """A real span whose attribute calls are counted."""

    def __init__(self, span: Any) -> None:
        self.span = span
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.span, name)
        if not name.startswith("set_attribute"):
            return found

        def counted(*args: Any) -> Any:
            self.calls.append(name)
            return found(*args)

        return counted


def test_the_analyze_span_gets_the_labels_of_1_percent_or_more_in_one_call() -> None:
    read = replace(
        intent(PropertyFacts(bedrooms=3), filled=("bedrooms",), buyer=0.4),
        intent_scores={"buy": 0.9412, "sell": 0.05, "both": 0.01, "rent": 0.0099, "opt_out": 0.0001},
        acts=("buy",),
        classifier_version="v-test",
    )
    dialogue = merge([], read, "buyer")
    with capture_spans() as capture, trace.get_tracer("test").start_as_current_span("analyze") as real:
        span = _CountingSpan(real)
        record_understanding(span, read, dialogue)  # type: ignore[arg-type]
    (done,) = capture.by_name("analyze")
    attributes = dict(done.attributes or {})
    scores = {k: v for k, v in attributes.items() if k.startswith("intent.score.")}
    assert scores == {"intent.score.both": 0.01, "intent.score.buy": 0.9412, "intent.score.sell": 0.05}
    assert attributes["intent.buyer_confidence"] == 0.4
    assert attributes["intent.classifier_version"] == "v-test"
    assert "buy.bedrooms" in attributes["dialogue.slots_filled"]
    assert span.calls == ["set_attributes"]
    filled = [e for e in done.events if e.name == "slot_filled"]
    assert len(filled) == len(attributes["dialogue.slots_filled"])


def test_amounts_are_attached_to_their_own_side() -> None:
    """A two-sided lead's buying budget never becomes its asking price, nor the other way round."""
    got = merge(
        [],
        intent(
            PropertyFacts(budget=650_000, price_expectation=480_000, must_sell_first=True),
            filled=("budget", "price_expectation", "must_sell_first"),
            buyer=0.5,
        ),
        "buyer",
    )
    assert got.get("buy", "budget") == 650_000
    assert got.get("sell", "price_expectation") == 480_000
    assert got.get("buy", "price_expectation") is None and got.get("sell", "budget") is None
    assert got.two_sided and set(got.sides) == {"buy", "sell"}
    buy = got.facts("buy", PropertyFacts(budget=1, price_expectation=2))
    sell = got.facts("sell", PropertyFacts(budget=1, price_expectation=2))
    assert (buy.budget, buy.price_expectation) == (650_000, None)
    assert (sell.budget, sell.price_expectation) == (None, 480_000)


def test_only_what_the_latest_message_gave_counts_as_filled_and_stored_values_are_kept() -> None:
    stored = [Slot("buy", "budget", 500_000), Slot("contact", "sides", ["buy"])]
    got = merge(
        stored,
        intent(PropertyFacts(budget=500_000, bedrooms=3, financing="va"), filled=("bedrooms", "financing")),
        "buyer",
    )
    assert got.filled == [("buy", "financing"), ("buy", "bedrooms")]
    assert {(s.side, s.name) for s in got.changed} == {("buy", "financing"), ("buy", "bedrooms")}
    assert got.get("buy", "budget") == 500_000


def test_a_new_value_replaces_the_stored_one() -> None:
    got = merge(
        [Slot("buy", "budget", 500_000)], intent(PropertyFacts(budget=550_000), filled=("budget",)), "buyer"
    )
    assert got.get("buy", "budget") == 550_000
    assert Slot("buy", "budget", 550_000) in got.changed and ("buy", "budget") in got.filled


def test_a_cash_buyer_counts_as_ready_and_is_never_asked_about_a_lender() -> None:
    got = merge([], intent(PropertyFacts(financing="cash"), filled=("financing",)), "buyer")
    assert got.facts("buy", PropertyFacts()).preapproved is True
    va = merge([], intent(PropertyFacts(financing="va"), filled=("financing",)), "buyer")
    assert va.facts("buy", PropertyFacts()).preapproved is None  # a loan kind is not a pre-approval


def test_the_acknowledgement_names_what_was_just_said_in_one_clause() -> None:
    got = merge(
        [],
        intent(
            PropertyFacts(financing="va", buyer_for="parents", motivation="relocation"),
            filled=("financing", "buyer_for", "motivation"),
        ),
        "buyer",
    )
    text, names = acknowledgement(got)
    assert text == "Got it: VA loan, for your parents and relocating."
    assert names == ["financing", "buyer_for", "motivation"]
    assert acknowledgement(Dialogue()) == ("", [])


def test_compose_puts_the_answer_first_then_the_acknowledgement_then_the_question() -> None:
    text = compose(answer="Here is how it works.", ack="Got it: VA loan.", body=["How soon?"], sent=set())
    assert text == "Here is how it works. Got it: VA loan. How soon?"


def test_compose_never_sends_a_text_twice_while_another_phrasing_is_left() -> None:
    sent = {"how soon?"}
    assert compose(body=["How soon?", "When do you move?"], sent=sent) == "When do you move?"
    both = {"how soon?", "when do you move?"}
    again = compose(body=["How soon?", "When do you move?"], sent=both)
    assert again not in ("How soon?", "When do you move?") and again


def test_a_question_already_sent_inside_another_text_is_reworded_then_let_be() -> None:
    # The same question after a different acknowledgement is still the same question.
    sent = {"got it: 3 bedrooms. how soon?"}
    assert compose(ack="Got it: in Upland.", body=["How soon?", "When do you move?"], sent=sent) == (
        "Got it: in Upland. When do you move?"
    )
    both = {"got it: 3 bedrooms. how soon?", "got it: by june 1. when do you move?"}
    third = compose(ack="Got it: in Upland.", body=["How soon?", "When do you move?"], sent=both)
    assert third.startswith("Got it: in Upland. ")
    assert "How soon?" not in third and "When do you move?" not in third


def test_the_acknowledgement_and_closing_lines_follow_the_reply_language() -> None:
    got = merge(
        [],
        intent(
            PropertyFacts(financing="va", bedrooms=3, budget=450_000),
            filled=("financing", "bedrooms", "budget"),
        ),
        "buyer",
    )
    with replying_in("es"):
        assert acknowledgement(got)[0] == "Entendido: préstamo VA, hasta $450,000 y 3 recámaras."
        spent = compose(body=["¿Cuándo?"], sent=sent_texts([]) | {"¿cuando?"})  # sent texts are folded
    assert spent == "¿Le puedo ayudar con algo más mientras tanto?"


def test_the_turn_language_is_what_most_messages_are_in_else_what_was_stored() -> None:
    @dataclass
    class Said:
        body: str
        direction: str = "inbound"
        created_at: datetime = datetime(2026, 3, 3, tzinfo=UTC)

    inbound = Said

    spanish = [inbound("hola, queremos vender la casa"), inbound("tenemos VA loan, budget like 450k")]
    assert turn_language(spanish, []) == "es"  # a tie goes to the language the contact started in
    assert turn_language([inbound("👍"), inbound("ok")], [Slot("contact", "language", "es")]) == "es"
    assert turn_language([inbound("looking to buy in rancho cucamonga please")], []) == "en"
    assert turn_language([inbound("ok")], []) == "en"


def test_a_no_is_never_answered_with_great() -> None:
    assert is_negative("nope") and is_negative("No thanks") and is_negative("no gracias")
    assert not is_negative("now is good") and not is_negative("nothing fancy, 3 beds")
    text = compose(
        ack="Got it: 3 bedrooms.", body=["Great, what price range works?"], sent=set(), negative=True
    )
    assert text == "What price range works?"


def test_sent_texts_fold_case_and_accents() -> None:
    class T:
        def __init__(self, direction: str, body: str) -> None:
            self.direction, self.body, self.created_at = direction, body, datetime.now(UTC)

    assert sent_texts([T("outbound", "Qué  Tal"), T("inbound", "hola")]) == {"que tal"}


def _record(
    inbound: str,
    texts: list[str],
    asked: str | None,
    slots: list[Slot],
    topic: str | None = None,
    answered: str = "",
) -> TurnRecord:
    outcome = BotOutcome(
        bot="buyer",
        temperature="warm",
        memory={},
        replies=["k"],
        reply_marks={"asked": asked, "answered": answered},
        question_topic=topic,
    )
    return TurnRecord(inbound, ConversationResult(None, "answered", [outcome]), texts, slots)


def test_the_reply_rule_checker_catches_each_broken_rule() -> None:
    """The checker every scripted conversation test runs must itself fail on each kind of break."""
    turns = [
        _record("hi", ["What's your budget?"], "budget", []),
        _record("500k", ["What's your budget?"], "budget", [Slot("buy", "budget", 500_000)]),
        _record("how does it work?", ["How many bedrooms?"], "bedrooms_areas", [], topic="process"),
    ]
    problems = reply_rule_violations("c1", turns)
    assert len(problems) == 3
    assert "repeats the text of turn 1" in problems[0]
    assert "asks for 'budget', already given" in problems[1]
    assert "asked about 'process'" in problems[2]
    assert reply_rule_violations("c1", turns[:1]) == []
