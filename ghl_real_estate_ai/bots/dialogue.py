"""The dialogue state and the reply rules every bot follows.

The dialogue state is what a contact told the bots, kept per contact in the
database (``dialogue_slots``, one row per slot) and attached to the side of
the deal it belongs to: ``buy`` (budget, financing, who the home is for...),
``sell`` (asking price, condition...) or ``contact`` (the sides the contact is
on, agent status, must sell first). A two-sided lead has both slot sets, so
a buying budget never becomes an asking price.

Per message, the conversation service loads the stored slots once
(:meth:`Store.list_slots`), the bot's analyze node merges what the decoder
read (:func:`merge`), and the service saves what changed (:meth:`Store.save_slots`).

The reply rules (:func:`compose`): the answer to the lead's own question comes
first, then one short clause acknowledging what the latest message gave
("Got it: VA loan, for your parents."), then the next question, asked only
for a slot still missing. A text already sent in the conversation is never
sent again (a rephrased variant of the question, or a different line, goes
instead), and a "no" is never answered with "Great!".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from babel.dates import format_date
from opentelemetry.trace import Span

from ghl_real_estate_ai.bots.intent_decoder import SCORE_ATTRIBUTE_MIN, LeadIntent, PropertyFacts, Turn
from ghl_real_estate_ai.bots.templates import reply_language
from ghl_real_estate_ai.storage.base import Slot
from ghl_real_estate_ai.understanding.language import conversation_language, message_language

__all__ = [
    "CONTACT_SLOTS",
    "NON_PERSONAL_SLOTS",
    "SIDE_SLOTS",
    "Dialogue",
    "acknowledgement",
    "compose",
    "is_negative",
    "merge",
    "record_understanding",
    "sent_texts",
]

SIDE_SLOTS: Mapping[str, tuple[str, ...]] = {
    "buy": (
        "budget",
        "financing",
        "preapproved",
        "bedrooms",
        "areas",
        "target_date",
        "timeline_days",
        "motivation",
        "property_type",
        "buyer_for",
    ),
    "sell": (
        "price_expectation",
        "condition",
        "motivation",
        "target_date",
        "timeline_days",
        "bedrooms",
        "sqft",
        "areas",
        "property_type",
    ),
}
"""The slots of each side of a deal."""

CONTACT_SLOTS: tuple[str, ...] = ("sides", "agent_status", "must_sell_first", "listing_booked", "language")
"""Slots about the person rather than one side."""

_ONLY_BUY = frozenset({"budget", "financing", "preapproved", "buyer_for"})
_ONLY_SELL = frozenset({"price_expectation", "condition", "sqft"})
_SHARED_BY_A_MOVE = frozenset({"target_date", "timeline_days", "motivation"})
_BUYER_MOTIVES = frozenset({"first_home", "investment", "upsizing"})
_SELLER_MOTIVES = frozenset({"divorce", "inheritance", "financial", "downsizing", "retirement"})

NON_PERSONAL_SLOTS = frozenset(
    {
        "sides",
        "financing",
        "property_type",
        "agent_status",
        "must_sell_first",
        "listing_booked",
        "language",
        "bedrooms",
        "condition",
    }
)
"""Slots whose value may go on a span event: categories and counts, nothing that identifies anyone."""


def _json(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass(slots=True)
class Dialogue:
    """The merged dialogue state of one contact for one turn.

    Attributes:
        slots: ``(side, name) -> value`` (plain JSON values; dates as ISO text).
        filled: the ``(side, name)`` pairs the latest message filled or changed, in order.
        changed: the slots to save (new or changed values).
        decided: the slots a bot set itself this turn (``listing_booked``), not read from a message.
    """

    slots: dict[tuple[str, str], Any] = field(default_factory=dict)
    filled: list[tuple[str, str]] = field(default_factory=list)
    changed: list[Slot] = field(default_factory=list)
    decided: list[Slot] = field(default_factory=list)

    def get(self, side: str, name: str) -> Any:
        """A slot's value, None when the contact has not said."""
        return self.slots.get((side, name))

    def has(self, side: str, name: str) -> bool:
        """Whether the slot has a value."""
        value = self.slots.get((side, name))
        return value is not None and value != [] and value is not False

    @property
    def sides(self) -> tuple[str, ...]:
        """``buy`` and/or ``sell``: the sides of a deal the contact is on."""
        return tuple(self.get("contact", "sides") or ())

    @property
    def two_sided(self) -> bool:
        """The contact buys and sells (or must sell before buying)."""
        return {"buy", "sell"} <= set(self.sides) or bool(self.get("contact", "must_sell_first"))

    def set(self, side: str, name: str, value: Any) -> None:
        """Set a slot a bot decided (``listing_booked``...): saved with the turn's changes."""
        if self.slots.get((side, name)) == value:
            return
        self.slots[(side, name)] = value
        self.changed = [s for s in self.changed if (s.side, s.name) != (side, name)]
        self.changed.append(Slot(side, name, value))
        self.decided.append(Slot(side, name, value))

    def context(self) -> dict[str, Any]:
        """The slots as ``{"buy.budget": 500000, ...}``: what a model writing the reply is told."""
        return {f"{side}.{name}": value for (side, name), value in sorted(self.slots.items())}

    def has_timeline(self, side: str) -> bool:
        """Whether the side has a timeline (a date or a number of days)."""
        return self.has(side, "target_date") or self.has(side, "timeline_days")

    def facts(self, side: str, base: PropertyFacts) -> PropertyFacts:
        """``base`` (what the decoder read) with this side's stored slots in place.

        The other side's amounts are left out: a buyer's facts carry no asking
        price and a seller's no budget.
        """
        values: dict[str, Any] = {}
        other = "sell" if side == "buy" else "buy"
        for name in SIDE_SLOTS[side]:
            value = self.get(side, name)
            if value is None and self.two_sided and name in _SHARED_BY_A_MOVE:
                # One move, two deals: when to move and why hold for both sides.
                value = self.get(other, name)
            if name == "areas":
                values[name] = tuple(value or ())
            elif name == "target_date":
                values[name] = date.fromisoformat(value) if value else None
            else:
                values[name] = value
        for name in SIDE_SLOTS[other]:
            if name not in SIDE_SLOTS[side] and name != "sqft":
                values[name] = None
        values["agent_status"] = self.get("contact", "agent_status")
        values["must_sell_first"] = bool(self.get("contact", "must_sell_first"))
        if side == "buy" and self.get("buy", "financing") in ("cash", "preapproved"):
            # A cash buyer needs no lender: the pre-approval question is answered for good.
            values["preapproved"] = True
        return replace(base, **values)


