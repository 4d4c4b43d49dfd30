"""The intent and dialogue-act classifier, as shipped: a linear model in plain JSON.

Training (:mod:`ghl_real_estate_ai.understanding.train`) fits a scikit-learn
logistic regression on TF-IDF features of the labelled corpus and writes its
weights to ``model/intent_model.json``. At run time nothing of scikit-learn is
imported: :class:`IntentClassifier` reads the JSON once (numpy arrays), builds
the same features with :func:`features`, and computes the same probabilities
(softmax of the linear scores). JSON was chosen over pickle/joblib so loading
the artefact can never run code, and it diffs in review.

The features are those of the normalised text (:func:`..normalise.normalise`):
words (digits folded to ``0``), word pairs, the first five letters of longer
words (so "selling" and "sellers", "vender" and "vendemos" share one), word
families ("sell", "death", "law"...) with a separate feature when a negation
("not", "don't", "no", "nunca"...) governs them in the clause, pairs of
families present together, and a mark for a question.
"""

# The word-family table reads best one family per line.
# ruff: noqa: E501

from __future__ import annotations

import functools
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ghl_real_estate_ai.understanding.normalise import normalise

__all__ = [
    "DEFAULT_MODEL_PATH",
    "LABELS",
    "RED_FLAG_LABELS",
    "IntentClassifier",
    "features",
    "load_classifier",
]

DEFAULT_MODEL_PATH = Path(__file__).with_name("model") / "intent_model.json"

LABELS: tuple[str, ...] = (
    "buy",
    "sell",
    "both",
    "value_question",
    "rent",
    "browsing",
    "has_agent",
    "not_interested",
    "wrong_number",
    "opt_out",
    "opt_in",
    "human_request",
    "foreclosure",
    "probate",
    "divorce",
    "bankruptcy",
    "delinquency",
    "legal",
    "lien",
    "answer",
)
"""Every label of the corpus: intents, dialogue acts, red-flag kinds, and ``answer``
(a plain answer, a question or small talk: nothing of the others)."""

RED_FLAG_LABELS: frozenset[str] = frozenset(
    {"foreclosure", "probate", "divorce", "bankruptcy", "delinquency", "legal", "lien"}
)
"""Labels that are situations a human should handle."""

_WORD = re.compile(r"[a-z0-9']+|[.!?;,:]")
_DIGIT = re.compile(r"\d")
_BREAKS = frozenset({".", "!", "?", ";", ",", ":", "but", "pero", "though", "however", "y", "and"})
_NEGATORS = frozenset(
    {
        "not", "no", "never", "don't", "won't", "can't", "didn't", "doesn't", "isn't", "aren't", "wasn't",
        "haven't", "hasn't", "nah", "nope", "nunca", "ni", "without", "stop", "quit", "cancel", "dejen", "deja",
        "dejar", "sin",
    }
)  # fmt: skip

# Word families: a feature per family lets a few examples of one word teach the others.
_CONCEPTS: dict[str, tuple[str, ...]] = {
    "sell": ("sell", "sold", "list", "listing", "listed", "vend", "venta", "market"),
    "buy": ("buy", "purchas", "compr", "shopping", "hunting", "tour", "preapprov", "approv", "own"),
    "rent": ("rent", "lease", "tenant", "landlord", "renta"),
    "text": ("text", "messag", "mensaj", "escrib", "contact", "sms", "list", "number", "numero", "subscrib"),
    "again": ("again", "back", "resum", "otra", "nuevo", "restart", "continu", "sigan", "seguir", "re"),
    "call": ("call", "phone", "llam", "marca", "ring", "telefon", "person", "human", "humano", "robot", "bot"),
    "death": ("passed", "died", "death", "dead", "estate", "heir", "probate", "fallec", "murio",
              "difunt", "herenci", "hered", "executor", "funeral", "inherit", "trust", "sucesion", "intestad"),
    "law": ("attorney", "lawyer", "abogad", "court", "corte", "sue", "suing", "sued", "lawsuit", "demand",
            "litigat", "legal", "judge", "hearing", "served", "dispute"),
    "bank": ("bank", "banco", "lender", "foreclos", "auction", "remat", "subast", "trustee", "default",
             "repossess", "sheriff", "ejecucion"),
    "bankrupt": ("bankrupt", "bancarrot", "quiebra", "chapter", "capitulo", "bk", "ch", "insolvent"),
    "owe": ("behind", "missed", "past", "delinquen", "atrasad", "debo", "debemos", "owe", "arrears",
            "afford", "pagar", "pay"),
    "lien": ("lien", "gravamen", "taxes", "tax", "impuesto", "judgment", "embargo", "irs"),
    "split": ("divorc", "separat", "ex", "split", "custody", "spouse"),
    "agent": ("agent", "realtor", "broker", "agencia", "redfin", "compass", "century", "keller", "represent"),
    "wrong": ("wrong", "equivoc", "who", "quien", "dis", "mistake"),
    "look": ("just", "looking", "browsing", "curious", "curiosidad", "mirando", "viendo", "window", "checking"),
    "worth": ("worth", "value", "valor", "vale", "appraise", "cma", "estimate", "cuanto", "much"),
    "decline": ("thanks", "gracias", "good", "staying", "stay", "happy", "pass", "interest", "interes"),
}  # fmt: skip
_PREFIX_CONCEPTS: tuple[tuple[str, str], ...] = tuple(
    (prefix, concept) for concept, prefixes in _CONCEPTS.items() for prefix in prefixes
)


