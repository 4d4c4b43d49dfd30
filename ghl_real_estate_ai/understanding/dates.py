"""Dates: how soon the lead means to move, relative to the message's timestamp.

:func:`when` reads the last time phrase of a message and returns the days
until it and the target date, counted from the day the message was sent:

- durations and fixed phrases ("in 3 months", "within 30 days", "asap", "next
  year", "in a couple years");
- what `dateparser` reads, English and Spanish: a month, a month and day, a
  numeric date ("by june", "june 15", "15 de junio", "en diciembre", "12/15");
- what it misses: holidays ("after thanksgiving", "antes de navidad"), seasons
  ("b4 summer", "by fall", "en la primavera"), the end or start of a month or
  of the year ("end of next month", "early june", "a finales de mayo").

A date already past this year means next year's. "before X"/"by X" is X
itself; "after X" is the week after X.
"""

# Pattern tables read best one alternative per string, some longer than a line.
# ruff: noqa: E501

from __future__ import annotations

import calendar
import re
from datetime import date, timedelta

from ghl_real_estate_ai.understanding.text import _NUM, _negated, _number, _rx, finditer, table_may_match

_TIMELINE_FIXED: tuple[tuple[re.Pattern[str], int], ...] = (
    (_rx(r"\basap\b", r"\bas soon as possible\b", r"\bright away\b", r"\bimmediately\b", r"\burgent(?:ly)?\b",
         r"\blo antes posible\b", r"\bcuanto antes\b", r"\blo mas (?:pronto|rapido) posible\b", r"\bya mismo\b",
         r"\bde inmediato\b", r"\burgente\b"), 14),
    (_rx(r"\bthis week\b", r"\besta semana\b"), 7),
    (_rx(r"\bnext week\b", r"\bla proxima semana\b"), 14),
    (_rx(r"\b(?:this|next) month\b", r"\b(?:el )?(?:proximo|siguiente) mes\b", r"\beste mes\b"), 30),
    (_rx(r"\bthis year\b", r"\bend of the year\b", r"\beste ano\b"), 180),
    (_rx(r"\bnext year\b", r"\b(?:el )?(?:proximo|siguiente) ano\b"), 365),
)  # fmt: skip
_TIMELINE_SPAN = re.compile(
    rf"\b(?P<pre>in|within|inside|under|next|the next|in the next|in about|in around|less than|by|over the next|en|dentro de"
    rf"|en (?:los|las) (?:proxim[oa]s|siguientes)|en menos de)"
    rf"\s+(?:about |around |roughly |maybe |unos |unas |como |mas o menos |aproximadamente |cerca de |algo de )?(?P<n>{_NUM})(?:\s*(?:-|to|or)\s*(?P<m>\d+))?\s*"
    r"(?P<unit>days?|weeks?|months?|years?|dias?|semanas?|mes(?:es)?|anos?)\b"
)
_TIMELINE_BARE = re.compile(
    rf"\b(?P<n>\d+|{_NUM})(?:\s*(?:-|to|or)\s*(?P<m>\d+))?\s*(?P<unit>days?|weeks?)\b|"
    rf"\b(?P<n2>\d+|{_NUM})(?:\s*(?:-|to|or)\s*(?P<m2>\d+))?\s*(?P<unit2>months?|years?) (?:from now|out)\b"
)
_UNIT_DAYS = {"day": 1, "dia": 1, "week": 7, "semana": 7, "month": 30, "mes": 30, "year": 365, "ano": 365}


def _timeline(text: str) -> int | None:
    """Days until the last duration or fixed phrase ("in 3 months", "asap") of ``text``."""
    found = _duration(text)
    return None if found is None else found[1]