def side_in_focus(bot: str, intent: LeadIntent) -> str:
    """The side a fact of this turn belongs to when the fact itself does not say."""
    if intent.question_topic == "value" or "value_question" in intent.acts:
        return "sell"  # the details that come with "what's ours worth?" describe their own home
    if bot == "buyer":
        return "buy"
    if bot == "seller":
        return "sell"
    scores = intent.intent_scores
    buy = max(intent.buyer_confidence, scores.get("buy", 0.0))
    sell = max(intent.seller_confidence, scores.get("sell", 0.0), scores.get("value_question", 0.0))
    return "sell" if sell > buy else "buy"


def _sides(intent: LeadIntent, bot: str, stored: Sequence[str]) -> list[str]:
    sides = list(stored)
    acts = set(intent.acts)
    facts = intent.facts
    # A slot only one side has says which side the contact is on ("VA loan", "for my parents").
    wants_buy = (
        bot == "buyer"
        or bool(acts & {"buy", "both"})
        or intent.buyer_confidence >= 0.35
        or facts.must_sell_first
        or any(
            getattr(facts, name, None) not in (None, False) for name in ("budget", "financing", "buyer_for")
        )
    )
    wants_sell = (
        bot == "seller"
        or bool(acts & {"sell", "both", "value_question"})
        or intent.seller_confidence >= 0.35
        or facts.must_sell_first
        or facts.price_expectation is not None
    )
    if wants_buy and "buy" not in sides:
        sides.append("buy")
    if wants_sell and "sell" not in sides:
        sides.append("sell")
    return sides


