"""Reading one message: every part of the pipeline applied to one inbound text.

:func:`read_message` normalises the text, runs the classifier, the phrase
tables, the quantity, date and place readers and the rules, and returns a
:class:`Reading`: what this one message said. The conversation-level view
(later messages win, areas accumulate, confidences) is
:func:`ghl_real_estate_ai.bots.intent_decoder.analyze_lead`, which reads through
:func:`read_message_cached`: a turn reads the same message several times (the
service's check of the newest message, then each bot's analysis), and every turn
reads the conversation's earlier messages again; each distinct reading is made once.
"""

# Pattern tables read best one alternative per string, some longer than a line.
# ruff: noqa: E501

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from ghl_real_estate_ai.understanding import rules
from ghl_real_estate_ai.understanding.classifier import RED_FLAG_LABELS, load_classifier
from ghl_real_estate_ai.understanding.dates import duration_answer, when
from ghl_real_estate_ai.understanding.language import message_language
from ghl_real_estate_ai.understanding.normalise import normalise
from ghl_real_estate_ai.understanding.phrases import (
    _ADDRESS,
    _APPOINTMENT,
    _BUY,
    _CONDITIONS,
    _FINANCING,
    _HUMAN,
    _LIST,
    _MOTIVES,
    _NEGATED_CONDITION,
    _OBJECTIONS,
    _RED_FLAGS,
    _SELL,
    _SHOWING,
    _VALUE,
    _is_opt_out,
    _is_resume_word,
    _latest_category,
    _preapproval,
)
from ghl_real_estate_ai.understanding.places import find_places
from ghl_real_estate_ai.understanding.quantities import (
    _BATHROOMS,
    _BEDROOMS,
    _MONEY,
    _RENT_CUE,
    _SQFT,
    _YEARLY_AFTER,
    BARE_AMOUNT,
    _amount,
    _count,
    _money_category,
)
from ghl_real_estate_ai.understanding.text import (
    _CLAUSE_BREAK,
    _NUM,
    _affirmed,
    _negated,
    finditer,
    may_match,
    search,
    table_may_match,
)

__all__ = [
    "ACT_THRESHOLD",
    "BUYER_MOTIVES",
    "INTENT_THRESHOLD",
    "READ_CACHE_SIZE",
    "SELLER_MOTIVES",
    "Reading",
    "asked_about",
    "objections_of",
    "read_message",
    "read_message_cached",
]

ACT_THRESHOLD = 0.25
"""A label whose probability reaches this is one of the message's dialogue acts."""
INTENT_THRESHOLD = 0.6
"""A classifier label this probable decides a flag (opt-out, opt-in, human request, not a prospect...)."""

NOT_PROSPECT_THRESHOLD = 0.7
"""The classifier must be this sure before a contact is called no prospect (it closes the conversation)."""
MAX_READ_CHARS = 4000
"""At most this much of a message is read: its first 3,000 and last 1,000 characters. An SMS holds
at most 1,600; a long e-mail says what it wants at its start and signs off (or opts out) at its end,
and reading the middle too would cost time without telling more."""
READ_CACHE_SIZE = 1024
"""Distinct readings :func:`read_message_cached` keeps (the least recently used go first): enough
for the turns in flight and their conversations' recent messages, bounded whatever the traffic."""
SENTENCE_CACHE_SIZE = 4096
"""Sentences whose classifier probabilities :func:`read_message` keeps (least recently used go first)."""
SENTENCE_CACHE_CHARS = 40
"""Only sentences this short are remembered: "Hi!", "Thanks.", "Is this Jorge?" come back in many
messages, a longer one hardly ever, and remembering it would only flatter a benchmark that sends
the same texts again."""
RED_FLAG_THRESHOLD = 0.75
"""A red-flag label this probable is a red flag even when no phrase of its kind matched."""
VALUE_PHRASE_PRECISION = 0.9
"""Share of the corpus messages the value-question phrase table matches that are value questions
(46 of 50 when measured; the rest were value questions too, labelled by their red flag);
``tests/understanding/test_rules.py`` keeps it true."""

