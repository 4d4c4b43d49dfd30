"""Quantities: money in every texted form, rooms, floor area, monthly rent."""

# Pattern tables read best one alternative per string, some longer than a line.
# ruff: noqa: E501

from __future__ import annotations

import re

from ghl_real_estate_ai.understanding.text import _CLAUSE_BREAK, _NUM, _number, _rx

_MONEY = re.compile(
    r"(?<![\w.,])(?P<approx>~\s*)?(?P<dollar>\$\s*)?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"\s*(?P<suffix>k|m|mm|mil|million|millon|millones|thousand|grand)?(?P<ish>ish|-ish)?\b"
    r"(?!\s*(?:sq|square|sf\b|bed|br\b|bd\b|bath|ba\b|%|percent|days?\b|weeks?\b|months?\b|years?\b|yrs?\b|/\d|"
    r"dias?\b|semanas?\b|mes(?:es)?\b|anos?\b|cuartos\b|recamaras?\b|habitaciones\b|banos?\b|am\b|pm\b|:\d|"
    r"kids?\b|children\b|dogs?\b|cats?\b|units?\b|stor(?:y|ies)\b|cars?\b|miles?\b|minutes?\b|hours?\b|people\b))"
)
_MULTIPLIERS = {"k": 1_000, "thousand": 1_000, "grand": 1_000, "m": 1_000_000, "mm": 1_000_000,
                "mil": 1_000_000, "million": 1_000_000, "millon": 1_000_000, "millones": 1_000_000}  # fmt: skip
# Rent said as such: "rent is 2200", "we pay 1800 a month", "renta de 1500".
_RENT_CUE = _rx(r"rent(?:ing)?", r"renta", r"lease", r"pay(?:ing)?.*(?:a|per|/) ?mo(?:nth)?\b")
_MONEY_CUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("down_payment", _rx(r"\bdown ?payments?(?: of| is| will be)?\b", r"\bput(?:ting)? down\b", r"\benganche\b",
                         r"\bsaved(?: up)?\b")),
    ("income", _rx(r"\b(?:make|makes|making|earn|earns|earning|income|salary|bring home|take home|gross)\b")),
    ("price", _rx(r"\bworth\b", r"\b(?:get|getting)(?: at least| around| about)?\b",
                  r"\bsell (?:it |the house |my house |the home |my home )?for\b", r"\blist (?:it )?(?:for|at)\b",
                  r"\basking\b", r"\bvalued at\b", r"\bappraised (?:at|for)\b", r"\bhoping for\b",
                  r"\bexpect(?:ing)?\b", r"\bwant(?:ing)?(?: at least)?$", r"\bneed(?: at least)?$",
                  r"\bno less than\b", r"\boffers? (?:of|around|near|over|above)\b",
                  r"\besper(?:amos|o|ando)\b", r"\b(?:sacar|pedir|pedimos|pido|valdria)\b", r"\bvender(?:la)? (?:en|por)\b")),
    ("budget", _rx(r"\bbudget(?: is| of)?\b", r"\bafford\b", r"\bspend(?:ing)?\b", r"\bup to\b", r"\bunder\b",
                   r"\bbelow\b", r"\bmax(?:imum)?\b", r"\bno more than\b", r"\bprice range\b", r"\brange\b",
                   r"\b(?:pre[- ]?)?approved(?: for| up to| at)?\b", r"\b(?:pre[- ]?)?qualified(?: for| up to)?\b",
                   r"\bpreaprobad[oa]s?(?: por| para| hasta)?\b", r"\blooking (?:at|in)\b", r"\bpodemos pagar\b", r"\bmaximo\b",
                   r"\bbetween\b", r"\bpresupuesto\b", r"\bhasta\b")),
)  # fmt: skip
_MONTHLY_AFTER = re.compile(r"^\s*(?:(?:a|per|each|every|/)\s*mo(?:nth)?\b|monthly\b|al mes\b)")
_YEARLY_AFTER = re.compile(r"^\s*(?:(?:a|per|each|every|/)\s*(?:year|yr)\b|annually\b|yearly\b|al ano\b)")
# A ceiling said after the amount: "550 max", "600k tops", "450 or less".
_BUDGET_AFTER = re.compile(r"^\s*(?:max(?:imum)?|tops|at most|or less|or under|como maximo|maximo)\b")
# A message that is nothing but a (hedged) amount: "idk like 500?", "maybe 450", "~600".
BARE_AMOUNT = re.compile(
    r"^(?:(?:maybe|about|around|like|roughly|probably|prob|idk|i don't know|i dont know|not sure|i guess|i think|"
    r"somewhere around|unos|unas|como|"
    r"mas o menos)[\s,]+)*[~$]*\s*\d{3,4}(?:ish)?[\s?.!]*$"
)
_DOWN_AFTER = re.compile(r"^\s*(?:down|dn)\b|^\s*(?:for|as|in) (?:the |a )?down\b|^\s*(?:saved|in savings)\b")

