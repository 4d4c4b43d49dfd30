"""Frozen copy of the regex intent decoder as it was before issue 10 (commit 0827c71), kept only so
``bench/understanding.py`` can measure the pipeline side by side with it. Not used by the app.

The intent decoder: what a contact wants, read from what they actually wrote.

:func:`analyze_lead` reads the inbound messages of a conversation, in order,
and returns a :class:`LeadIntent`: buyer and seller confidences (0-1), the
facts the contact gave (:class:`PropertyFacts`: budget, pre-approval, beds,
areas, timeline, motivation, condition, price...), opt-out and human-request
flags, legal/financial red flags, objections, and the names of every signal
found. :func:`decode_lead_intent` does the same inside the
``intent_decoder.analyze_lead`` span::

    intent = await decode_lead_intent(messages, contact_id=contact.contact_id)
    if intent.opt_out: ...
    elif intent.buyer_confidence >= 0.7: ...

Rules, all deterministic:

- Facts: a later message wins over an earlier one (areas accumulate, the most
  recently named last). A bare amount ("450k") is read against the
  question the bot asked just before it, else against the side (buyer or
  seller) the conversation has taken; a bare "3" after a bedrooms question is
  the bedrooms.
- Negation: a phrase preceded, in the same clause, by a negator within four
  words ("not", "don't", "never", "no", "without"...) does not count, so "I'm
  not looking to buy" is no buy signal and "not pre-approved yet" sets
  ``preapproved=False``.
- Confidence: additive evidence weights (:data:`BUYER_WEIGHTS`,
  :data:`SELLER_WEIGHTS`), one per distinct signal, summed and clipped to
  [0, 1]. Negated phrases add nothing.
- Opt-out (English and Spanish): a message or sentence that is nothing but an
  opt-out word ("STOP", "unsubscribe", "cancel", "quit", "end", "para",
  "alto", "cancelar", "baja", with "please"/"por favor" allowed), or a clear
  phrase anywhere ("stop texting me", "no more texts", "remove me from your
  list", "no me escriba"...). A word inside a longer sentence is not enough:
  "cancel my appointment" and "don't stop sending listings" are not opt-outs.
  A later "START"/"UNSTOP" message lifts it.
"""

# Pattern tables read best one alternative per string, some longer than a line.
# ruff: noqa: E501

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from ghl_real_estate_ai.observability.workflow_tracing import async_workflow_span

__all__ = [
    "BUYER_WEIGHTS",
    "SELLER_WEIGHTS",
    "LeadIntent",
    "PropertyFacts",
    "Turn",
    "analyze_lead",
    "decode_lead_intent",
]


class Turn(Protocol):
    """One message of a conversation (``storage.base.Message`` satisfies it)."""

    @property
    def direction(self) -> str:
        """``"inbound"`` (from the contact) or ``"outbound"`` (from us)."""
        ...

    @property
    def body(self) -> str:
        """The message text."""
        ...

    @property
    def created_at(self) -> datetime:
        """When it was sent."""
        ...


@dataclass(frozen=True)
class PropertyFacts:
    """Facts the contact stated; ``None`` when they have not said."""

    budget: int | None = None
    """Dollars the buyer means to spend ("$450k", "450,000", "1.2m")."""
    preapproved: bool | None = None
    """Mortgage pre-approval: True stated, False denied or pending ("not pre-approved yet")."""
    down_payment: int | None = None
    """Dollars available for the down payment."""
    monthly_income: int | None = None
    """Gross monthly income in dollars (an annual figure is divided by 12)."""
    bedrooms: int | None = None
    bathrooms: float | None = None
    sqft: int | None = None
    areas: tuple[str, ...] = ()
    """Cities/neighbourhoods named, the most recently named last."""
    timeline_days: int | None = None
    """How soon they want to move: "asap" 14, "next month" 30, "in 3 months" 90, "next year" 365."""
    motivation: str | None = None
    """relocation, job, downsizing, upsizing, divorce, inheritance, financial, retirement,
    first_home or investment."""
    condition: str | None = None
    """excellent, good, fair or needs_work."""
    price_expectation: int | None = None
    """Dollars the seller hopes to get."""
    property_address: str | None = None
    """A street address the contact gave (PII: never put it in spans or logs)."""
    wants_showing: bool = False
    wants_appointment: bool = False


@dataclass(frozen=True)
class LeadIntent:
    """What the decoder read from a conversation."""

    buyer_confidence: float
    seller_confidence: float
    value_question: bool
    """They asked what their home is worth."""
    opt_out: bool
    human_request: bool
    """They asked for a person ("talk to an agent", "call me", "hablar con una persona")."""
    red_flags: tuple[str, ...]
    """Legal/financial situations a human should handle: foreclosure, probate, attorney..."""
    objections: tuple[str, ...]
    """price_too_high, just_looking, not_ready, has_agent, commission, rates_too_high,
    need_to_think, market_timing, not_interested."""
    facts: PropertyFacts
    signals: tuple[str, ...]
    """Names of every signal found in the conversation, in a stable order."""
    latest_signals: tuple[str, ...] = field(default=())
    """The signals found in the latest inbound message alone."""


BUYER_WEIGHTS: dict[str, float] = {
    "looking_to_buy": 0.35,
    "preapproved": 0.35,
    "budget": 0.25,
    "wants_showing": 0.20,
    "down_payment": 0.15,
    "financing": 0.10,
    "bedrooms": 0.10,
    "buyer_motivation": 0.10,
    "buyer_timeline": 0.10,
    "bathrooms": 0.05,
    "areas": 0.05,
    "monthly_income": 0.05,
}
"""Evidence each buyer signal adds to ``buyer_confidence`` (summed, clipped to 1)."""