SELLER_MOTIVES = frozenset({"divorce", "inheritance", "financial", "downsizing", "retirement"})
BUYER_MOTIVES = frozenset({"first_home", "investment", "upsizing"})
# Red-flag labels of the classifier and the phrase-table names of the same family.
_RED_FLAG_FAMILIES: dict[str, tuple[str, frozenset[str]]] = {
    "foreclosure": ("foreclosure", frozenset({"foreclosure", "short_sale"})),
    "probate": ("probate", frozenset({"probate"})),
    "divorce": ("divorce", frozenset({"divorce"})),
    "bankruptcy": ("bankruptcy", frozenset({"bankruptcy"})),
    "delinquency": ("delinquent_mortgage", frozenset({"delinquent_mortgage"})),
    "legal": ("legal", frozenset({"attorney", "lawsuit", "eviction"})),
    "lien": ("lien", frozenset({"lien", "tax_lien"})),
}
# "Don't stop sending listings": a negated opt-out word asks for the opposite.
_KEEP_TEXTING = re.compile(
    r"\b(?:don't|do not|never|please don't|no) (?:stop|unsubscribe|remove|cancel)\b|\bno (?:dejen|deje) de\b"
)
_SENTENCES = re.compile(r"[.!?;\n]+")
_BARE_NO = re.compile(r"^(?:no+|nope|nah|naw|not yet|no no|todavia no|aun no)[.!]*$")
_NOT_PROSPECT = {
    "rent": "renter",
    "has_agent": "has_agent",
    "wrong_number": "wrong_number",
    "not_interested": "not_interested",
}

# What the bot's previous question was about, to read a bare answer ("450k", "3").
_ASKED_BUDGET = re.compile(
    r"\bbudget\b|\bprice range\b|\bafford\b|\bspend\b|\bpresupuesto\b|\brango de precio\b|\bgastar\b"
)
_ASKED_PRICE = re.compile(
    r"\bhoping to get\b|\bprice in mind\b|\bworth\b|\bsell (?:it |the home )?for\b|\blist"
    r"|\bun precio\b|\bque precio\b|\bprecio quedaria\b|\bcuanto vale\b"
)
_ASKED_TIMELINE = re.compile(
    r"\bwhen\b|\bhow soon\b|\b30 to 45 days\b|\bcuando\b|\bque tan pronto\b|\b30 a 45 dias\b"
)
_ASKED_BEDROOMS = re.compile(r"\bbedrooms?\b|\bbeds\b|\brecamaras?\b|\bcuartos\b|\bhabitaciones\b")
_BARE_NUMBER = re.compile(rf"^(?:about |around |at least |maybe )?(?P<n>{_NUM})\s*(?:\+|or more)?[.!]?$")


@dataclass
class Reading:
    """What one inbound message said (``None``/empty: it did not say)."""

    signals: list[str] = field(default_factory=list)
    budget: int | None = None
    preapproved: bool | None = None
    down_payment: int | None = None
    monthly_income: int | None = None
    bedrooms: int | None = None
    bathrooms: float | None = None
    sqft: int | None = None
    areas: list[str] = field(default_factory=list)
    timeline_days: int | None = None
    motivation: str | None = None
    condition: str | None = None
    price_expectation: int | None = None
    property_address: str | None = None
    wants_showing: bool = False
    wants_appointment: bool = False
    value_question: bool = False
    value_confidence: float = 0.0
    human_request: bool = False
    opt_out: bool = False
    resume: bool = False
    red_flags: list[str] = field(default_factory=list)
    objections: list[str] = field(default_factory=list)
    financing: str | None = None
    must_sell_first: bool = False
    agent_status: str | None = None
    target_date: date | None = None
    monthly_rent: int | None = None
    property_type: str | None = None
    buyer_for: str | None = None
    intent_scores: Mapping[str, float] = field(default_factory=dict)
    label: str = ""
    acts: tuple[str, ...] = ()
    question_topic: str | None = None
    not_prospect: str | None = None
    opt_in: bool = False
    classifier_version: str = ""
    language: str | None = None
    """"en"/"es" when the message clearly is in that language (:func:`..language.language_of`)."""

    def add(self, signal: str) -> None:
        if signal not in self.signals:
            self.signals.append(signal)


# Which side a sentence is on, to attach a cue-less amount to it ("we'd sell ours, about 600k").
_SELL_SIDE = re.compile(
    r"\b(?:sell\w*|list\w*|ours|our (?:house|home|place|condo)|mine|worth|value|asking|vend\w*)\b"
)
_BUY_SIDE = re.compile(
    r"\b(?:buy\w*|purchas\w*|looking (?:for|at)|new (?:one|house|home|place)|next (?:one|house|home)|compr\w*)\b"
)


def _sentence_side(text: str, start: int) -> str:
    """``buyer``/``seller`` from the intent word nearest before ``start`` in its sentence."""
    head = re.split(r"[.!?;\n]", text[:start])[-1]
    sell = [m.end() for m in _SELL_SIDE.finditer(head)]
    buy = [m.end() for m in _BUY_SIDE.finditer(head)]
    if not sell and not buy:
        return ""
    return "seller" if max(sell, default=-1) > max(buy, default=-1) else "buyer"


