"""Train the intent classifier: ``python -m ghl_real_estate_ai.understanding.train``.

Reads the training split of the corpus, fits TF-IDF + logistic regression with
scikit-learn, writes the weights as JSON (``model/intent_model.json`` unless
``--out`` says otherwise), then measures the written artefact, through the
same code the bots use, on the held-apart test split and prints per-label
scores and the macro-F1. It exits non-zero when the macro-F1 is under
``--min-f1`` (0.90). The same corpus gives the same artefact: the solver is
deterministic and nothing is sampled.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ghl_real_estate_ai.understanding.classifier import DEFAULT_MODEL_PATH, LABELS, IntentClassifier, features
from ghl_real_estate_ai.understanding.dataset import CORPUS_DIR, Example, corpus_digest, load_split
from ghl_real_estate_ai.understanding.normalise import fold

__all__ = ["FEATURES_VERSION", "evaluate", "main", "train"]

FEATURES_VERSION = "2"
"""Bump when :func:`..classifier.features` changes, so the version names the change."""

_DECIMALS = 5


def train(examples: Sequence[Example]) -> dict[str, object]:
    """Fit the model on ``examples`` and return the JSON document of the artefact."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    unknown = sorted({e.label for e in examples} - set(LABELS))
    if unknown:
        raise ValueError(f"corpus labels not in classifier.LABELS: {', '.join(unknown)}")
    vectorizer = TfidfVectorizer(analyzer=features, sublinear_tf=True, min_df=1, norm="l2", smooth_idf=True)
    matrix = vectorizer.fit_transform([e.text for e in examples])
    model = LogisticRegression(C=100.0, max_iter=5000)
    model.fit(matrix, [e.label for e in examples])
    vocabulary = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
    labels = [str(label) for label in model.classes_]
    coef = model.coef_.T  # (features, labels)
    return {
        "version": f"intent-lr-f{FEATURES_VERSION}-{corpus_digest(list(examples))}",
        "labels": labels,
        "vocabulary": vocabulary,
        "idf": [round(float(v), _DECIMALS) for v in vectorizer.idf_],
        "coef": [[round(float(v), _DECIMALS) for v in row] for row in coef],
        "intercept": [round(float(v), _DECIMALS) for v in model.intercept_],
    }


def evaluate(
    classifier: IntentClassifier, examples: Sequence[Example]
) -> tuple[float, dict[str, tuple[float, float, float, int]]]:
    """Macro-F1 over the labels, and label -> (precision, recall, F1, support)."""
    predicted = [classifier.predict(e.text) for e in examples]
    per_label: dict[str, tuple[float, float, float, int]] = {}
    for label in sorted({e.label for e in examples}):
        tp = sum(1 for e, p in zip(examples, predicted, strict=True) if p == label and e.label == label)
        fp = sum(1 for e, p in zip(examples, predicted, strict=True) if p == label and e.label != label)
        fn = sum(1 for e, p in zip(examples, predicted, strict=True) if p != label and e.label == label)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = (precision, recall, f1, tp + fn)
    macro = sum(v[2] for v in per_label.values()) / len(per_label)
    return macro, per_label


def main(argv: Sequence[str] | None = None) -> int:
    """Train, write the artefact, print the test-split scores; 1 when under ``--min-f1``."""
    parser = argparse.ArgumentParser(
        prog="python -m ghl_real_estate_ai.understanding.train", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--corpus", type=Path, default=CORPUS_DIR, help="corpus folder (train/ and test/ inside)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_MODEL_PATH, help="where to write the JSON artefact"
    )
    parser.add_argument(
        "--min-f1", type=float, default=0.90, help="fail below this macro-F1 on the test split"
    )
    args = parser.parse_args(argv)

    train_set = load_split("train", args.corpus)
    test_set = load_split("test", args.corpus)
    overlap = {fold(e.text) for e in train_set} & {fold(e.text) for e in test_set}
    if overlap:
        print(f"error: {len(overlap)} test messages are also in the training split", file=sys.stderr)
        return 2
    document = train(train_set)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(document, separators=(",", ":"), ensure_ascii=False) + "\n", encoding="utf-8"
    )
    classifier = IntentClassifier.load(args.out)
    macro, per_label = evaluate(classifier, test_set)
    print(f"trained {classifier.version} on {len(train_set)} messages, {len(classifier.vocabulary)} features")
    print(f"{'label':<16}{'precision':>10}{'recall':>8}{'f1':>7}{'n':>5}")
    for label, (precision, recall, f1, support) in per_label.items():
        print(f"{label:<16}{precision:>10.2f}{recall:>8.2f}{f1:>7.2f}{support:>5}")
    print(f"macro-F1 on the held-apart test split ({len(test_set)} messages): {macro:.3f}")
    print(f"wrote {args.out}")
    if macro < args.min_f1:
        print(f"error: macro-F1 {macro:.3f} is under {args.min_f1:.2f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