def _fact_side(name: str, value: Any, focus: str) -> str:
    if name in _ONLY_BUY:
        return "buy"
    if name in _ONLY_SELL:
        return "sell"
    if name == "motivation":
        if value in _BUYER_MOTIVES:
            return "buy"
        if value in _SELLER_MOTIVES:
            return "sell"
    return focus


def merge(stored: Iterable[Slot], intent: LeadIntent, bot: str) -> Dialogue:
    """The stored slots updated with what the decoder read from the conversation.

    A value the latest message gave (``intent.slots_filled``) replaces the
    stored one; a value read from earlier messages fills only a slot still
    empty (the database remembers beyond the messages the decoder reads).

    Args:
        stored: the contact's slots from the database.
        intent: the decoded conversation.
        bot: the bot running (``lead``, ``buyer`` or ``seller``): its side gets
            the facts that could belong to either side (bedrooms, areas, timeline).

    Returns:
        The merged state, with the slots filled this turn and the ones to save.
    """
    dialogue = Dialogue({(s.side, s.name): s.value for s in stored})
    focus = side_in_focus(bot, intent)
    latest = set(intent.slots_filled) or _latest_from_signals(intent.latest_signals)
    facts = intent.facts
    updates: dict[tuple[str, str], Any] = {}
    filled: list[tuple[str, str]] = []
    for name in (*dict.fromkeys((*SIDE_SLOTS["buy"], *SIDE_SLOTS["sell"])), "agent_status"):
        value = getattr(facts, name, None)
        if value is None or value == ():
            continue
        side = "contact" if name == "agent_status" else _fact_side(name, value, focus)
        key = (side, name)
        value = _json(value)
        if name in latest:
            updates[key] = value
            filled.append(key)
        elif dialogue.slots.get(key) is None and not any(
            n == name and v is not None for (_, n), v in dialogue.slots.items()
        ):
            # Said in an earlier message the database has not seen yet (the first turn
            # after an upgrade); a fact stored on the other side stays that side's.
            updates[key] = value
    if facts.must_sell_first:
        updates[("contact", "must_sell_first")] = True
        if "must_sell_first" in latest or not dialogue.get("contact", "must_sell_first"):
            filled.append(("contact", "must_sell_first"))
    if intent.language is not None:
        # The language the replies are written in: not a fact the lead gave, so never acknowledged.
        updates[("contact", "language")] = intent.language
    sides = _sides(intent, bot, dialogue.sides)
    if sides != list(dialogue.sides):
        updates[("contact", "sides")] = sides
        filled.append(("contact", "sides"))
    for key, value in updates.items():
        if dialogue.slots.get(key) != value:
            dialogue.slots[key] = value
            dialogue.changed.append(Slot(key[0], key[1], value))
    dialogue.filled = [key for key in dict.fromkeys(filled) if dialogue.slots.get(key) is not None]
    return dialogue


_SIGNAL_SLOTS: Mapping[str, tuple[str, ...]] = {
    "budget": ("budget",),
    "preapproved": ("preapproved",),
    "not_preapproved": ("preapproved",),
    "bedrooms": ("bedrooms",),
    "areas": ("areas",),
    "timeline": ("timeline_days", "target_date"),
    "motivation": ("motivation",),
    "condition": ("condition",),
    "price_expectation": ("price_expectation",),
    "sqft": ("sqft",),
}


def _latest_from_signals(signals: Iterable[str]) -> set[str]:
    """Slot names the latest message gave, read from the decoder's signal names (no ``slots_filled``)."""
    return {slot for signal in signals for slot in _SIGNAL_SLOTS.get(signal, ())}


def turn_language(turns: Iterable[Turn], stored: Iterable[Slot]) -> str:
    """The language to answer a contact in: the one their messages are mostly in, else the stored one.

    Args:
        turns: the conversation (inbound messages are read).
        stored: the contact's slots (``contact.language`` is what an earlier turn decided).

    Returns:
        "en" or "es" ("en" when nothing tells).
    """
    decided = conversation_language(message_language(t.body or "") for t in turns if t.direction == "inbound")
    if decided is None:
        decided = next((str(s.value) for s in stored if (s.side, s.name) == ("contact", "language")), None)
    return decided if decided == "es" else "en"


