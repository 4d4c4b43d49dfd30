"""Rules where rules are right: carrier keywords and the small closed vocabularies.

- Carrier-standard keywords, as whole messages only: STOP, STOPALL,
  UNSUBSCRIBE, CANCEL, END, QUIT (and the Spanish PARA, ALTO, CANCELAR, BAJA)
  opt out; START, UNSTOP (and YES to a resubscribe prompt is not assumed) opt
  back in. A keyword inside a sentence ("stop by saturday", "cancel my
  appointment") is left to the classifier.
- Financing kinds, property types, agent status, who the home is for, a buyer
  who must sell first, the topic of a question: each a short phrase table over
  normalised text (:func:`..normalise.normalise`).
"""

# Phrase tables read best one alternative per string.
# ruff: noqa: E501

from __future__ import annotations

import re

from ghl_real_estate_ai.understanding.text import _affirmed, _rx, finditer, search, table_may_match

__all__ = [
    "OPT_IN_KEYWORDS",
    "OPT_OUT_KEYWORDS",
    "agent_status",
    "asks_question",
    "buyer_for",
    "financing",
    "keyword",
    "must_sell_first",
    "property_type",
    "question_topic",
]

OPT_OUT_KEYWORDS: frozenset[str] = frozenset(
    {
        "stop",
        "stopall",
        "stop all",
        "unsubscribe",
        "cancel",
        "end",
        "quit",
        "para",
        "alto",
        "cancelar",
        "baja",
    }
)
"""Whole-message opt-out keywords (carrier standard, plus their Spanish forms)."""
OPT_IN_KEYWORDS: frozenset[str] = frozenset({"start", "unstop", "subscribe", "resume", "opt in", "optin"})
"""Whole-message opt-in keywords."""

_KEYWORD_FIRST_WORDS = tuple(sorted({k.split()[0] for k in OPT_OUT_KEYWORDS | OPT_IN_KEYWORDS}))
_KEYWORD_FILLER = re.compile(r"\b(?:please|por favor|now|ya|thanks|thank you)\b|[^\w\s]")


def keyword(text: str) -> str | None:
    """``"opt_out"``/``"opt_in"`` when the normalised message is nothing but a carrier keyword."""
    if not any(map(text.__contains__, _KEYWORD_FIRST_WORDS)):
        return None  # the filler substitution only removes: no keyword can be left
    bare = " ".join(_KEYWORD_FILLER.sub(" ", text).split())
    if bare in OPT_OUT_KEYWORDS:
        return "opt_out"
    if bare in OPT_IN_KEYWORDS:
        return "opt_in"
    return None


_FINANCING: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("cash", _rx(r"\b(?:all )?cash (?:buyers?|offer|purchase|deal)\b", r"\bpay(?:ing)? (?:all )?cash\b", r"\b(?:in|with|all) cash\b",
                 r"\bcash buyer\b", r"\bde contado\b", r"\ben efectivo\b", r"^cash$", r"\bno (?:loan|mortgage) needed\b", r"\bwe(?:'d| would)? pay cash\b",
                 r"\bbuy(?:s|ing)? (?:\w+ )?(?:with |in |all )?cash\b(?! ?flow)", r"\bcash (?:only|investor|buyers?)\b", r"\bpagar? (?:de contado|en efectivo|cash)\b")),
    ("va", _rx(r"\bva (?:loan|approved|approval|buyer|financing|mortgage)\b", r"\bprestamo va\b", r"\bmy va\b", r"^va\b", r"\busing (?:my |a |the )?va\b", r"\bveteran\b")),
    ("fha", _rx(r"\bfha\b")),
    ("usda", _rx(r"\busda\b")),
    ("conventional", _rx(r"\bconventional\b", r"\bconvencional\b")),
)  # fmt: skip
_PREAPPROVED = re.compile(
    r"\bpre[- ]?(?:approved|qualified)\b|\bpreaprobad[oa]s?\b|\bapproval letter\b|\bcredito aprobado\b"
)


def financing(text: str) -> str | None:
    """The financing kind the message states (the last one named), else "preapproved" if it says so."""
    best: tuple[int, str] | None = None
    for name, pattern in _FINANCING if table_may_match(_FINANCING, text) else ():
        match = _affirmed(pattern, text)
        if match is not None and (best is None or match.start() >= best[0]):
            best = (match.start(), name)
    if best is not None:
        return best[1]
    if _affirmed(_PREAPPROVED, text) and not re.search(r"\bnot (?:yet )?pre|\byet\b|\bneed to get\b", text):
        return "preapproved"
    return None