SELLER_WEIGHTS: dict[str, float] = {
    "sell_my_house": 0.45,
    "list_my_house": 0.35,
    "value_question": 0.30,
    "price_expectation": 0.20,
    "condition": 0.15,
    "seller_motivation": 0.15,
    "seller_timeline": 0.15,
    "property_address": 0.10,
    "wants_appointment": 0.05,
}
"""Evidence each seller signal adds to ``seller_confidence`` (summed, clipped to 1)."""

_SIGNAL_ORDER = (
    *BUYER_WEIGHTS,
    *SELLER_WEIGHTS,
    "not_preapproved",
    "sqft",
    "timeline",
    "motivation",
    "human_request",
    "opt_out",
    "resume",
    "red_flag",
    "objection",
)

_SELLER_MOTIVES = frozenset({"divorce", "inheritance", "financial", "downsizing", "retirement"})
_BUYER_MOTIVES = frozenset({"first_home", "investment", "upsizing"})

# --- text helpers -------------------------------------------------------------


def _norm(text: str) -> str:
    """Lowercase, straight quotes, no accents, single spaces."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(text.lower().split())


def _rx(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


_NEGATORS = frozenset(
    {
        "not", "no", "dont", "don't", "never", "isn't", "isnt", "aren't", "arent", "haven't", "havent",
        "hasn't", "hasnt", "won't", "wont", "didn't", "didnt", "doesn't", "doesnt", "without", "nor",
        "neither", "nunca", "ni", "wasn't", "wasnt", "weren't", "werent", "ain't", "aint", "cancel",
        "cancelled", "canceled", "cancelar",
    }
)  # fmt: skip
_CLAUSE_BREAK = re.compile(r"[.!?;,:\n]|\bbut\b|\bpero\b|\bhowever\b|\bthough\b")
# These contain a negator but do not negate what follows ("no idea what my home is worth").
_NON_NEGATING = re.compile(r"\bno (?:idea|clue)\b|\bnot sure (?:what|how|if it)\b|\bno matter\b")


def _negated(text: str, start: int, window: int = 4) -> bool:
    head = text[:start]
    breaks = list(_CLAUSE_BREAK.finditer(head))
    if breaks:
        head = head[breaks[-1].end() :]
    head = _NON_NEGATING.sub(" ", head)
    words = re.findall(r"[a-z']+", head)[-window:]
    return any(w in _NEGATORS for w in words)


def _affirmed(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """The last match of ``pattern`` in ``text`` that is not negated."""
    found = None
    for match in pattern.finditer(text):
        if not _negated(text, match.start()):
            found = match
    return found


_NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple": 2, "a couple of": 2,
    "couple": 2, "couple of": 2, "a few": 3, "few": 3, "several": 4, "uno": 1, "una": 1, "dos": 2,
    "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6,
}  # fmt: skip
_NUM = r"\d+(?:\.\d+)?|a couple(?: of)?|couple(?: of)?|a few|few|several|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|uno|una|dos|tres|cuatro|cinco|seis"


def _number(word: str) -> float | None:
    word = word.strip()
    if word in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[word])
    try:
        return float(word.replace(",", ""))
    except ValueError:
        return None


# --- patterns -----------------------------------------------------------------

_HOME = r"(?:home|house|condo|townhouse|townhome|place|property|properties)"
_BUY = _rx(
    r"\b(?:looking|want|wanting|wanna|hoping|ready|planning|trying|going|need|like|interested)\s+(?:to\s+|in\s+)?buy(?:ing)?\b",
    rf"\bbuy(?:ing)?\s+(?:a|an|my|our|the)?\s*(?:first\s+|new\s+|bigger\s+|smaller\s+)?{_HOME}\b",
    r"\bfirst[- ]time (?:home ?)?buyers?\b",
    r"\bhouse[- ]hunting\b|\bhome[- ]shopping\b",
    r"\bin the market (?:for|to buy)\b",
    rf"\blooking (?:for|at) (?:a |an |some )?(?:new |bigger |smaller |(?:\d+|two|three|four|five)[- ]?(?:bed|br|bedroom)\w* )?{_HOME}s?\b",
    r"\b(?:quiero|queremos|busco|buscamos) comprar\b|\bcomprar (?:una|mi|nuestra) casa\b",
)
_SELL = _rx(
    rf"\bsell(?:ing)?\s+(?:my|our|the|this|mom's|dad's|my parents'|my mom's|my dad's)\s+{_HOME}\b",
    r"\b(?:want|wanting|wanna|looking|hoping|planning|ready|need|needs|trying|thinking|like|considering|interested)\s+(?:about\s+|of\s+|in\s+)?(?:to\s+)?sell(?:ing)?\b",
    r"\b(?:quiero|queremos|necesito) vender\b|\bvender (?:mi|nuestra) casa\b",
)
_LIST = _rx(
    rf"\blist(?:ing)?\s+(?:my|our|the|this)\s+{_HOME}\b",
    rf"\b(?:put|putting|get|getting)\s+(?:my|our|the|this|it)\s+(?:{_HOME}\s+)?on the market\b",
    r"\blist (?:it|with you)\b|\blisting (?:agreement|appointment)\b",
)
_VALUE = _rx(
    rf"\bwhat(?:'s|s| is)?\s+(?:my|our|the|this)\s+{_HOME}(?:'s|s| is| would be| could be| be)?\s+(?:really\s+)?worth\b",
    r"\bhow much (?:is|would|could|can|will|might)\s+(?:i|we)\s+(?:get|sell)\b",
    rf"\bhow much (?:is |would |could |can |will )?(?:my|our) {_HOME}\b",
    rf"\b{_HOME} (?:value|valuation)\b|\bvalue of (?:my|our) {_HOME}\b",
    rf"\bwhat (?:could|would|can|will|might) (?:my|our|i|we) (?:{_HOME} )?(?:sell|get|list)(?: it)? for\b",
    r"\bmarket value\b|\bcma\b|\bcomparative market analysis\b|\bcuanto vale (?:mi|nuestra) casa\b",
)
_SHOWING = _rx(
    rf"\b(?:see|tour|view|visit|walk through|check out)\s+(?:the|this|that|a|an|some|these|those|any)?\s*(?:{_HOME}s?|listings?|ones?|homes|houses)\b",
    r"\b(?:see|tour|view) (?:it|them) (?:in person|this|tomorrow|today|on)\b",
    r"\bshowings?\b|\b(?:schedule|book|set up) a (?:tour|viewing|visit)\b|\bopen house\b|\bver la casa\b",
)
_APPOINTMENT = _rx(
    r"\bappointment\b|\bconsultation\b|\bwalk-?through\b|\bcita\b",
    r"\b(?:can|could|let's|lets|want to|like to|happy to|able to|we should) meet\b",
    r"\bmeet (?:up|with you|in person|tomorrow|today|this week|next week)\b",
    r"\bcome (?:by|over|out|see (?:it|the house|my house))\b",
    r"\b(?:schedule|set up|book)\s+(?:a |an )?(?:time|call|visit|meeting|appointment)\b",
)
_HUMAN = _rx(
    r"\b(?:talk|speak|chat)\s+(?:to|with)\s+(?:a |an |the |your |some )?(?:real |actual |live )?(?:person|human|agent|realtor|someone|somebody|people|broker|representative|rep|jorge)\b",
    r"\b(?:real|actual|live) (?:person|human)\b",
    r"\b(?:call|phone|ring) me\b|\bgive me a (?:call|ring)\b",
    r"\b(?:can|could) (?:someone|somebody|you|an agent|a person) (?:call|phone)\b",
    r"\bhablar con (?:una persona|alguien|un agente|una agente|un humano|una persona real)\b",
    r"\bllamame\b|\bpersona real\b",
)
_PREAPPROVAL = re.compile(r"\bpre[- ]?(?:approved|approval|qualified|qualification)\b|\bpreaprobad[oa]s?\b")
_PENDING = frozenset(
    {"get", "getting", "need", "needs", "working", "will", "should", "going", "apply", "applying"}
)
_FINANCING = _rx(
    r"\blender\b|\bloan officer\b|\bfha\b|\bva loan\b|\bconventional loan\b|\bfinancing\b",
    r"\b(?:get|getting|need) a (?:mortgage|loan)\b",
)

_REPLY_STOP_WORDS = frozenset(
    {
        "stop", "stopall", "stop all", "unsubscribe", "cancel", "end", "quit", "opt out", "optout",
        "remove", "remove me", "stop it", "stop texting", "stop messaging", "para", "alto", "cancelar",
        "baja", "detener", "parar", "basta",
    }
)  # fmt: skip
_FILLER = re.compile(r"\b(?:please|pls|plz|por favor|now|thanks|thank you|ok|okay|just)\b")
_RESUME_WORDS = frozenset({"start", "unstop", "resume", "subscribe", "opt in", "optin"})
_OPT_OUT_PHRASES = _rx(
    r"\bstop (?:texting|messaging|contacting|calling|emailing|bothering|spamming)\b",
    r"\bstop (?:sending|getting|receiving) (?:me )?(?:these|this|your|the|any)?\s*(?:texts?|messages?|emails?|sms)\b",
    r"\bstop (?:the |these |your )(?:texts|messages)\b",
    r"\bunsubscribe\b|\bopt (?:me )?out\b|\bremove me from\b|\btake me off\b",
    r"\bdeja(?:r)? de (?:escribirme|enviarme|mandarme|contactarme|llamarme)\b|\bdejen de\b|\bdarme de baja\b",
)
# Already negative in themselves: no negation check.
_OPT_OUT_NEGATIVE = _rx(
    r"\bno more (?:texts|messages|texting|emails|calls|contact|sms)\b",
    r"\b(?:do not|don't|dont|never) (?:text|message|contact|email|sms) (?:me|us)\b",
    r"\bdo not contact\b|\bleave me alone\b|\blose my number\b|\bwrong number\b",
    r"\bno me (?:escriba[sn]?|manden?|envie[sn]?|contacte[sn]?|molest\w+)\b",
    r"\bya no (?:me )?(?:escriba[sn]?|manden?|envie[sn]?)\b",
)

_RED_FLAGS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("foreclosure", _rx(r"\bforeclos\w*", r"\bnotice of default\b", r"\bejecucion hipotecaria\b")),
    ("probate", _rx(r"\bprobate\b", r"\bsucesion testamentaria\b")),
    ("attorney", _rx(r"\battorneys?\b", r"\blawyers?\b", r"\blegal counsel\b", r"\babogad[oa]s?\b")),
    ("bankruptcy", _rx(r"\bbankrupt\w*", r"\bchapter (?:7|11|13)\b", r"\bbancarrota\b", r"\bquiebra\b")),
    ("divorce", _rx(r"\bdivorc\w*")),
    ("lawsuit", _rx(r"\blawsuits?\b", r"\bsu(?:ing|ed)\b", r"\blegal action\b", r"\bdemanda\b")),
    ("tax_lien", _rx(r"\btax liens?\b", r"\bback taxes\b", r"\birs lien\b")),
    ("lien", _rx(r"(?<!tax )\bliens?\b")),
    ("short_sale", _rx(r"\bshort[- ]sale\b")),
    ("eviction", _rx(r"\bevict\w*", r"\bdesalojo\b")),
    ("delinquent_mortgage", _rx(r"\bbehind on (?:my |our |the )?(?:mortgage|house )?payments?\b",
                                r"\bbehind on (?:my |our |the )?mortgage\b",
                                r"\bmissed (?:\w+ )?(?:mortgage )?payments\b")),
)  # fmt: skip

_OBJECTIONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("price_too_high", _rx(r"\btoo (?:expensive|pricey|high|much)\b", r"\boverpriced\b",
                           r"\bcan'?t afford\b", r"\bout of (?:my|our) (?:budget|price range)\b",
                           r"\bmuy caro\b")),
    ("just_looking", _rx(r"\bjust (?:looking|browsing|curious)\b", r"\bonly looking\b",
                         r"\bsolo (?:estoy )?mirando\b")),
    ("not_ready", _rx(r"\bnot (?:yet )?ready\b", r"\bno (?:rush|hurry)\b", r"\bnot in a (?:rush|hurry)\b",
                      r"\bmaybe later\b", r"\bnot (?:right )?now\b", r"\bdown the road\b", r"\bsomeday\b",
                      r"\btodavia no\b")),
    ("has_agent", _rx(r"\b(?:already )?(?:have|got|working with|using) (?:an? |my )?(?:agent|realtor|broker)\b",
                      r"\bmy (?:agent|realtor)\b")),
    ("commission", _rx(r"\bcommissions?\b", r"\b(?:your|the|agent) fees?\b")),
    ("rates_too_high", _rx(r"\b(?:interest )?rates (?:are )?(?:too )?high\b", r"\bwait(?:ing)? for (?:the )?rates\b",
                           r"\brates (?:to )?(?:drop|come down)\b")),
    ("need_to_think", _rx(r"\bneed to think\b", r"\bthink about it\b",
                          r"\b(?:talk|check) (?:to |with )?my (?:wife|husband|spouse|partner|family)\b")),
    ("market_timing", _rx(r"\bwait (?:for|until) the market\b", r"\bmarket (?:to )?(?:crash|drop|cool)\w*\b",
                          r"\bprices (?:will|to|are going to) (?:drop|come down|fall)\b", r"\bbubble\b")),
    ("not_interested", _rx(r"\bnot interested\b", r"\bno (?:me )?interesa\b")),
)  # fmt: skip

_MOTIVES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("divorce", _rx(r"\bdivorc\w*", r"\bseparat(?:ed|ing|ion)\b")),
    ("inheritance", _rx(r"\binherit\w*", r"\bpassed away\b", r"\bmy late\b", r"\bestate sale\b", r"\bherencia\b")),
    ("financial", _rx(r"\bbehind on (?:my |the |our )?(?:mortgage|payments?)\b",
                      r"\bcan'?t afford (?:the |my |our )?(?:mortgage|payments?|house|home)\b",
                      r"\bfinancial (?:hardship|trouble|reasons|problems)\b", r"\bmoney is tight\b",
                      r"\blost (?:my|our) jobs?\b", r"\bmedical bills\b", r"\bdebts?\b")),
    ("relocation", _rx(r"\brelocat\w*", r"\b(?:job|work) transfer\b", r"\btransferr?(?:ed|ing)\b",
                       r"\bmoving (?:out of state|to another state|across the country|for (?:work|my job|a job))\b")),
    ("job", _rx(r"\bnew job\b", r"\bjob offer\b", r"\bgot a job\b", r"\bcloser to work\b", r"\bcommute\b")),
    ("downsizing", _rx(r"\bdownsiz\w*", r"\btoo big\b", r"\bempty nest\w*", r"\bsmaller (?:home|house|place)\b",
                       r"\bkids (?:moved|are) (?:out|gone)\b")),
    ("upsizing", _rx(r"\bupsiz\w*", r"\b(?:need|needs|want|wanting) (?:more|extra) (?:space|room)\b",
                     r"\bbigger (?:home|house|place)\b", r"\bgrowing family\b", r"\bbaby (?:on the way|coming)\b",
                     r"\boutgr[eo]w\w*")),
    ("retirement", _rx(r"\bretir\w*")),
    ("first_home", _rx(r"\bfirst (?:home|house)\b", r"\bfirst[- ]time (?:home ?)?buyers?\b",
                       r"\btired of (?:renting|paying rent)\b", r"\b(?:stop|done) renting\b")),
    ("investment", _rx(r"\binvestment\b", r"\brental (?:property|income)\b", r"\bcash ?flow\b", r"\bflip\b")),
)  # fmt: skip

_CONDITIONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("needs_work", _rx(r"\bneeds? (?:a lot of |lots of |major |serious |a ton of |any )?(?:work|repairs?|fixing|renovation|rehab)\b",
                       r"\bfixer(?:[- ]upper)?\b", r"\bas[- ]is\b", r"\broof (?:leaks?|is leaking)\b",
                       r"\bfoundation (?:issues?|problems?|cracks?)\b", r"\bwater damage\b", r"\bmold\b",
                       r"\bneeds a new (?:roof|kitchen|hvac|ac|foundation)\b", r"\bmal estado\b")),
    ("fair", _rx(r"\bneeds? (?:some|a little|minor|a few|some minor) (?:updates?|updating|tlc|touch[- ]ups|cosmetic work|paint|work|repairs)\b",
                 r"\bfair (?:condition|shape)\b", r"\b(?:ok|okay|decent|average) (?:condition|shape)\b", r"\bdated\b",
                 r"\bcould use (?:some )?(?:updates|updating|work|paint|tlc)\b", r"\bcosmetic\b", r"\btlc\b")),
    ("good", _rx(r"\bgood (?:condition|shape)\b", r"\bwell[- ](?:maintained|kept)\b", r"\bgreat (?:condition|shape)\b",
                 r"\bsolid (?:condition|shape)\b", r"\bupdated\b",
                 r"\bnew (?:roof|paint|carpet|floors|flooring|windows|hvac|ac|kitchen)\b", r"\bbuen estado\b")),
    ("excellent", _rx(r"\bexcellent (?:condition|shape)\b", r"\bperfect (?:condition|shape)\b", r"\bmint\b",
                      r"\bmove[- ]in ready\b", r"\bturn ?key\b", r"\b(?:fully|completely|totally) (?:renovated|remodeled|updated)\b",
                      r"\b(?:brand|like) new\b", r"\bpristine\b", r"\bexcelente estado\b")),
)  # fmt: skip
# "not in good shape" reads as fair; "doesn't need any work" as good.
_NEGATED_CONDITION = {"excellent": "good", "good": "fair", "fair": "good", "needs_work": "good"}

_MONEY = re.compile(
    r"(?<![\w.,])(?P<dollar>\$\s*)?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"\s*(?P<suffix>k|m|mm|mil|million|millon|thousand|grand)?\b"
    r"(?!\s*(?:sq|square|sf\b|bed|br\b|bd\b|bath|ba\b|%|percent|days?\b|weeks?\b|months?\b|years?\b|yrs?\b|/\d))"
)
_MULTIPLIERS = {"k": 1_000, "thousand": 1_000, "grand": 1_000, "m": 1_000_000, "mm": 1_000_000,
                "mil": 1_000_000, "million": 1_000_000, "millon": 1_000_000}  # fmt: skip
_MONEY_CUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("down_payment", _rx(r"\bdown ?payments?(?: of| is| will be)?\b", r"\bput(?:ting)? down\b", r"\benganche\b",
                         r"\bsaved(?: up)?\b")),
    ("income", _rx(r"\b(?:make|makes|making|earn|earns|earning|income|salary|bring home|take home|gross)\b")),
    ("price", _rx(r"\bworth\b", r"\b(?:get|getting)(?: at least| around| about)?\b",
                  r"\bsell (?:it |the house |my house |the home |my home )?for\b", r"\blist (?:it )?(?:for|at)\b",
                  r"\basking\b", r"\bvalued at\b", r"\bappraised (?:at|for)\b", r"\bhoping for\b",
                  r"\bexpect(?:ing)?\b", r"\bwant(?:ing)?(?: at least)?$", r"\bneed(?: at least)?$",
                  r"\bno less than\b", r"\boffers? (?:of|around|near|over|above)\b")),
    ("budget", _rx(r"\bbudget(?: is| of)?\b", r"\bafford\b", r"\bspend(?:ing)?\b", r"\bup to\b", r"\bunder\b",
                   r"\bbelow\b", r"\bmax(?:imum)?\b", r"\bno more than\b", r"\bprice range\b", r"\brange\b",
                   r"\b(?:pre-?)?approved (?:for|up to)\b", r"\bqualified (?:for|up to)\b", r"\blooking (?:at|in)\b",
                   r"\bbetween\b", r"\bpresupuesto\b", r"\bhasta\b")),
)  # fmt: skip
_MONTHLY_AFTER = re.compile(r"^\s*(?:(?:a|per|each|every|/)\s*mo(?:nth)?\b|monthly\b|al mes\b)")
_YEARLY_AFTER = re.compile(r"^\s*(?:(?:a|per|each|every|/)\s*(?:year|yr)\b|annually\b|yearly\b|al ano\b)")
_DOWN_AFTER = re.compile(r"^\s*(?:down|dn)\b|^\s*(?:for|as|in) (?:the |a )?down\b|^\s*(?:saved|in savings)\b")

_BEDROOMS = re.compile(
    rf"\b(?P<n>{_NUM})\s*(?:-|\s)?\s*(?:bed(?:room)?s?|br|bd|bdrms?|recamaras?|habitaciones|cuartos)\b"
)
_BATHROOMS = re.compile(rf"\b(?P<n>{_NUM})\s*(?:-|\s)?\s*(?:bath(?:room)?s?|ba|banos?)\b")
_SQFT = re.compile(
    r"\b(?P<n>\d{1,3}(?:,\d{3})+|\d{3,5}|\d(?:\.\d)?k)\s*(?:sq\.?\s*(?:ft|feet|foot)\.?|sqft|square\s*(?:feet|foot|ft)|sf)(?!\w)"
)

_TIMELINE_FIXED: tuple[tuple[re.Pattern[str], int], ...] = (
    (_rx(r"\basap\b", r"\bas soon as possible\b", r"\bright away\b", r"\bimmediately\b", r"\burgent(?:ly)?\b",
         r"\blo antes posible\b", r"\bcuanto antes\b"), 14),
    (_rx(r"\bthis week\b", r"\besta semana\b"), 7),
    (_rx(r"\bnext week\b", r"\bla proxima semana\b"), 14),
    (_rx(r"\b(?:this|next) month\b", r"\b(?:el )?(?:proximo|siguiente) mes\b", r"\beste mes\b"), 30),
    (_rx(r"\bthis year\b", r"\bend of the year\b", r"\beste ano\b"), 180),
    (_rx(r"\bnext year\b", r"\b(?:el )?(?:proximo|siguiente) ano\b"), 365),
)  # fmt: skip
_TIMELINE_SPAN = re.compile(
    rf"\b(?P<pre>in|within|inside|under|next|the next|in the next|in about|in around|less than|by|over the next|en|dentro de)"
    rf"\s+(?:about |around |roughly |maybe )?(?P<n>{_NUM})(?:\s*(?:-|to|or)\s*(?P<m>\d+))?\s*"
    r"(?P<unit>days?|weeks?|months?|years?|dias?|semanas?|mes(?:es)?|anos?)\b"
)
_TIMELINE_BARE = re.compile(
    rf"\b(?P<n>\d+|{_NUM})(?:\s*(?:-|to|or)\s*(?P<m>\d+))?\s*(?P<unit>days?|weeks?)\b|"
    rf"\b(?P<n2>\d+|{_NUM})(?:\s*(?:-|to|or)\s*(?P<m2>\d+))?\s*(?P<unit2>months?|years?) (?:from now|out)\b"
)
_UNIT_DAYS = {"day": 1, "dia": 1, "week": 7, "semana": 7, "month": 30, "mes": 30, "year": 365, "ano": 365}

_ADDRESS = re.compile(
    r"\b\d{1,6}\s+(?:[NSEW]\.?\s+)?(?:(?:\d+(?:st|nd|rd|th)|[A-Za-z][A-Za-z'.-]*)\s+){0,3}?"
    r"(?:(?i:St|Street|Ave|Avenue|Rd|Road|Dr|Blvd|Boulevard|Ln|Ct|Pkwy|Parkway|Cir|Hwy|Highway)"
    r"|Way|Place|Pl|Court|Circle|Drive|Lane|Trail|Terrace|Loop|Square)\b\.?"
)
_AREA_AFTER_PREPOSITION = re.compile(r"\b(?:in|near|around|by)\s+((?:[A-Z][a-z]+)(?:\s+[A-Z][a-z]+){0,2})")
_NOT_AREAS = frozenset(
    {
        "i", "the", "a", "my", "our", "your", "this", "that", "it", "person", "spanish", "english", "cash",
        "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
        "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
        "sunday", "spring", "summer", "fall", "autumn", "winter", "escrow", "mind", "general",
    }
)  # fmt: skip

# What the bot's previous question was about, to read a bare answer ("450k", "3").
_ASKED_BUDGET = re.compile(r"\bbudget\b|\bprice range\b|\bafford\b|\bspend\b|\bpresupuesto\b")
_ASKED_PRICE = re.compile(
    r"\bhoping to get\b|\bprice in mind\b|\bworth\b|\bsell (?:it |the home )?for\b|\blist"
)
_ASKED_BEDROOMS = re.compile(r"\bbedrooms?\b|\bbeds\b")
_BARE_NUMBER = re.compile(rf"^(?:about |around |at least |maybe )?(?P<n>{_NUM})\s*(?:\+|or more)?[.!]?$")


# --- per-message extraction ----------------------------------------------------


@dataclass
class _Found:
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
    human_request: bool = False
    opt_out: bool = False
    resume: bool = False
    red_flags: list[str] = field(default_factory=list)
    objections: list[str] = field(default_factory=list)

    def add(self, signal: str) -> None:
        if signal not in self.signals:
            self.signals.append(signal)


def _strip_filler(text: str) -> str:
    text = _FILLER.sub(" ", text)
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def _is_opt_out(text: str) -> bool:
    if _strip_filler(text) in _REPLY_STOP_WORDS:
        return True
    for sentence in re.split(r"[.!?;\n,]+", text):
        if sentence.strip() and _strip_filler(sentence) in _REPLY_STOP_WORDS:
            return True
    if _OPT_OUT_NEGATIVE.search(text):
        return True
    return _affirmed(_OPT_OUT_PHRASES, text) is not None


def _sentence_is_question(text: str, pos: int) -> bool:
    rest = text[pos:]
    end = re.search(r"[.!?\n]", rest)
    return end is not None and end.group() == "?"


def _preapproval(text: str) -> bool | None:
    result: bool | None = None
    for match in _PREAPPROVAL.finditer(text):
        if _sentence_is_question(text, match.end()):
            continue
        head_words = re.findall(r"[a-z']+", _CLAUSE_BREAK.split(text[: match.start()])[-1])[-3:]
        tail = text[match.end() : match.end() + 12]
        if _negated(text, match.start()) or any(w in _PENDING for w in head_words) or " yet" in tail:
            result = False
        else:
            result = True
    return result


def _money_category(text: str, match: re.Match[str]) -> str | None:
    before = _CLAUSE_BREAK.split(text[max(0, match.start() - 60) : match.start()])[-1].rstrip()
    before = before.removesuffix("$").rstrip()
    after = text[match.end() : match.end() + 30]
    if _DOWN_AFTER.search(after):
        return "down_payment"
    best: tuple[int, str] | None = None
    for category, cue in _MONEY_CUES:
        for found in cue.finditer(before):
            distance = len(before) - found.end()
            if best is None or distance < best[0]:
                best = (distance, category)
    if best is not None:
        return best[1]
    if _MONTHLY_AFTER.search(after) or _YEARLY_AFTER.search(after):
        return None  # a rent or a payment, not a price
    return "unknown"


def _money(text: str, found: _Found, asked: str, side: str) -> None:
    for match in _MONEY.finditer(text):
        suffix = match.group("suffix")
        num = float(match.group("num").replace(",", ""))
        value = num * _MULTIPLIERS.get(suffix or "", 1)
        has_comma = "," in match.group("num")
        if not (match.group("dollar") or suffix or (has_comma and value >= 10_000)):
            continue
        if value < 1_000 or value > 100_000_000:
            continue
        category = _money_category(text, match)
        after = text[match.end() : match.end() + 30]
        amount = round(value)
        if category == "income":
            monthly = bool(_MONTHLY_AFTER.search(after))
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
            # No cue in the sentence: this message's side, the question we asked, then the
            # side the conversation has taken so far decide.
            buy_here = "looking_to_buy" in found.signals
            sell_here = bool({"sell_my_house", "list_my_house", "value_question"} & set(found.signals))
            if buy_here or (not sell_here and (asked == "budget" or (not asked and side == "buyer"))):
                found.budget = amount
                found.add("budget")
            elif sell_here or asked == "price" or (not asked and side == "seller"):
                found.price_expectation = amount
                found.add("price_expectation")


def _timeline(text: str) -> int | None:
    best: tuple[int, int] | None = None  # (position, days); the last mention wins

    def offer(pos: int, days: int) -> None:
        nonlocal best
        if best is None or pos >= best[0]:
            best = (pos, days)

    for pattern, days in _TIMELINE_FIXED:
        for match in pattern.finditer(text):
            if not _negated(text, match.start()):
                offer(match.start(), days)
    for match in _TIMELINE_SPAN.finditer(text):
        n = _number(match.group("n"))
        upper = _number(match.group("m") or "") or n
        unit = match.group("unit").rstrip("s")
        unit = "mes" if unit.startswith("mes") else unit
        if upper is not None and not _negated(text, match.start()):
            offer(match.start(), round(upper * _UNIT_DAYS[unit]))
    for match in _TIMELINE_BARE.finditer(text):
        n = _number(match.group("n") or match.group("n2"))
        upper = _number(match.group("m") or match.group("m2") or "") or n
        unit = (match.group("unit") or match.group("unit2")).rstrip("s")
        if upper is not None and not _negated(text, match.start()):
            offer(match.start(), round(upper * _UNIT_DAYS[unit]))
    if best is None:
        return None
    return max(1, min(best[1], 3650))


def _latest_category(text: str, table: tuple[tuple[str, re.Pattern[str]], ...]) -> tuple[str, bool] | None:
    """The category whose match ends last (longest on ties), and whether it is negated."""
    best: tuple[int, int, str, bool] | None = None
    for name, pattern in table:
        for match in pattern.finditer(text):
            key = (match.end(), match.end() - match.start())
            if best is None or key > best[:2]:
                best = (*key, name, _negated(text, match.start()))
    return None if best is None else (best[2], best[3])


def _areas(raw: str, text: str, known: Sequence[str]) -> list[str]:
    hits: list[tuple[int, str]] = []
    for area in known:
        for match in re.finditer(rf"\b{re.escape(_norm(area))}\b", text):
            hits.append((match.start(), area))
    known_folded = {_norm(a) for a in known}
    for match in _AREA_AFTER_PREPOSITION.finditer(raw):
        name = match.group(1)
        words = name.split()
        while words and words[-1].lower() in _NOT_AREAS:
            words.pop()
        if not words or words[0].lower() in _NOT_AREAS:
            continue
        name = " ".join(words)
        if _norm(name) not in known_folded:
            # Positions in the raw text differ slightly from the normalised text; order is what matters.
            hits.append((match.start(1), name))
    hits.sort()
    ordered: list[str] = []
    for _, name in hits:
        if name in ordered:
            ordered.remove(name)
        ordered.append(name)
    return ordered


def _count(word: str, low: float, high: float) -> float | None:
    value = _number(word)
    if value is None or not low <= value <= high:
        return None
    return value


def _extract(raw: str, asked: str, known_areas: Sequence[str], side: str = "") -> _Found:
    text = _norm(raw)
    found = _Found()
    if _affirmed(_BUY, text):
        found.add("looking_to_buy")
    if _affirmed(_SELL, text):
        found.add("sell_my_house")
    if _affirmed(_LIST, text):
        found.add("list_my_house")
    if _affirmed(_VALUE, text):
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

    for match in _BEDROOMS.finditer(text):
        beds = _count(match.group("n"), 0, 12)
        if beds is not None and not _negated(text, match.start()):
            found.bedrooms = int(beds)
    for match in _BATHROOMS.finditer(text):
        baths = _count(match.group("n"), 1, 12)
        if baths is not None:
            found.bathrooms = baths
    for match in _SQFT.finditer(text):
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

    found.areas = _areas(raw, text, known_areas)
    if found.areas:
        found.add("areas")

    found.timeline_days = _timeline(text)
    if found.timeline_days is not None:
        found.add("timeline")

    motive = _latest_category(text, _MOTIVES)
    if motive is not None and not motive[1]:
        found.motivation = motive[0]
        found.add("motivation")
        if motive[0] in _SELLER_MOTIVES:
            found.add("seller_motivation")
        elif motive[0] in _BUYER_MOTIVES:
            found.add("buyer_motivation")

    condition = _latest_category(text, _CONDITIONS)
    if condition is not None:
        name, negated = condition
        found.condition = _NEGATED_CONDITION[name] if negated else name
        found.add("condition")

    address = _ADDRESS.search(raw)
    if address is not None:
        found.property_address = " ".join(address.group().rstrip(".").split())
        found.add("property_address")

    for name, pattern in _RED_FLAGS:
        if _affirmed(pattern, text) and name not in found.red_flags:
            found.red_flags.append(name)
    if found.red_flags:
        found.add("red_flag")
    for name, pattern in _OBJECTIONS:
        if pattern.search(text) and name not in found.objections:
            found.objections.append(name)
    if found.objections:
        found.add("objection")

    found.opt_out = _is_opt_out(text)
    found.resume = _strip_filler(text) in _RESUME_WORDS
    if found.opt_out:
        found.add("opt_out")
    elif found.resume:
        found.add("resume")
    return found


def _asked(outbound: str) -> str:
    text = _norm(outbound)
    last_question = text.rsplit(".", 1)[-1] if "?" not in text else text[: text.rfind("?")].rsplit(".", 1)[-1]
    if _ASKED_BEDROOMS.search(last_question):
        return "bedrooms"
    if _ASKED_BUDGET.search(last_question):
        return "budget"
    if _ASKED_PRICE.search(last_question):
        return "price"
    return ""


def _side(signals: Sequence[str]) -> str:
    """``buyer`` or ``seller`` when the conversation so far leans one way only."""
    buying = "looking_to_buy" in signals
    selling = bool({"sell_my_house", "list_my_house", "value_question"} & set(signals))
    if buying == selling:
        return ""
    return "buyer" if buying else "seller"


@functools.cache
def _bundled_areas() -> tuple[str, ...]:
    # Imported here so the decoder does not read the CSV until it first needs the areas.
    from ghl_real_estate_ai.bots.cma import CompsSource

    return CompsSource.from_csv(None).areas()


def _ordered(signals: Iterable[str]) -> tuple[str, ...]:
    present = set(signals)
    return tuple(name for name in _SIGNAL_ORDER if name in present)


def analyze_lead(turns: Sequence[Turn], *, known_areas: Sequence[str] | None = None) -> LeadIntent:
    """Read a conversation and decide what the contact wants.

    Args:
        turns: the conversation in the order it happened; only inbound messages
            are read, the outbound one just before each is used to read bare answers.
        known_areas: area names to recognise (the comps data's areas); ``None``
            uses the areas of the bundled sample comps.

    Returns:
        The intent; an empty or outbound-only conversation gives zero confidences
        and no facts.
    """
    areas_known = tuple(known_areas) if known_areas is not None else _bundled_areas()
    facts: dict[str, object] = {}
    area_list: list[str] = []
    signals: list[str] = []
    latest: list[str] = []
    red_flags: list[str] = []
    objections: list[str] = []
    wants_showing = wants_appointment = value_question = human_request = opt_out = False
    asked = ""
    for turn in turns:
        if turn.direction != "inbound":
            asked = _asked(turn.body or "")
            continue
        found = _extract(turn.body or "", asked, areas_known, _side(signals))
        asked = ""
        latest = found.signals
        signals.extend(found.signals)
        for name in (
            "budget", "preapproved", "down_payment", "monthly_income", "bedrooms", "bathrooms", "sqft",
            "timeline_days", "motivation", "condition", "price_expectation", "property_address",
        ):  # fmt: skip
            value = getattr(found, name)
            if value is not None:
                facts[name] = value
        for area in found.areas:
            if area in area_list:
                area_list.remove(area)
            area_list.append(area)
        wants_showing |= found.wants_showing
        wants_appointment |= found.wants_appointment
        value_question |= found.value_question
        human_request |= found.human_request
        if found.opt_out:
            opt_out = True
        elif found.resume:
            opt_out = False
        red_flags.extend(f for f in found.red_flags if f not in red_flags)
        objections.extend(o for o in found.objections if o not in objections)

    # The latest pre-approval answer decides which of the two signals stands.
    present = set(signals)
    if facts.get("preapproved") is True:
        present.discard("not_preapproved")
    elif facts.get("preapproved") is False:
        present.discard("preapproved")
    if not opt_out:
        present.discard("opt_out")
    # A timeline or a motive that fits either side ("relocating", "within 30 days") counts for
    # the side the contact has declared: "sell our house within 30 days" is a seller ready to move.
    side = _side(tuple(present))
    if side and "timeline" in present:
        present.add(f"{side}_timeline")
    if side and "motivation" in present:
        present.add(f"{side}_motivation")

    property_facts = PropertyFacts(
        areas=tuple(area_list),
        wants_showing=wants_showing,
        wants_appointment=wants_appointment,
        **facts,  # type: ignore[arg-type]
    )
    buyer = min(1.0, sum((w for name, w in BUYER_WEIGHTS.items() if name in present), 0.0))
    seller = min(1.0, sum((w for name, w in SELLER_WEIGHTS.items() if name in present), 0.0))
    return LeadIntent(
        buyer_confidence=round(buyer, 4),
        seller_confidence=round(seller, 4),
        value_question=value_question,
        opt_out=opt_out,
        human_request=human_request,
        red_flags=tuple(red_flags),
        objections=tuple(objections),
        facts=property_facts,
        signals=_ordered(present),
        latest_signals=_ordered(latest),
    )


async def decode_lead_intent(
    turns: Sequence[Turn],
    *,
    contact_id: str | None = None,
    known_areas: Sequence[str] | None = None,
) -> LeadIntent:
    """:func:`analyze_lead` inside the ``intent_decoder.analyze_lead`` span.

    The span gets the two confidences and the number of signals as attributes,
    never message text.

    Args:
        turns: the conversation, in order.
        contact_id: recorded as ``workflow.contact_id``.
        known_areas: as for :func:`analyze_lead`.

    Returns:
        The intent.
    """
    async with async_workflow_span("intent_decoder", "analyze_lead", contact_id=contact_id) as span:
        intent = analyze_lead(turns, known_areas=known_areas)
        span.set_attribute("intent.buyer_confidence", intent.buyer_confidence)
        span.set_attribute("intent.seller_confidence", intent.seller_confidence)
        span.set_attribute("intent.signal_count", len(intent.signals))
        return intent
