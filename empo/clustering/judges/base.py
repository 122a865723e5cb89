"""The one interface every meaning judge implements.

A judge scores *directed* pairs of answers to one question: ``entails(question, pairs)`` returns, for each
``(a, b)``, a score in [0, 1] that answer ``a`` entails answer ``b`` given the question (for a symmetric judge,
that ``a`` and ``b`` mean the same).  ``decide(score)`` turns a score into yes/no with the judge's threshold.
Clustering (:func:`empo.clustering.freeform.cluster_texts`) applies the bidirectional rule on top: two answers share a
cluster only if both directions are "yes".  A judge with ``symmetric = True`` (embedding cosine) gives the same
score both ways, so clustering asks it once per unordered pair.

Judges batch internally (``batch_size`` pairs per forward pass) and run on a configurable ``device``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from empo.errors import ConfigError


class Judge(ABC):
    """Scores that answer a entails answer b, for a batch of (a, b) pairs to one question."""

    name: str = "judge"
    #: score(a, b) == score(b, a) by construction: clustering asks one direction per unordered pair.
    symmetric: bool = False

    def __init__(self, threshold: float = 0.5, batch_size: int = 32, device: str = "cpu"):
        if not 0.0 <= threshold <= 1.0 and not self.symmetric:
            raise ConfigError(f"judge '{self.name}': threshold must be in [0, 1], got {threshold}")
        if batch_size < 1:
            raise ConfigError(f"judge '{self.name}': batch_size must be >= 1, got {batch_size}")
        self.threshold = threshold
        self.batch_size = batch_size
        self.device = device
        #: directed pairs scored so far (every call counts its pairs; for measurements)
        self.pairs_scored = 0

    @abstractmethod
    def _score(self, question: str, pairs: list[tuple[str, str]]) -> list[float]:
        """Scores for one batch of at most ``batch_size`` pairs."""

    def entails(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Score in [0, 1] (cosine in [-1, 1] for the embedding judge) that a entails b, per (a, b) pair."""
        pairs = [(str(a), str(b)) for a, b in pairs]
        out: list[float] = []
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start:start + self.batch_size]
            out.extend(float(s) for s in self._score(question, chunk))
        self.pairs_scored += len(pairs)
        return out

    def decide(self, score: float) -> bool:
        return score >= self.threshold

    def same_meaning(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Bidirectional decision per pair (both directions judged; one call for a symmetric judge)."""
        pairs = list(pairs)
        if self.symmetric:
            return [self.decide(s) for s in self.entails(question, pairs)]
        scores = self.entails(question, pairs + [(b, a) for a, b in pairs])
        n = len(pairs)
        return [self.decide(scores[i]) and self.decide(scores[n + i]) for i in range(n)]


def resolve_device(device: str) -> str:
    """'auto' -> cuda when available, else cpu; anything else is passed to torch unchanged."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