_PROPERTY_TYPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("multi_unit", _rx(r"\b(?:duplex|triplex|fourplex|four-plex|4-?plex|quadplex|multi[- ]?(?:family|unit)|apartment (?:building|complex))\b",
                       r"\b(?:2|3|4|two|three|four) units\b", r"\bunits on (?:my|the|our) lot\b")),
    ("condo", _rx(r"\bcondos?\b", r"\bcondominium\w*\b", r"\bcondominio\w*\b", r"\bdepartamento\b")),
    ("townhouse", _rx(r"\btown ?(?:house|home)s?\b", r"\browhouse\b")),
    ("mobile", _rx(r"\bmobile ?homes?\b", r"\bmanufactured home\b", r"\btrailer\b", r"\bcasa movil\b")),
    ("land", _rx(r"\b(?:vacant )?land\b", r"\blots? to build\b", r"\bterreno\b", r"\bacreage\b")),
    ("single_family", _rx(r"\bsingle[- ]family\b", r"\bsingle story\b", r"\bdetached\b", r"\branch house\b")),
)  # fmt: skip


def property_type(text: str) -> str | None:
    """The kind of home named last in the message."""
    if not table_may_match(_PROPERTY_TYPES, text):
        return None
    best: tuple[int, str] | None = None
    for name, pattern in _PROPERTY_TYPES:
        for match in finditer(pattern, text):
            if best is None or match.start() >= best[0]:
                best = (match.start(), name)
    return None if best is None else best[1]


_HAS_AGENT = _rx(
    r"\b(?:already )?(?:have|got|has|hired|signed with|working with|work with|using|with) (?:an?|my|our|another|other|someone|a different) ?(?:agent|realtor|broker|agency)\b",
    r"\bmy (?:agent|realtor)\b", r"\bour (?:agent|realtor)\b", r"\bi(?:'m| am) (?:a|an) (?:realtor|agent|licensed agent)\b",
    r"\bya tengo (?:agente|realtor|quien)\b", r"\bya tenemos (?:un |una )?(?:agente|realtor)\b", r"\bmi agente\b",
    r"\bworking w(?:ith)? someone already\b", r"\balready listed\b",
)  # fmt: skip
_NO_AGENT = _rx(
    r"\b(?:don't|do not|dont|no) (?:have )?(?:an |a )?(?:agent|realtor)\b", r"\bnot working with (?:an? )?(?:agent|realtor)\b",
    r"\bno tengo agente\b", r"\bwithout an agent\b",
)  # fmt: skip


def agent_status(text: str) -> str | None:
    """``"no_agent"``/``"has_agent"`` when the message says so."""
    if search(_NO_AGENT, text):
        return "no_agent"
    if _affirmed(_HAS_AGENT, text):
        return "has_agent"
    return None


_BUYER_FOR = (
    ("parents", _rx(r"\bfor (?:my|our) (?:parents|mom and dad|mother and father|elderly parents|retired parents)\b", r"\bpara mis (?:papas|padres)\b", r"\bbuying for (?:my|our) parents\b")),
    ("mother", _rx(r"\bfor (?:my|our) (?:mom|mother)\b", r"\bpara mi (?:mama|madre)\b", r"\bcasita for my mom\b")),
    ("father", _rx(r"\bfor (?:my|our) (?:dad|father)\b", r"\bpara mi (?:papa|padre)\b")),
    ("daughter", _rx(r"\bfor (?:my|our) daughter\b", r"\bpara mi hija\b")),
    ("son", _rx(r"\bfor (?:my|our) son\b", r"\bpara mi hijo\b", r"\bmy son wants to buy\b")),
    ("family", _rx(r"\bfor (?:my|our) (?:family|kids|children)\b", r"\bpara mi familia\b")),
    ("investment", _rx(r"\bas an investment\b", r"\b(?:investment|rental) property\b", r"\bto rent (?:it )?out\b", r"\bhouse hack\b")),
)  # fmt: skip


def buyer_for(text: str) -> str | None:
    """Who the home is for, when the message says it is not (only) for the contact."""
    if not table_may_match(_BUYER_FOR, text):
        return None
    for name, pattern in _BUYER_FOR:
        if _affirmed(pattern, text):
            return name
    return None


