"""Every reading the pipeline gives stays exactly what it was (issue 14: a cheaper reading, same result).

The fixture ``data/reading_digests.json`` holds a short digest of each reading of a large set
of messages, made by the code before any speed work (9d56fb8): every message of the labelled corpus
(train and test) read alone and, when it could be an answer (a digit, or a short text), after
each kind of bot question and with each conversation side; the bench's webhook texts; and
every inbound turn of the eval conversations, read one by one and as growing conversations
through ``analyze_lead``. Floats are compared to eight significant digits: a change in the
classifier's arithmetic shows up, the last bits that exp() and log() give on one CPU or another
do not (the digests of 2 December were exact and failed on the next machine).

Regenerate only when a change of behaviour is meant:
``.venv/bin/python -m tests.understanding.test_reading_equivalence --write``
(``--dump PATH`` writes the full readings instead, to diff two versions).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ghl_real_estate_ai.bots.intent_decoder import _bundled_areas, _decode, analyze_lead
from ghl_real_estate_ai.understanding.dataset import load_split
from ghl_real_estate_ai.understanding.reading import read_message, read_message_cached

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).with_name("data") / "reading_digests.json"
EVAL_DIR = ROOT / "ghl_real_estate_ai" / "data" / "eval"
TODAY = date(2026, 3, 3)  # a Tuesday
T0 = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
# (asked, side) pairs an answer-like message is read with besides ("", "").
VARIANTS = (("budget", ""), ("price", ""), ("bedrooms", ""), ("timeline", ""), ("", "buyer"), ("", "seller"))
NAMES = ("Bacu", "Zoxi", "Maria", "Jose")


@dataclass
class Msg:
    direction: str
    body: str
    created_at: datetime


def _plain(value: Any) -> Any:
    """A JSON-able, order-stable form of a reading or an intent (floats by their repr)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        # Eight significant digits: the last bits of exp() and log() differ between CPUs
        # (numpy picks its SIMD code at run time), a change of the arithmetic does not hide there.
        return f"{value:.8g}"
    if isinstance(value, date):
        return value.isoformat()
    return value


def _bench_texts() -> tuple[str, ...]:
    """``TEXTS`` of ``bench/webhook_overhead.py``, read from its source (importing it starts nothing)."""
    tree = ast.parse((ROOT / "bench" / "webhook_overhead.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "TEXTS" for t in node.targets):
            texts: tuple[str, ...] = ast.literal_eval(node.value)
            return texts
    raise AssertionError("bench/webhook_overhead.py has no TEXTS")


def _eval_conversations() -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for path in sorted(EVAL_DIR.glob("*.json")):
        for convo in json.loads(path.read_text(encoding="utf-8"))["conversations"]:
            found.append((f"{path.stem}/{convo['id']}", list(convo["turns"])))
    return found


def cases() -> Iterator[tuple[str, Any]]:
    """(key, plain reading or intent) for every case of the fixture, in a fixed order."""
    areas = _bundled_areas()
    texts: list[str] = [e.text for split in ("train", "test") for e in load_split(split)]
    texts += [f"{t} {name} here." for t in _bench_texts() for name in NAMES]
    texts += [turn for _, turns in _eval_conversations() for turn in turns]
    seen: set[str] = set()
    for text in texts:
        if text in seen:
            continue
        seen.add(text)
        yield f"read|{text}", _plain(read_message(text, today=TODAY, known_areas=areas))
        if any(c.isdigit() for c in text) or len(text) < 25:
            for asked, side in VARIANTS:
                reading = read_message(text, today=TODAY, asked=asked, known_areas=areas, side=side)
                yield f"read|{asked}|{side}|{text}", _plain(reading)
    for key, turns in _eval_conversations():
        for n in range(1, len(turns) + 1):
            msgs = [
                Msg("inbound", body, T0 + timedelta(days=i, minutes=i)) for i, body in enumerate(turns[:n])
            ]
            yield f"analyze|{key}|{n}", _plain(analyze_lead(msgs))
            # The same conversation with a bot question before the last message.
            asked = [*msgs[:-1], Msg("outbound", "What budget range are you thinking?", T0), msgs[-1]]
            yield f"analyze-asked|{key}|{n}", _plain(analyze_lead(asked))


def _digest(plain: Any) -> str:
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:12]


def test_every_reading_is_the_one_the_fixture_holds() -> None:
    read_message_cached.cache_clear()
    _decode.cache_clear()
    expected: dict[str, str] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    got = {_digest(key): _digest(plain) for key, plain in cases()}
    assert len(got) > 3000
    assert got.keys() == expected.keys()
    changed = [key for key in got if got[key] != expected[key]]
    assert not changed, f"{len(changed)} readings changed: diff two --dump files to see which"


@pytest.mark.parametrize("text", ["", "   ", "😀", "1", "STOP", "x" * 5000, "no. no! no? 450k; 3 beds\n\nok"])
def test_cached_reading_equals_a_fresh_one(text: str) -> None:
    areas = _bundled_areas()
    fresh = read_message(text, today=TODAY, asked="budget", known_areas=areas, side="buyer")
    assert read_message_cached(text, TODAY, "budget", areas, "buyer") == fresh


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write"]:
        FIXTURE.write_text(
            json.dumps({_digest(key): _digest(plain) for key, plain in cases()}, indent=0) + "\n",
            encoding="utf-8",
        )
    elif sys.argv[1:2] == ["--dump"]:
        Path(sys.argv[2]).write_text(
            json.dumps(dict(cases()), indent=0, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    else:
        sys.exit("usage: python -m tests.understanding.test_reading_equivalence --write | --dump PATH")