# --- understanding on the analyze span ------------------------------------------------


def record_understanding(span: Span, intent: LeadIntent, dialogue: Dialogue) -> None:
    """Put what the bot understood on its ``analyze_*`` span.

    Attributes (set in one call): the buyer/seller confidences, the
    probability of each classifier label at 1 % or more (``intent.score.<label>``,
    as on the ``intent_decoder.analyze_lead`` span), the dialogue acts, the question
    topic, the classifier version, and the names of the slots filled this turn
    (``dialogue.slots_filled``, ``side.name``). One ``slot_filled`` event per
    filled slot, with its value only for :data:`NON_PERSONAL_SLOTS`.

    Args:
        span: the analyze node's span.
        intent: the decoded conversation.
        dialogue: the merged dialogue state.
    """
    if not span.is_recording():
        return
    attributes: dict[str, Any] = {
        "intent.buyer_confidence": intent.buyer_confidence,
        "intent.seller_confidence": intent.seller_confidence,
    }
    for label, score in sorted(intent.intent_scores.items()):
        if score >= SCORE_ATTRIBUTE_MIN:
            attributes[f"intent.score.{label}"] = round(float(score), 4)
    if intent.acts:
        attributes["intent.acts"] = list(intent.acts)
    if intent.question_topic:
        attributes["intent.question_topic"] = intent.question_topic
    if intent.not_prospect:
        attributes["intent.not_prospect"] = intent.not_prospect
    attributes["intent.classifier_version"] = intent.classifier_version or "rules"
    attributes["dialogue.slots_filled"] = [f"{side}.{name}" for side, name in dialogue.filled]
    attributes["dialogue.sides"] = list(dialogue.sides)
    span.set_attributes(attributes)
    for side, name in dialogue.filled:
        event: dict[str, Any] = {"slot.name": name, "slot.side": side}
        value = dialogue.get(side, name)
        if name in NON_PERSONAL_SLOTS and isinstance(value, str | int | bool):
            event["slot.value"] = value
        elif name == "sides":
            event["slot.value"] = ",".join(value)
        span.add_event("slot_filled", event)


# --- reply rules --------------------------------------------------------------------

# How a filled slot is said back, per reply language (:func:`..templates.reply_language`).
_FINANCING_WORDS = {
    "en": {
        "cash": "paying cash",
        "va": "VA loan",
        "fha": "FHA loan",
        "conventional": "conventional loan",
        "usda": "USDA loan",
        "preapproved": "pre-approved",
    },
    "es": {
        "cash": "pago de contado",
        "va": "préstamo VA",
        "fha": "préstamo FHA",
        "conventional": "préstamo convencional",
        "usda": "préstamo USDA",
        "preapproved": "preaprobado",
    },
}
_MOTIVE_WORDS = {
    "en": {
        "relocation": "relocating",
        "job": "new job",
        "downsizing": "downsizing",
        "upsizing": "need more space",
        "retirement": "retiring",
        "first_home": "first home",
        "investment": "an investment",
        "inheritance": "an inherited home",
        "financial": "money matters",
    },
    "es": {
        "relocation": "se muda",
        "job": "trabajo nuevo",
        "downsizing": "algo más pequeño",
        "upsizing": "más espacio",
        "retirement": "jubilación",
        "first_home": "primera casa",
        "investment": "una inversión",
        "inheritance": "una casa heredada",
        "financial": "temas de dinero",
    },
}
_PROPERTY_WORDS = {
    "en": {
        "single_family": "a house",
        "condo": "a condo",
        "townhouse": "a townhouse",
        "multi_unit": "a multi-unit",
        "land": "land",
        "mobile": "a mobile home",
    },
    "es": {
        "single_family": "una casa",
        "condo": "un condominio",
        "townhouse": "un townhouse",
        "multi_unit": "una propiedad de varias unidades",
        "land": "un terreno",
        "mobile": "una casa móvil",
    },
}
_CONDITION_WORDS = {
    "en": {
        "excellent": "move-in ready",
        "good": "in good shape",
        "fair": "needs a few updates",
        "needs_work": "needs work",
    },
    "es": {
        "excellent": "lista para mudarse",
        "good": "en buen estado",
        "fair": "necesita algunos arreglos",
        "needs_work": "necesita trabajo",
    },
}
_FOR_WHOM = {
    "en": {"parents": "your parents", "mother": "your mom", "father": "your dad", "daughter": "your daughter",
           "son": "your son", "family": "your family"},
    "es": {"parents": "sus papás", "mother": "su mamá", "father": "su papá", "daughter": "su hija",
           "son": "su hijo", "family": "su familia"},
}  # fmt: skip
# The acknowledgement's frame: opener, "up to $X", "hoping for $X", "N bedroom(s)", "in X", "by <date>".
_ACK_FRAMES = {
    "en": {"opener": "Got it: {}.", "and": " and ", "budget": "up to ${:,}", "price": "hoping for ${:,}",
           "bedroom": "{} bedroom", "bedrooms": "{} bedrooms", "area": "in {}", "by": "by {}",
           "for": "for {}", "date": "MMMM d"},
    "es": {"opener": "Entendido: {}.", "and": " y ", "budget": "hasta ${:,}", "price": "espera ${:,}",
           "bedroom": "{} recámara", "bedrooms": "{} recámaras", "area": "en {}", "by": "para el {}",
           "for": "para {}", "date": "d 'de' MMMM"},
}  # fmt: skip
_ACK_ORDER = (
    "financing",
    "buyer_for",
    "motivation",
    "budget",
    "price_expectation",
    "bedrooms",
    "property_type",
    "areas",
    "target_date",
    "timeline_days",
    "condition",
)


