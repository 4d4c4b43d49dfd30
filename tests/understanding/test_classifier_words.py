"""The classifier's word-by-word features give the feature strings' probabilities, bit for bit (issue 14)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from ghl_real_estate_ai.understanding import classifier as classifier_module
from ghl_real_estate_ai.understanding.classifier import IntentClassifier, features, load_classifier
from ghl_real_estate_ai.understanding.dataset import load_split


def reference_scores(model: IntentClassifier, text: str) -> dict[str, float]:
    """The probabilities as computed before issue 14: count the feature strings, then numpy."""
    counts = Counter(i for f in features(text) if (i := model.vocabulary.get(f)) is not None)
    logits = model.intercept.copy()
    if counts:
        index = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
        tf = np.fromiter((1.0 + math.log(c) for c in counts.values()), dtype=np.float64, count=len(counts))
        weights = tf * model.idf[index]
        norm = float(np.sqrt(weights @ weights))
        logits += (weights / norm) @ model.coef[index]
    logits -= logits.max()
    exp = np.exp(logits)
    probs = exp / exp.sum()
    return {label: float(p) for label, p in zip(model.labels, probs, strict=True)}


EDGE_CASES = [
    "",
    "?",
    "'''",
    "no no no no stop stop",  # repeated features (tf above 1)
    "I don't want to sell, but we will buy. not interested!!",
    "Vendemos la casa? no, nunca",
    "3bd 2ba 450k 1,200 sqft",
    "😀👍",
    "STOP",
]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_score_as_the_reference(text: str) -> None:
    model = load_classifier()
    assert model.scores(text) == reference_scores(model, text)


def test_every_corpus_message_scores_as_the_reference() -> None:
    model = load_classifier()
    texts = [e.text for split in ("train", "test") for e in load_split(split)]
    for text in texts:
        assert model.scores(text) == reference_scores(model, text), text


def test_the_word_memory_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classifier_module, "_WORD_CACHE_SIZE", 10)
    model = IntentClassifier.load(classifier_module.DEFAULT_MODEL_PATH)
    for n in range(50):
        text = f"word{n}x sell my house{n}y"
        assert model.scores(text) == reference_scores(model, text)
        assert len(model._word_features) <= 10