# The prefixes by their first letter, in table order: a word is only compared with those it could start with.
_PREFIXES_BY_LETTER: dict[str, tuple[tuple[str, str], ...]] = {
    letter: tuple(pc for pc in _PREFIX_CONCEPTS if pc[0][0] == letter)
    for letter in {p[0] for p, _ in _PREFIX_CONCEPTS}
}


@functools.lru_cache(maxsize=8192)
def _concepts(word: str) -> tuple[str, ...]:
    found: list[str] = []
    for prefix, concept in _PREFIXES_BY_LETTER.get(word[:1], ()):
        if word.startswith(prefix) and (len(prefix) >= 4 or word == prefix) and concept not in found:
            found.append(concept)
    return tuple(found)


def features(text: str) -> list[str]:
    """The features of one message (used identically for training and prediction)."""
    norm = normalise(text)
    tokens = [_DIGIT.sub("0", w.strip("'")) for w in _WORD.findall(norm)]
    words: list[str] = []
    out: list[str] = []
    negated = False
    for token in tokens:
        if not token:
            continue
        if token in _BREAKS:
            negated = False
            if token in ".!?;,:":
                continue
        words.append(token)
        mark = "n" if negated else "k"
        out.extend(f"{mark}:{concept}" for concept in _concepts(token))
        if negated:
            out.append(f"n:{token}")
        if token in _NEGATORS:
            negated = True
    present = sorted({f[2:] for f in out if f.startswith("k:")})
    out.extend(f"p:{a}+{b}" for i, a in enumerate(present) for b in present[i + 1 :])
    out.extend(f"w:{w}" for w in words)
    out.extend(f"b:{a} {b}" for a, b in itertools.pairwise(words))
    out.extend(f"s:{w[:5]}" for w in words if len(w) > 5)
    if "?" in norm:
        out.append("q:?")
    if not words:
        out.append("e:empty")
    return out


_WORD_CACHE_SIZE = 50_000
"""Distinct words whose features :class:`IntentClassifier` remembers (all is forgotten past it)."""


@dataclass(frozen=True, slots=True)
class _WordFeatures:
    """What one word of a message gives :func:`features`, as vocabulary indices (``None``: unknown)."""

    token: str
    breaks: bool
    punctuation: bool
    negator: bool
    concepts: tuple[str, ...]
    kept: tuple[int, ...]
    """``k:`` concept features (the word not negated)."""
    negated: tuple[int, ...]
    """``n:`` concept features, then ``n:<word>`` (the word negated)."""
    word: int | None
    stem: int | None


