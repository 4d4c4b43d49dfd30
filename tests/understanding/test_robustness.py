"""Texting variants keep their label; "stop" in other senses is no opt-out (issue 10, acceptance 3)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ghl_real_estate_ai.bots.intent_decoder import LeadIntent, analyze_lead
from ghl_real_estate_ai.understanding.classifier import load_classifier
from ghl_real_estate_ai.understanding.dataset import load_split
from ghl_real_estate_ai.understanding.normalise import normalise

T0 = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
STOP_OTHER_SENSES = Path(__file__).with_name("data") / "stop_other_senses.txt"

# How people shorten words when texting (the reverse of what the normaliser spells out).
SHORTENED = {
    "you": "u", "are": "r", "please": "pls", "probably": "prolly", "going to": "gonna", "want to": "wanna",
    "before": "b4", "years": "yrs", "thanks": "thx", "text": "txt", "texting": "txting",
    "unsubscribe": "unsub", "because": "bc", "your": "ur", "right now": "rn", "with": "w/",
    "don't": "dont", "i'm": "im",
    "can't": "cant", "messages": "msgs", "looking": "lookin", "trying to": "tryna", "got to": "gotta",
}  # fmt: skip
EMOJI = ["🏡", "🙏", "😊", "👍🏽", "😂", "❤️", "🔑"]


@dataclass
class Msg:
    direction: str
    body: str
    created_at: datetime = T0


def said(body: str) -> LeadIntent:
    return analyze_lead([Msg("inbound", body)])


def drop_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def shorten(text: str) -> str:
    for word, short in SHORTENED.items():
        text = re.sub(rf"\b{re.escape(word)}\b", short, text, flags=re.IGNORECASE)
    return text


def variants(text: str, n: int) -> list[str]:
    emoji = EMOJI[n % len(EMOJI)]
    return [
        text.upper(),
        text.lower(),
        text.title(),
        drop_accents(text),
        shorten(text),
        f"{text} {emoji}",
        f"{shorten(drop_accents(text)).lower()}{emoji}",
    ]


def test_texting_variants_of_every_corpus_utterance_keep_their_label() -> None:
    classifier = load_classifier()
    examples = load_split("train") + load_split("test")
    kept = total = 0
    changed: list[str] = []
    for n, example in enumerate(examples):
        label = classifier.predict(example.text)
        for variant in variants(example.text, n):
            total += 1
            if classifier.predict(variant) == label:
                kept += 1
            else:
                changed.append(variant)
    assert total >= 1_500 * 7
    assert kept / total >= 0.97, changed[:20]


def test_the_corpus_labels_survive_texting_variants() -> None:
    """The variants are read as the corpus labels them, as often as the originals are."""
    classifier = load_classifier()
    examples = load_split("train") + load_split("test")
    original = sum(classifier.predict(e.text) == e.label for e in examples) / len(examples)
    texted = [classifier.predict(v) == e.label for n, e in enumerate(examples) for v in variants(e.text, n)]
    assert sum(texted) / len(texted) >= original - 0.03


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    index=st.integers(min_value=0),
    case=st.sampled_from(["upper", "lower", "title", "keep"]),
    accents=st.booleans(),
    emoji=st.sampled_from(["", *EMOJI]),
    shortened=st.booleans(),
)
def test_case_accents_and_emoji_never_change_the_normalised_text(
    index: int, case: str, accents: bool, emoji: str, shortened: bool
) -> None:
    examples = load_split("train")
    text = examples[index % len(examples)].text
    variant = {"upper": text.upper(), "lower": text.lower(), "title": text.title(), "keep": text}[case]
    if accents:
        variant = drop_accents(variant)
    if shortened:
        variant, text = shorten(variant), shorten(text)
    assert normalise(f"{variant} {emoji}") == normalise(text)


def test_two_hundred_messages_using_stop_in_other_senses_opt_nobody_out() -> None:
    messages = [m for m in STOP_OTHER_SENSES.read_text(encoding="utf-8").splitlines() if m.strip()]
    assert len(messages) >= 200 and len(set(messages)) == len(messages)
    assert all(re.search(r"\b(?:stop\w*|parada|para|paren|dejar|dejo|pasar|pase)\b", m) for m in messages)
    opted_out = [m for m in messages if said(m).opt_out]
    assert opted_out == []


@pytest.mark.parametrize(
    "text",
    ["STOP", "stop", "Stop.", "STOPALL", "UNSUBSCRIBE", "Cancel", "END", "quit", "Stop please", "PARA"],
)
def test_carrier_keywords_opt_out_as_whole_messages(text: str) -> None:
    assert said(text).opt_out


@pytest.mark.parametrize("text", ["START", "unstop", "Start please"])
def test_carrier_keywords_opt_back_in(text: str) -> None:
    intent = analyze_lead([Msg("inbound", "STOP"), Msg("inbound", text)])
    assert not intent.opt_out and intent.opt_in


@pytest.mark.parametrize(
    "text",
    [
        "please stop texting me",
        "ya no me escriba",
        "unsub",
        "unsub pls",
        "lose my number",
        "take me off ur list",
        "dejen de mandarme mensajes",
        "i don't want these texts anymore",
    ],
)
def test_the_classifier_reads_opt_outs_in_plain_words(text: str) -> None:
    assert said(text).opt_out