def _money(text: str, found: Reading, asked: str, side: str) -> None:
    for match in finditer(_MONEY, text):
        amount_read = _amount(
            text, match, thousands=asked in ("budget", "price") or bool(BARE_AMOUNT.match(text))
        )
        if amount_read is None:
            continue
        value, monthly = amount_read
        if value < 300 or value > 100_000_000:
            continue
        category = _money_category(text, match)
        amount = round(value)
        before = _CLAUSE_BREAK.split(text[max(0, match.start() - 60) : match.start()])[-1]
        if monthly and category != "income":
            if _RENT_CUE.search(before) or category in (None, "unknown", "budget"):
                found.monthly_rent = amount
                found.add("monthly_rent")
            continue
        if value < 1_000:
            continue
        after = text[match.end() : match.end() + 30]
        if category == "income":
            yearly = bool(_YEARLY_AFTER.search(after)) or (not monthly and value >= 25_000)
            found.monthly_income = round(value / 12) if yearly else amount
            found.add("monthly_income")
        elif category == "down_payment":
            found.down_payment = amount
            found.add("down_payment")
        elif category == "price" and value >= 20_000:
            found.price_expectation = amount
            found.add("price_expectation")
        elif category == "budget" and value >= 20_000:
            found.budget = amount
            found.add("budget")
        elif category == "unknown" and value >= 20_000:
            # No cue word: the side of its own sentence, this message's side, the question we
            # asked, then the side the conversation has taken so far decide.
            here = _sentence_side(text, match.start())
            buy_here = "looking_to_buy" in found.signals
            sell_here = bool({"sell_my_house", "list_my_house", "value_question"} & set(found.signals))
            if here == "buyer" or (
                not here
                and (
                    buy_here
                    or (
                        not sell_here
                        and (asked == "budget" or (asked not in ("budget", "price") and side == "buyer"))
                    )
                )
            ):
                found.budget = amount
                found.add("budget")
            elif (
                here == "seller"
                or sell_here
                or asked == "price"
                or (asked not in ("budget", "price") and side == "seller")
            ):
                found.price_expectation = amount
                found.add("price_expectation")


def _read_part(raw: str) -> str:
    """The part of a message that is read (:data:`MAX_READ_CHARS`)."""
    if len(raw) > MAX_READ_CHARS:
        return raw[: MAX_READ_CHARS - 1000] + "\n" + raw[-1000:]
    return raw


def _objections(text: str) -> list[str]:
    if not table_may_match(_OBJECTIONS, text):
        return []
    return [name for name, pattern in _OBJECTIONS if search(pattern, text)]


def objections_of(raw: str) -> list[str]:
    """The objections one message raises: :attr:`Reading.objections` of :func:`read_message`, which
    depend on the text alone, without reading the rest."""
    return _objections(normalise(_read_part(raw)))


def _sentence_scores(sentence: str) -> Mapping[str, float]:
    """The classifier's probabilities for one sentence of a message; a short one is remembered
    (see :data:`SENTENCE_CACHE_CHARS`). Shared: never change it."""
    if len(sentence) <= SENTENCE_CACHE_CHARS:
        return _short_sentence_scores(sentence)
    return load_classifier().scores(sentence)


@functools.lru_cache(maxsize=SENTENCE_CACHE_SIZE)
def _short_sentence_scores(sentence: str) -> Mapping[str, float]:
    return load_classifier().scores(sentence)