@dataclass(frozen=True)
class IntentClassifier:
    """A trained linear model: TF-IDF features -> softmax over :attr:`labels`."""

    version: str
    labels: tuple[str, ...]
    vocabulary: Mapping[str, int]
    idf: npt.NDArray[np.float64]
    coef: npt.NDArray[np.float64]
    """Shape (features, labels)."""
    intercept: npt.NDArray[np.float64]
    _word_features: dict[str, _WordFeatures] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IntentClassifier:
        """Build from the artefact's JSON document (see :mod:`..train` for its layout)."""
        vocab = list(data["vocabulary"])
        labels = tuple(data["labels"])
        coef = np.asarray(data["coef"], dtype=np.float64)
        idf = np.asarray(data["idf"], dtype=np.float64)
        intercept = np.asarray(data["intercept"], dtype=np.float64)
        if (
            coef.shape != (len(vocab), len(labels))
            or idf.shape != (len(vocab),)
            or intercept.shape != (len(labels),)
        ):
            raise ValueError("intent model: weights do not match the vocabulary and labels")
        return cls(
            version=str(data["version"]),
            labels=labels,
            vocabulary={name: i for i, name in enumerate(vocab)},
            idf=idf,
            coef=coef,
            intercept=intercept,
        )

    @classmethod
    def load(cls, path: Path) -> IntentClassifier:
        """Read a JSON artefact."""
        with path.open(encoding="utf-8") as handle:
            return cls.from_json(json.load(handle))

    def scores(self, text: str) -> dict[str, float]:
        """Label -> probability for one message (they sum to 1)."""
        counts = self._feature_counts(text)
        # The same arithmetic as ``tf * idf``, L2 norm, ``intercept + x @ coef``, softmax, in as few
        # numpy calls as give the same bits: a tf of 1 leaves the idf as it is, a + b is b + a, and
        # a square root is correctly rounded in numpy and in math alike.
        if counts:
            index = np.array(list(counts), dtype=np.intp)
            weights = self.idf[index]
            if len(counts) != sum(counts.values()):
                tf = np.array(
                    [1.0 if c == 1 else 1.0 + math.log(c) for c in counts.values()], dtype=np.float64
                )
                weights = tf * weights
            norm = math.sqrt(float(weights @ weights))
            logits = (weights / norm) @ self.coef[index]
            logits += self.intercept
        else:
            logits = self.intercept.copy()
        logits -= logits.max()
        probs = np.exp(logits, out=logits)
        probs /= probs.sum()
        return dict(zip(self.labels, probs.tolist(), strict=True))

    def _feature_counts(self, text: str) -> dict[int, int]:
        """Vocabulary index -> count of the known :func:`features` of ``text``, in first-seen order.

        The same as counting ``features(text)`` (the order matters: it is the order the
        weights are summed in), without building the strings that only depend on one word:
        those are looked up once per word and remembered.
        """
        counts: dict[int, int] = {}
        norm = normalise(text)
        words: list[str] = []
        infos: list[_WordFeatures] = []
        present: set[str] = set()
        negated = False
        word_features = self._word_features
        for raw in _WORD.findall(norm):
            info = word_features.get(raw)
            if info is None:
                info = self._learn_word(raw)
            token = info.token
            if not token:
                continue
            if info.breaks:
                negated = False
                if info.punctuation:
                    continue
            words.append(token)
            infos.append(info)
            if negated:
                for known in info.negated:
                    counts[known] = counts.get(known, 0) + 1
            else:
                present.update(info.concepts)
                for known in info.kept:
                    counts[known] = counts.get(known, 0) + 1
            if info.negator:
                negated = True
        vocabulary = self.vocabulary
        if len(present) > 1:
            ordered = sorted(present)
            for n, a in enumerate(ordered):
                for b in ordered[n + 1 :]:
                    i = vocabulary.get(f"p:{a}+{b}")
                    if i is not None:
                        counts[i] = counts.get(i, 0) + 1
        for info in infos:
            if info.word is not None:
                counts[info.word] = counts.get(info.word, 0) + 1
        for a, b in itertools.pairwise(words):
            i = vocabulary.get(f"b:{a} {b}")
            if i is not None:
                counts[i] = counts.get(i, 0) + 1
        for info in infos:
            if info.stem is not None:
                counts[info.stem] = counts.get(info.stem, 0) + 1
        if "?" in norm and (i := vocabulary.get("q:?")) is not None:
            counts[i] = counts.get(i, 0) + 1
        if not words and (i := vocabulary.get("e:empty")) is not None:
            counts[i] = counts.get(i, 0) + 1
        return counts

    def _learn_word(self, raw: str) -> _WordFeatures:
        """The features one word of :func:`features` gives, as vocabulary indices (remembered)."""
        token = _DIGIT.sub("0", raw.strip("'"))
        vocabulary = self.vocabulary
        concepts = _concepts(token)

        def known(names: Iterable[str]) -> tuple[int, ...]:
            return tuple(i for name in names if (i := vocabulary.get(name)) is not None)

        info = _WordFeatures(
            token=token,
            breaks=token in _BREAKS,
            punctuation=token in _BREAKS and token in ".!?;,:",
            negator=token in _NEGATORS,
            concepts=concepts,
            kept=known(f"k:{c}" for c in concepts),
            negated=known([*(f"n:{c}" for c in concepts), f"n:{token}"]),
            word=vocabulary.get(f"w:{token}"),
            stem=vocabulary.get(f"s:{token[:5]}") if len(token) > 5 else None,
        )
        if len(self._word_features) >= _WORD_CACHE_SIZE:
            self._word_features.clear()
        self._word_features[raw] = info
        return info

    def predict(self, text: str) -> str:
        """The most probable label."""
        scores = self.scores(text)
        return max(scores, key=scores.__getitem__)


@functools.cache
def load_classifier(path: Path | None = None) -> IntentClassifier:
    """The shipped classifier, read once per process (``path`` overrides the artefact)."""
    return IntentClassifier.load(path or DEFAULT_MODEL_PATH)