def _duration(text: str) -> tuple[int, int] | None:
    """(position, days) of the last duration or fixed phrase of ``text``."""
    best: tuple[int, int] | None = None  # (position, days); the last mention wins

    def offer(pos: int, days: int) -> None:
        nonlocal best
        if best is None or pos >= best[0]:
            best = (pos, days)

    for pattern, days in _TIMELINE_FIXED if table_may_match(_TIMELINE_FIXED, text) else ():
        for match in finditer(pattern, text):
            if not _negated(text, match.start()):
                offer(match.start(), days)
    for match in finditer(_TIMELINE_SPAN, text):
        n = _number(match.group("n"))
        upper = _number(match.group("m") or "") or n
        unit = match.group("unit")
        unit = "mes" if unit.startswith("mes") else unit.rstrip("s")
        if upper is not None and not _negated(text, match.start()):
            offer(match.start(), round(upper * _UNIT_DAYS[unit]))
    for match in finditer(_TIMELINE_BARE, text):
        n = _number(match.group("n") or match.group("n2"))
        upper = _number(match.group("m") or match.group("m2") or "") or n
        unit = (match.group("unit") or match.group("unit2")).rstrip("s")
        if upper is not None and not _negated(text, match.start()):
            offer(match.start(), round(upper * _UNIT_DAYS[unit]))
    if best is None:
        return None
    return best[0], max(1, min(best[1], 3650))


_MONTHS = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8,
    "september": 9, "october": 10, "november": 11, "december": 12, "jan": 1, "feb": 2, "mar": 3, "apr": 4,
    "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9, "oct": 10, "nov": 11, "dec": 12, "enero": 1,
    "febrero": 2, "marzo": 3, "abril": 4, "mayo": 5, "junio": 6, "julio": 7, "agosto": 8, "septiembre": 9,
    "setiembre": 9, "octubre": 10, "noviembre": 11, "diciembre": 12,
}  # fmt: skip
_MONTH_NAMES = "|".join(sorted(_MONTHS, key=len, reverse=True))
_BEFORE = r"before|by|until|till|antes de(?:l)?|para|hasta"
_AFTER = r"after|despues de(?:l)?"
# "may" alone is a verb: a month only with a day or after a preposition.
_DATE_FRAGMENT = re.compile(
    rf"\b(?:(?P<pre>in|by|before|after|until|till|around|this|next|en|para|antes de|despues de|hasta|el)\s+)?"
    rf"(?P<frag>(?:\d{{1,2}}(?:st|nd|rd|th)?\s+(?:de\s+|of\s+)?(?:{_MONTH_NAMES})|(?:{_MONTH_NAMES})(?:\s+\d{{1,2}}(?:st|nd|rd|th)?\b)?"
    rf"|\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?))\b"
)
_PART_OF_MONTH = re.compile(
    rf"\b(?P<part>early|mid|late|end of|the end of|beginning of|start of|first of|principios de|mediados de|finales de|fin de|a finales de|a principios de)\s+"
    rf"(?:(?P<month>{_MONTH_NAMES})|(?P<rel>this month|next month|the month|el mes|este mes|el proximo mes|el mes que viene|the year|this year|next year|el ano|este ano))\b"
)
_HOLIDAYS = re.compile(
    rf"\b(?:(?P<pre>{_BEFORE}|{_AFTER}|around|at|for|in|on)\s+)?(?:the\s+)?"
    r"(?P<name>thanksgiving|christmas|xmas|navidad|new year'?s?|ano nuevo|(?:the )?4th of july|fourth of july|july 4th|"
    r"memorial day|labor day|easter|halloween|semana santa|dia de gracias)\b"
)
_SEASONS = {
    "spring": (3, 20), "primavera": (3, 20), "summer": (6, 21), "verano": (6, 21), "fall": (9, 22),
    "autumn": (9, 22), "otono": (9, 22), "winter": (12, 21), "invierno": (12, 21),
    "school year": (8, 15), "the school year": (8, 15),
}  # fmt: skip
_SEASON = re.compile(
    rf"\b(?P<pre>{_BEFORE}|{_AFTER}|in|this|next|in the|el|la|en|en el|en la|end of|the end of|fin de|finales de)\s+"
    r"(?:the\s+|el\s+|la\s+)?(?:(?P<next>next|proximo|proxima)\s+)?(?P<name>spring|summer|fall|autumn|winter|primavera|verano|otono|invierno|school year)\b"
    r"(?!\s+(?:of|de)\s+\d)"
)