def read_message(
    raw: str, *, today: date, asked: str = "", known_areas: Sequence[str] = (), side: str = ""
) -> Reading:
    """Read one inbound message.

    Args:
        raw: the message as the lead wrote it.
        today: the day it was sent (relative dates count from it).
        asked: what the bot's previous message asked ("budget", "price", "bedrooms", "timeline" or "").
        known_areas: area names to recognise besides the gazetteer's.
        side: "buyer"/"seller" when the conversation so far leans one way, else "".
    """
    raw = _read_part(raw)
    text = normalise(raw)
    found = Reading()
    classifier = load_classifier()
    scores = classifier.scores(raw)
    found.intent_scores = scores
    found.classifier_version = classifier.version
    found.label = max(scores, key=scores.__getitem__)
    # Flags come from each sentence on its own (the most probable sentence wins), so one more
    # sentence can add a flag but never hide one an earlier sentence raised.
    sentences = [part.strip() for part in _SENTENCES.split(raw) if part.strip()]
    flags: dict[str, float] = dict(scores)
    if len(sentences) > 1:
        per_sentence = [_sentence_scores(sentence) for sentence in sentences]
        # Every probability dict lists the labels in the classifier's order: column-wise maxima.
        columns = zip(*(each.values() for each in per_sentence), strict=True)
        flags = dict(zip(scores, map(max, columns), strict=True))
    if _affirmed(_BUY, text):
        found.add("looking_to_buy")
    if _affirmed(_SELL, text):
        found.add("sell_my_house")
    if _affirmed(_LIST, text):
        found.add("list_my_house")
    value_phrase = _affirmed(_VALUE, text) is not None
    if value_phrase:
        found.value_question = True
        found.add("value_question")
    if _affirmed(_SHOWING, text):
        found.wants_showing = True
        found.add("wants_showing")
    if _affirmed(_APPOINTMENT, text):
        found.wants_appointment = True
        found.add("wants_appointment")
    if _affirmed(_HUMAN, text):
        found.human_request = True
        found.add("human_request")
    if _affirmed(_FINANCING, text):
        found.add("financing")

    found.preapproved = _preapproval(text)
    if found.preapproved is True:
        found.add("preapproved")
    elif found.preapproved is False:
        found.add("not_preapproved")

    for match in finditer(_BEDROOMS, text):
        beds = _count(match.group("n"), 0, 12)
        if beds is not None and not _negated(text, match.start()):
            found.bedrooms = int(beds)
    for match in finditer(_BATHROOMS, text):
        baths = _count(match.group("n"), 1, 12)
        if baths is not None:
            found.bathrooms = baths
    for match in finditer(_SQFT, text):
        raw_n = match.group("n")
        size = float(raw_n[:-1]) * 1000 if raw_n.endswith("k") else float(raw_n.replace(",", ""))
        if 200 <= size <= 50_000:
            found.sqft = round(size)

    _money(text, found, asked, side)

    bare = _BARE_NUMBER.match(text)
    if bare and asked == "bedrooms" and found.bedrooms is None:
        beds = _count(bare.group("n"), 0, 12)
        if beds is not None:
            found.bedrooms = int(beds)
    if found.bedrooms is not None:
        found.add("bedrooms")
    if found.bathrooms is not None:
        found.add("bathrooms")
    if found.sqft is not None:
        found.add("sqft")

    found.areas = find_places(raw, known_areas)
    if found.areas:
        found.add("areas")
    found.language = message_language(raw)

    timing = when(text, today)
    if timing is None:
        timing = duration_answer(text, today)
    if timing is not None:
        found.timeline_days, found.target_date = timing
        found.add("timeline")

    motive = _latest_category(text, _MOTIVES)
    if motive is not None and not motive[1]:
        found.motivation = motive[0]
        found.add("motivation")
        if motive[0] in SELLER_MOTIVES:
            found.add("seller_motivation")
        elif motive[0] in BUYER_MOTIVES:
            found.add("buyer_motivation")

    condition = _latest_category(text, _CONDITIONS)
    if condition is not None:
        name, negated = condition
        found.condition = _NEGATED_CONDITION[name] if negated else name
        found.add("condition")

    address = search(_ADDRESS, raw)
    if address is not None:
        found.property_address = " ".join(address.group().rstrip(".").split())
        found.add("property_address")

    # Said in plain words ("mom passed and we have to sell her house", "missed 3 payments"):
    # the classifier's red-flag label counts when no phrase of its family did.
    # A phrase of the family that is there but negated ("I'm not in foreclosure") vetoes it.
    denied: set[str] = set()
    for name, pattern in _RED_FLAGS if table_may_match(_RED_FLAGS, text) else ():
        if not may_match(pattern, text):
            continue
        if _affirmed(pattern, text):
            found.red_flags.append(name)
        elif pattern.search(text):
            denied.add(name)
    for label in RED_FLAG_LABELS:
        flag, family = _RED_FLAG_FAMILIES[label]
        if flags.get(label, 0.0) >= RED_FLAG_THRESHOLD and not family & (set(found.red_flags) | denied):
            found.red_flags.append(flag)
    if found.red_flags:
        found.add("red_flag")
    found.objections = _objections(text)
    if found.objections:
        found.add("objection")

    # Opt-out: the carrier keywords and the clear phrases as rules, the rest ("ya no me
    # escriba", "unsub pls", "lose my number") by the classifier.
    keyword = rules.keyword(text)
    classified_out = flags.get("opt_out", 0.0) >= INTENT_THRESHOLD and not search(_KEEP_TEXTING, text)
    found.opt_out = keyword == "opt_out" or _is_opt_out(text) or classified_out
    found.opt_in = not found.opt_out and (
        keyword == "opt_in" or _is_resume_word(text) or flags.get("opt_in", 0.0) >= INTENT_THRESHOLD
    )
    found.resume = found.opt_in
    if found.opt_out:
        found.add("opt_out")
    elif found.resume:
        found.add("resume")

    if not found.human_request and flags.get("human_request", 0.0) >= INTENT_THRESHOLD:
        found.human_request = True
        found.add("human_request")
    if not found.value_question and flags.get("value_question", 0.0) >= INTENT_THRESHOLD:
        found.value_question = True
        found.add("value_question")
    # Two independent witnesses of a value question, the phrase table and the classifier: the
    # chance both are wrong is the product of their error rates.
    found.value_confidence = 1.0 - (1.0 - flags.get("value_question", 0.0)) * (
        1.0 - (VALUE_PHRASE_PRECISION if value_phrase else 0.0)
    )
    # A plain statement of intent, however it is worded, is evidence of its own.
    buy = flags.get("buy", 0.0) + flags.get("both", 0.0)
    sell = flags.get("sell", 0.0) + flags.get("both", 0.0)
    if buy >= INTENT_THRESHOLD:
        found.add("looking_to_buy")
        if flags.get("buy", 0.0) + flags.get("both", 0.0) >= 0.8:
            found.add("stated_buy_intent")
    if sell >= INTENT_THRESHOLD:
        found.add("sell_my_house")
        if sell >= 0.8:
            found.add("stated_sell_intent")

    found.financing = rules.financing(text)
    if found.financing is not None:
        found.add("financing")
        if found.financing == "cash":
            found.add("cash_buyer")
    found.must_sell_first = rules.must_sell_first(text)
    if found.must_sell_first:
        found.add("must_sell_first")
    found.agent_status = rules.agent_status(text)
    if found.agent_status is None and flags.get("has_agent", 0.0) >= INTENT_THRESHOLD:
        found.agent_status = "has_agent"
    found.property_type = rules.property_type(text)
    found.buyer_for = rules.buyer_for(text)
    found.question_topic = rules.question_topic(text)
    if found.question_topic == "other" and (BARE_AMOUNT.match(text) or duration_answer(text, today)):
        found.question_topic = None  # "idk like 500?", "maybe 6 months?": an unsure answer, not a question
    acts = sorted(
        (label for label, p in scores.items() if p >= ACT_THRESHOLD), key=lambda label: -scores[label]
    )
    if found.question_topic is not None:
        acts.append("question")
    found.acts = tuple(acts)
    if _BARE_NO.match(text):
        pass  # "no" answers the question asked; it does not close the conversation
    elif found.value_question or max(buy, sell) >= INTENT_THRESHOLD:
        pass  # "we have an agent for buying, but what is ours worth?": still a prospect
    elif found.label in _NOT_PROSPECT and scores[found.label] >= NOT_PROSPECT_THRESHOLD:
        found.not_prospect = _NOT_PROSPECT[found.label]
    elif found.agent_status == "has_agent" and found.label not in ("buy", "sell", "both", "value_question"):
        found.not_prospect = "has_agent"
    return found


