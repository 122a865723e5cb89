"""Semantic entropy of one group's clustering and the EMPO keep/drop rule.

H = -sum_c p(c) log p(c) with p(c) = |c|/G (natural log), 0 <= H <= log G. A group trains only when
delta_low < H < delta_high: H = 0 (unanimous) carries no signal and rewards over-confidence; H near log G
(every answer differs) is noise. Defaults: delta_low = 0 and delta_high = log G, i.e. drop exactly the
unanimous groups and the all-different groups."""

from __future__ import annotations

import math
from collections import Counter

_EPS = 1e-9  # entropies computed from counts; compare with a tolerance so H == log G is excluded reliably


def semantic_entropy(cluster_ids: list[int]) -> float:
    if not cluster_ids:
        raise ValueError("semantic_entropy of an empty group")
    n = len(cluster_ids)
    return -sum((c / n) * math.log(c / n) for c in Counter(cluster_ids).values()) + 0.0


def keep_group(entropy: float, group_size: int, delta_low: float = 0.0, delta_high: float | None = None) -> bool:
    """True when ``delta_low < entropy < delta_high`` (``delta_high=None`` means log(group_size))."""
    high = math.log(group_size) if delta_high is None else delta_high
    return delta_low + _EPS < entropy < high - _EPS