def _when(value: Any, language: str) -> str | None:
    try:
        when = date.fromisoformat(str(value))
    except ValueError:
        return None
    frame = _ACK_FRAMES[language]
    return frame["by"].format(format_date(when, frame["date"], locale=language))


def _ack_words(name: str, value: Any, language: str = "en") -> str | None:
    frame = _ACK_FRAMES[language]
    words: str | None = None
    if name == "financing":
        words = _FINANCING_WORDS[language].get(str(value))
    elif name == "buyer_for":
        if value == "investment":
            words = _MOTIVE_WORDS[language]["investment"]
        else:
            whom = _FOR_WHOM[language].get(str(value))
            words = frame["for"].format(whom) if whom else None
    elif name == "motivation":
        words = _MOTIVE_WORDS[language].get(str(value))
    elif name == "budget" and isinstance(value, int):
        words = frame["budget"].format(value)
    elif name == "price_expectation" and isinstance(value, int):
        words = frame["price"].format(value)
    elif name == "bedrooms" and isinstance(value, int):
        words = frame["bedroom" if value == 1 else "bedrooms"].format(value)
    elif name == "property_type":
        words = _PROPERTY_WORDS[language].get(str(value))
    elif name == "areas" and value:
        words = frame["area"].format(value[-1])
    elif name == "target_date":
        words = _when(value, language)
    elif name == "condition":
        words = _CONDITION_WORDS[language].get(str(value))
    return words


def acknowledgement(dialogue: Dialogue, *, limit: int = 3) -> tuple[str, list[str]]:
    """One short clause naming what the latest message told us, and the slot names it names.

    Args:
        dialogue: the merged state (its ``filled`` slots are acknowledged).
        limit: at most this many facts in the clause.

    Returns:
        ``("Got it: VA loan, for your parents.", ["financing", "buyer_for"])``, or
        ``("", [])`` when the message gave nothing worth repeating back.
    """
    language = reply_language()
    filled = {name: dialogue.get(side, name) for side, name in dialogue.filled}
    if "target_date" in filled:
        filled.pop("timeline_days", None)
    words: list[str] = []
    names: list[str] = []
    for name in _ACK_ORDER:
        if name in filled:
            said = _ack_words(name, filled[name], language)
            if said and said not in words:
                words.append(said)
                names.append(name)
        if len(words) == limit:
            break
    if not words:
        return "", []
    frame = _ACK_FRAMES[language]
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + frame["and"] + words[-1]
    return frame["opener"].format(listed), names