_BEDROOMS = re.compile(
    rf"\b(?P<n>{_NUM})\s*(?:-|\s)?\s*(?:bed(?:room)?s?|br|bd|bdrms?|recamaras?|habitaciones|cuartos)\b"
)
_BATHROOMS = re.compile(rf"\b(?P<n>{_NUM})\s*(?:-|\s)?\s*(?:bath(?:room)?s?|ba|banos?)\b")
_SQFT = re.compile(
    r"\b(?P<n>\d{1,3}(?:,\d{3})+|\d{3,5}|\d(?:\.\d)?k)\s*(?:sq\.?\s*(?:ft|feet|foot)\.?|sqft|square\s*(?:feet|foot|ft)|sf)(?!\w)"
)


def _money_category(text: str, match: re.Match[str]) -> str | None:
    before = _CLAUSE_BREAK.split(text[max(0, match.start() - 60) : match.start()])[-1].rstrip()
    before = before.removesuffix("$").rstrip()
    after = text[match.end() : match.end() + 30]
    if _DOWN_AFTER.search(after):
        return "down_payment"
    if _BUDGET_AFTER.search(after):
        return "budget"
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


def _amount(text: str, match: re.Match[str], *, thousands: bool = False) -> tuple[float, bool] | None:
    """Dollars for one ``_MONEY`` match, and whether it is a monthly amount; ``None`` when no money.

    "450k", "$450,000", "1.2m", "~$400k", "600ish" (hundreds of a thousand in a price
    context), "400 mil" (Spanish: thousand), "1.5 mil" (English: million), "2500/mo".
    ``thousands``: the bot just asked for a price or budget, so a bare "500" is $500,000.
    """
    suffix = match.group("suffix") or ""
    raw = match.group("num")
    num = float(raw.replace(",", ""))
    after = text[match.end() : match.end() + 30]
    monthly = bool(_MONTHLY_AFTER.search(after))
    value = num * (1000 if num >= 10 else 1000000) if suffix == "mil" else num * _MULTIPLIERS.get(suffix, 1)
    approximate = bool(match.group("approx") or match.group("ish"))
    has_comma = "," in raw
    if monthly:
        if suffix not in ("", "k") or not 300 <= value <= 50_000:
            return None
        return value, True
    if match.group("dollar") or suffix or (has_comma and value >= 10_000):
        return value, False
    if value >= 50_000 and "." not in raw:
        return value, False  # "450000"
    if 100 <= num < 10_000 and "." not in raw:
        before = _CLAUSE_BREAK.split(text[max(0, match.start() - 60) : match.start()])[-1]
        ceiling = bool(_BUDGET_AFTER.search(after))
        if (
            approximate
            or ceiling
            or thousands
            or any(cue.search(before) for name, cue in _MONEY_CUES if name in ("budget", "price"))
        ):
            # "600ish", "budget is like 600": a house price said in thousands.
            return num * 1_000, False
    return None


def _count(word: str, low: float, high: float) -> float | None:
    value = _number(word)
    if value is None or not low <= value <= high:
        return None
    return value