@functools.lru_cache(maxsize=READ_CACHE_SIZE)
def read_message_cached(
    raw: str, today: date, asked: str = "", known_areas: tuple[str, ...] = (), side: str = ""
) -> Reading:
    """:func:`read_message`, made once per distinct set of arguments while it stays in the cache.

    The reading only depends on its arguments and the shipped classifier, gazetteer and
    tables, so a remembered one is the one a new read would give. It is shared by every
    caller with the same arguments: read it, never change it.
    """
    return read_message(raw, today=today, asked=asked, known_areas=known_areas, side=side)


@functools.lru_cache(maxsize=READ_CACHE_SIZE)
def asked_about(outbound: str) -> str:
    """What the bot's message asked: "bedrooms", "budget", "price", "timeline" or ""."""
    text = normalise(outbound)
    last_question = text.rsplit(".", 1)[-1] if "?" not in text else text[: text.rfind("?")].rsplit(".", 1)[-1]
    if _ASKED_BEDROOMS.search(last_question):
        return "bedrooms"
    if _ASKED_BUDGET.search(last_question):
        return "budget"
    if _ASKED_PRICE.search(last_question):
        return "price"
    if _ASKED_TIMELINE.search(last_question):
        return "timeline"
    return ""


def warm_up() -> None:
    """Load what reading a message needs (classifier, gazetteer, dateparser's languages) now.

    Called once at start-up so the first message pays nothing; each part is cached per process.
    """
    from ghl_real_estate_ai.understanding import language
    from ghl_real_estate_ai.understanding.places import gazetteer

    load_classifier()
    gazetteer()
    language.warm_up()
    when("by june 15", date(2000, 1, 1))