def _next_on_or_after(today: date, month: int, day: int) -> date:
    day = min(day, calendar.monthrange(today.year, month)[1])
    candidate = date(today.year, month, day)
    if candidate < today:
        day = min(day, calendar.monthrange(today.year + 1, month)[1])
        candidate = date(today.year + 1, month, day)
    return candidate


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The ``n``-th ``weekday`` (0 = Monday) of the month; ``n = -1`` is the last."""
    days = [
        d
        for d in range(1, calendar.monthrange(year, month)[1] + 1)
        if date(year, month, d).weekday() == weekday
    ]
    return date(year, month, days[n])


def _easter(year: int) -> date:
    # Anonymous Gregorian algorithm.
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    m = (32 + 2 * e + 2 * i - h - k) % 7
    n = (a + 11 * h + 22 * m) // 451
    month, day = divmod(h + m - 7 * n + 114, 31)
    return date(year, month, day + 1)


def _holiday(name: str, year: int) -> date:
    name = name.replace("the ", "")
    if name in ("thanksgiving", "dia de gracias"):
        return _nth_weekday(year, 11, 3, 3)
    if name in ("christmas", "xmas", "navidad"):
        return date(year, 12, 25)
    if name.startswith("new year") or name == "ano nuevo":
        return date(year, 1, 1)
    if "july" in name:
        return date(year, 7, 4)
    if name == "memorial day":
        return _nth_weekday(year, 5, 0, -1)
    if name == "labor day":
        return _nth_weekday(year, 9, 0, 0)
    if name in ("easter", "semana santa"):
        return _easter(year)
    return date(year, 10, 31)  # halloween


def _shift(pre: str | None, target: date) -> date:
    if pre and re.fullmatch(_AFTER, pre):
        return target + timedelta(days=7)
    return target


def _month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def _add_months(today: date, months: int) -> tuple[int, int]:
    index = today.month - 1 + months
    return today.year + index // 12, index % 12 + 1


def _parse_with_dateparser(fragment: str, today: date) -> date | None:
    from datetime import datetime

    import dateparser

    settings = {
        "RELATIVE_BASE": datetime(today.year, today.month, today.day),
        "PREFER_DATES_FROM": "future",
        "PREFER_DAY_OF_MONTH": "first",
        "RETURN_AS_TIMEZONE_AWARE": False,
    }
    parsed = dateparser.parse(fragment, languages=["en", "es"], settings=settings)
    if not isinstance(parsed, datetime):
        return None
    result = parsed.date()
    while result < today:
        result = result.replace(year=result.year + 1)
    return result


def _dated(text: str, today: date) -> list[tuple[int, int, date]]:
    """Every (start, end, target date) the calendar phrases of ``text`` name."""
    found: list[tuple[int, int, date]] = []
    for match in finditer(_HOLIDAYS, text):
        name = match.group("name")
        target = _holiday(name, today.year)
        if target < today:
            target = _holiday(name, today.year + 1)
        found.append((match.start(), match.end(), _shift(match.group("pre"), target)))
    for match in finditer(_SEASON, text):
        month, day = _SEASONS[match.group("name")]
        target = _next_on_or_after(today, month, day)
        pre = match.group("pre")
        if (
            (match.group("next") or pre == "next")
            and target.year == today.year
            and target - today < timedelta(days=60)
        ):
            target = target.replace(year=target.year + 1)
        if pre in ("end of", "the end of", "fin de", "finales de"):
            target += timedelta(days=88)
        found.append((match.start(), match.end(), _shift(pre, target)))
    for match in finditer(_PART_OF_MONTH, text):
        part = match.group("part")
        rel = match.group("rel")
        if rel is not None:
            if "year" in rel or "ano" in rel:
                year = today.year + (1 if "next" in rel else 0)
                target = date(year, 12, 31) if "end" in part or "fin" in part else date(year, 1, 1)
                if target < today:
                    target = date(year + 1, 1, 1) if target.month == 1 else target
                found.append((match.start(), match.end(), target))
                continue
            months = 1 if ("next" in rel or "proximo" in rel or "que viene" in rel) else 0
            year, month = _add_months(today, months)
        else:
            month = _MONTHS[match.group("month")]
            year = _next_on_or_after(today, month, 1).year
            if date(year, month, 1) < today.replace(day=1):
                year += 1
        if part in ("early", "beginning of", "start of", "first of", "principios de", "a principios de"):
            target = date(year, month, 5)
        elif part == "mid" or part == "mediados de":
            target = date(year, month, 15)
        elif part == "late":
            target = date(year, month, 25)
        else:
            target = _month_end(year, month)
        found.append((match.start(), match.end(), max(target, today)))
    for match in finditer(_DATE_FRAGMENT, text):
        frag = match.group("frag")
        pre = match.group("pre")
        if frag in ("may", "mar", "march") and pre is None:
            continue
        if any(start <= match.start() < end for start, end, _ in found):
            continue  # already read as "early june", "end of march"...
        month_alone = _MONTHS.get(frag)
        if month_alone == today.month:
            parsed: date | None = today  # "in march", said in March
        else:
            parsed = _parse_with_dateparser(frag, today)
        if parsed is not None:
            found.append((match.start(), match.end(), _shift(pre, parsed)))
    return found


def when(text: str, today: date) -> tuple[int, date] | None:
    """Days until, and the date of, the last time phrase in folded ``text``; ``None`` if none.

    ``today`` is the day the message was sent.
    """
    best: tuple[int, date] | None = None
    dated = _dated(text, today)
    duration = _duration(text)
    # "end of next month" is one date, not "next month" (30 days) read again inside it.
    if duration is not None and not any(start <= duration[0] < end for start, end, _ in dated):
        best = (duration[0], today + timedelta(days=duration[1]))
    for pos, _, target in dated:
        if best is None or pos >= best[0]:
            best = (pos, target)
    if best is None:
        return None
    target = best[1]
    return max(1, min((target - today).days, 3650)), target


_HEDGE = (
    r"(?:maybe|about|around|like|roughly|probably|prob|idk|i don't know|not sure|i guess|unos|unas|como|"
    r"mas o menos|quizas|tal vez)"
)
_DURATION_ANSWER = re.compile(
    rf"^(?:{_HEDGE}[\s,]+)*(?P<n>{_NUM})(?:\s*(?:-|to|or|a|o)\s*(?P<m>\d+))?\s*"
    r"(?P<unit>days?|weeks?|months?|years?|dias?|semanas?|mes(?:es)?|anos?)\b[\s?.!]*(?:or so|o asi|lol|tops)?[\s?.!]*$"
)


def duration_answer(text: str, today: date) -> tuple[int, date] | None:
    """A message that is nothing but a duration ("maybe 6 months", "2-3 weeks", "unos 6 meses").

    Only the whole message counts: inside a sentence "6 months" could be anything
    ("behind 6 months", "lived here 6 months"); alone, it answers "when?".
    """
    match = _DURATION_ANSWER.match(text.strip())
    if match is None:
        return None
    upper = _number(match.group("m") or "") or _number(match.group("n"))
    if upper is None:
        return None
    unit = match.group("unit")
    unit = "mes" if unit.startswith("mes") else unit.rstrip("s")
    days = max(1, min(round(upper * _UNIT_DAYS[unit]), 3650))
    return days, today + timedelta(days=days)