_NEGATIVE = re.compile(
    r"^\s*(?:no+|nope|nah|naw|not really|not yet|not now|no thanks|no thank you|negative|"
    r"never mind|nvm|no gracias|todavia no|aun no)\b",
)


def _fold(text: str) -> str:
    if text.isascii():  # nothing to decompose: most texts, folded at no cost
        return text.lower()
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


def is_negative(text: str, intent: LeadIntent | None = None) -> bool:
    """Whether the lead's latest message says no ("no", "nope", "not yet", "no gracias"...).

    Args:
        text: the latest inbound message.
        intent: the decoded conversation (its ``not_interested`` act counts too).

    Returns:
        True for a refusal or a negative answer.
    """
    if intent is not None and "not_interested" in intent.acts:
        return True
    return bool(_NEGATIVE.match(_fold(text)))


_CHEERFUL_OPENER = re.compile(
    r"^¡?(?:great|awesome|perfect|wonderful|fantastic|excellent|amazing|love it|yay|"
    r"muy bien|genial|perfecto|excelente|qu[eé] bien)"
    r"(?:,\s+[A-Z][a-z]+(?=!))?\s*[!.,]\s*",
    re.IGNORECASE,
)


_ACK_OPENER = re.compile(
    r"^¡?(?:got it|thanks|thank you|great|perfect|okay|ok|entendido|gracias|muy bien|perfecto)\b"
    r"[^.!?]{0,24}[.!?]\s+",
    re.IGNORECASE,
)


def _plain(text: str) -> str:
    return " ".join(_fold(text).split())


def sent_texts(turns: Iterable[Turn]) -> set[str]:
    """The texts already sent in a conversation, folded for comparison."""
    return {_plain(t.body) for t in turns if t.direction == "outbound" and t.body}


FRESH_LINES: Mapping[str, tuple[str, ...]] = {
    "en": (
        "Anything else I can help with in the meantime?",
        "I'm here whenever you have a question.",
        "Just text me whenever you're ready for the next step.",
        "Happy to help with anything else you need.",
    ),
    "es": (
        "¿Le puedo ayudar con algo más mientras tanto?",
        "Aquí estoy para cualquier pregunta.",
        "Escríbame cuando esté listo para el siguiente paso.",
        "Con gusto le ayudo con lo que necesite.",
    ),
}
"""Closing lines per reply language, used when every phrasing of the next question was already sent."""


def compose(
    *,
    answer: str = "",
    ack: str = "",
    body: Sequence[str] = (),
    sent: set[str],
    negative: bool = False,
) -> str:
    """Put a reply together by the rules of the module docstring.

    Args:
        answer: the answer to the lead's own question (goes first).
        ack: the acknowledgement clause (:func:`acknowledgement`).
        body: the rest of the reply in its phrasings, preferred first (e.g. a
            question and its rewordings); the first not sent before is used.
        sent: texts already sent (:func:`sent_texts`).
        negative: the lead just said no: no cheerful opener, no acknowledgement.

    Returns:
        The reply text, never one already sent while another phrasing is left, and
        never with a question (or closing line) that an earlier text already held,
        whatever acknowledgement opened it.
    """

    def tone(text: str) -> str:
        if not negative:
            return text
        calmer = _CHEERFUL_OPENER.sub("", text).strip()
        return calmer[:1].upper() + calmer[1:] if calmer else calmer

    head = [p for p in (answer, "" if negative else ack) if p]
    candidates = [tone(b) for b in body if b]
    if ack and not negative:
        # The acknowledgement already opens the reply: no second "Got it." or "Thanks!".
        candidates = [_ACK_OPENER.sub("", c, count=1) or c for c in candidates]
    for option in [*(candidates or [""]), *FRESH_LINES[reply_language()]]:
        text = " ".join(p for p in (*head, option) if p)
        if not text:
            return ""  # nothing to say (a booking node adds its own text)
        if _plain(text) in sent:
            continue
        if option and any(_plain(option) in earlier for earlier in sent):
            continue  # this question went out already inside another text: reword it, or let it be
        return text
    return " ".join(p for p in (*head, *candidates[:1]) if p)
