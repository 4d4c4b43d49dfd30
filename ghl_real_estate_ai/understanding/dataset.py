"""The labelled corpus shipped in the repository.

``corpus/train/<label>.txt`` and ``corpus/test/<label>.txt`` hold one message
per line (English, Spanish, Spanglish, texting style). The test files are the
held-apart split: training never reads them; they only measure the model.
Blank lines and lines starting with ``#`` are ignored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CORPUS_DIR", "Example", "corpus_digest", "load_split"]

CORPUS_DIR = Path(__file__).with_name("corpus")


@dataclass(frozen=True)
class Example:
    """One labelled message."""

    text: str
    label: str


def load_split(split: str, root: Path = CORPUS_DIR) -> list[Example]:
    """Every example of ``split`` ("train" or "test"), label files in name order."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown corpus split {split!r}: use 'train' or 'test'")
    examples: list[Example] = []
    for path in sorted((root / split).glob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                examples.append(Example(line, path.stem))
    return examples


def corpus_digest(examples: list[Example]) -> str:
    """A short hash of the examples (which texts, which labels), for the model's version."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(f"{example.label}\t{example.text}\n".encode())
    return digest.hexdigest()[:10]