_SELL_FIRST = _rx(
    r"\b(?:have|need|got|has) to sell (?:\w+ )?(?:first|before)\b",
    r"\bsell (?:ours|our (?:house|home|place|condo)|mine|my (?:house|home|place|condo)) (?:first|before (?:we|i) (?:can )?buy)\b",
    r"\bsell first\b", r"\bbefore (?:we|i) can buy\b", r"\bcontingent (?:offer|on (?:the )?sale)\b",
    r"\b(?:our|my) (?:house|home) (?:has|needs) to sell (?:first|before)\b", r"\bonce ours sells\b",
    r"\bafford the down payment on the next\b", r"\bvender (?:primero|antes)\b", r"\bpara poder comprar\b",
    r"\bfirst (?:i|we) (?:have|need|got|gotta) to sell\b", r"\bprimero (?:tengo|tenemos|hay|necesito|necesitamos) que vender\b",
    r"\b(?:tengo|tenemos) que vender (?:la mia|la nuestra|mi casa|nuestra casa) (?:primero|antes)\b",
)  # fmt: skip


def must_sell_first(text: str) -> bool:
    """A buyer who says they must sell their home before buying."""
    return _affirmed(_SELL_FIRST, text) is not None


_QUESTION_WORDS = re.compile(
    r"^(?:what|how|when|where|who|why|which|can|could|would|will|is|are|do|does|did|should|any|que|cuanto|cuando|como|donde|quien|puede|hay)\b"
)
_TOPICS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("value", _rx(r"\bworth\b", r"\bvalue\b", r"\bvaluation\b", r"\bcma\b", r"\bappraise", r"\bcuanto vale\b", r"\bsell (?:it |my \w+ |our \w+ )?for\b", r"\bget for\b", r"\bgo for\b", r"\blist (?:it |my \w+ |our \w+ )?(?:for|at)\b")),
    ("fees", _rx(r"\bcommission\b", r"\bfees?\b", r"\bcharge\b", r"\bcost\b", r"\bcobran?\b", r"\bcomision\b", r"\bclosing costs\b", r"\bearnest money\b", r"\bup front\b")),
    ("availability", _rx(r"\bavailable\b", r"\blistings?\b", r"\bfor sale\b", r"\bany (?:homes|houses|condos)\b", r"\bdo you have\b", r"\bshow me\b", r"\bhay casas\b", r"\bwhen can\b", r"\bwhat time\b",
                         r"\bcuando (?:puede|pueden|podemos|podria|podrian)\b", r"\ba que hora\b", r"\bque dia\b", r"\bdisponibles?\b", r"\btienen (?:casas|algo)\b")),
    ("market", _rx(r"\bmarket\b", r"\b(?:going|selling|sell|go) for (?:these days|now|right now|lately)\b",
                   r"\bwhat(?:'s| is| are|s)? (?:a |an |the )?(?:\d+ ?(?:br|bd|bed\w*) |homes? |houses? |condos? )(?:in|around|near) [a-z ]+ (?:going|selling) for\b",
                   r"\bhow much (?:are|do) (?:homes|houses|condos)\b", r"\bcuanto (?:cuestan|valen) las casas\b", r"\bprices? (?:going|dropping|rising)\b", r"\brates?\b", r"\bselling fast\b", r"\bgood time\b", r"\bmercado\b")),
    ("process", _rx(r"\bprocess\b", r"\bhow (?:long|does|do i|do we)\b", r"\bnext step\b", r"\bwhat (?:do|happens)\b", r"\bpaperwork\b", r"\bdocuments?\b", r"\bque necesito\b", r"\bcuanto tiempo\b", r"\bcomo funciona\b", r"\bstart\b")),
)  # fmt: skip


def asks_question(text: str) -> bool:
    """The message asks something: a question mark, or a sentence opening with a question word."""
    if "?" in text or "\u00bf" in text:
        return True
    return any(_QUESTION_WORDS.match(part.strip()) for part in re.split(r"[.!\n]", text) if part.strip())


def question_topic(text: str) -> str | None:
    """What the lead asked about: value, fees, availability, market, process or other; ``None`` if no question."""
    if not asks_question(text):
        return None
    questions = [q for q in re.split(r"(?<=[?.!\n])", text) if "?" in q] or [text]
    for name, pattern in _TOPICS:
        if any(search(pattern, q) for q in questions):
            return name
    return "other"
