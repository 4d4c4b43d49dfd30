"""The corpus, the training command and the shipped classifier (issue 10, acceptance 2)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ghl_real_estate_ai.understanding.classifier import (
    DEFAULT_MODEL_PATH,
    LABELS,
    IntentClassifier,
    load_classifier,
)
from ghl_real_estate_ai.understanding.dataset import corpus_digest, load_split
from ghl_real_estate_ai.understanding.normalise import fold
from ghl_real_estate_ai.understanding.train import FEATURES_VERSION, evaluate, main


def test_the_corpus_is_large_enough_and_covers_every_label() -> None:
    train, test = load_split("train"), load_split("test")
    assert len(train) + len(test) >= 1_500
    per_label = Counter(e.label for e in train)
    assert set(per_label) == set(LABELS) == {e.label for e in test}
    assert min(per_label.values()) >= 40, per_label.most_common()[-3:]


def test_the_test_split_is_held_apart_from_training() -> None:
    train = {fold(e.text) for e in load_split("train")}
    test = [e.text for e in load_split("test") if fold(e.text) in train]
    assert test == []


def test_the_shipped_artefact_was_trained_on_the_current_corpus() -> None:
    classifier = load_classifier()
    assert classifier.version == f"intent-lr-f{FEATURES_VERSION}-{corpus_digest(load_split('train'))}"
    assert set(classifier.labels) == set(LABELS)


def test_the_shipped_classifier_reaches_090_macro_f1_on_the_test_split() -> None:
    macro, per_label = evaluate(load_classifier(), load_split("test"))
    assert macro >= 0.90, per_label


def test_scores_are_probabilities_over_every_label() -> None:
    scores = load_classifier().scores("we wanna sell our fourplex")
    assert set(scores) == set(LABELS)
    assert sum(scores.values()) == pytest.approx(1.0)
    assert max(scores, key=scores.__getitem__) == "sell"
    assert load_classifier().predict("") in LABELS


def test_a_broken_artefact_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    document = json.loads(DEFAULT_MODEL_PATH.read_text(encoding="utf-8"))
    document["idf"] = document["idf"][:-1]
    with pytest.raises(ValueError, match="do not match"):
        IntentClassifier.from_json(document)


def test_the_training_command_is_reproducible_and_prints_macro_f1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.json"
    assert main(["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    line = next(x for x in printed.splitlines() if x.startswith("macro-F1 on the held-apart test split"))
    assert float(line.rsplit(" ", 1)[1]) >= 0.90
    retrained = IntentClassifier.load(out)
    shipped = load_classifier()
    assert retrained.version == shipped.version
    assert retrained.vocabulary == shipped.vocabulary
    for example in load_split("test"):
        assert retrained.predict(example.text) == shipped.predict(example.text)


def test_training_refuses_a_label_the_classifier_does_not_know(tmp_path: Path) -> None:
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "mystery.txt").write_text(f"hello from {split}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="mystery"):
        main(["--corpus", str(tmp_path), "--out", str(tmp_path / "m.json")])
