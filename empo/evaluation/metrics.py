"""Evaluation metrics over n samples per problem: unbiased pass@k, maj@k, and bootstrap confidence intervals.

* pass@k -- Chen et al. (2021): the chance that at least one of k samples drawn without replacement from the
  n is correct, 1 - C(n-c, k) / C(n, k); exactly 1 when fewer than k samples are wrong.
* avg@n -- the mean correctness of the n samples (pass@1 averaged over n samples).
* maj@k -- the expected correctness of a majority vote over k samples drawn without replacement from the n.
  Votes are the answer clusters of the training equivalence (:func:`empo.clustering.groups.analyse_group`); a sample
  without an answer abstains; a subset where every sample abstains scores 0; a tie between clusters is
  split evenly (the expected score of a random tie-break); a cluster's correctness is the share of its
  members graded correct (they agree unless a benchmark rule is looser than the equivalence).
  Computed exactly over all subsets when there are at most ``MAJ_EXACT_LIMIT`` of them, else averaged over
  ``MAJ_MONTE_CARLO`` seeded random subsets.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter

import numpy as np

MAJ_EXACT_LIMIT = 5000
MAJ_MONTE_CARLO = 2000


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (1 <= k <= n)."""
    if not 1 <= k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # 1 - prod_{i=n-c+1}^{n} (1 - k/i): the ratio of binomials without huge integers.
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def _vote(labels: list[int | None], subset: tuple[int, ...], credit: dict[int, float]) -> float:
    counts = Counter(labels[i] for i in subset if labels[i] is not None)
    if not counts:
        return 0.0
    top = max(counts.values())
    winners = [c for c, m in counts.items() if m == top]
    return sum(credit[c] for c in winners) / len(winners)


def maj_at_k(labels: list[int | None], correct: list[bool], k: int, seed: int = 0) -> float:
    """Expected majority-vote correctness over k of the n samples (``labels[i]``: sample i's cluster, None
    when it has no answer; ``correct[i]``: whether sample i was graded correct)."""
    n = len(labels)
    if not 1 <= k <= n or len(correct) != n:
        raise ValueError(f"maj@k needs 1 <= k <= n={n} labels and n correctness flags, got k={k}, {len(correct)}")
    members: dict[int, list[bool]] = {}
    for lab, ok in zip(labels, correct):
        if lab is not None:
            members.setdefault(lab, []).append(bool(ok))
    credit = {lab: sum(oks) / len(oks) for lab, oks in members.items()}
    if math.comb(n, k) <= MAJ_EXACT_LIMIT:
        subsets = list(itertools.combinations(range(n), k))
    else:
        rng = random.Random(seed)
        subsets = [tuple(rng.sample(range(n), k)) for _ in range(MAJ_MONTE_CARLO)]
    return sum(_vote(labels, s, credit) for s in subsets) / len(subsets)


def bootstrap_ci(values: list[float], resamples: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling problems with replacement."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def mean_with_ci(values: list[float], seed: int = 0) -> dict:
    """``{"mean", "ci_low", "ci_high", "n"}`` over per-problem scores."""
    lo, hi = bootstrap_ci(values, seed=seed)
    return {"mean": float(np.mean(values)) if values else float("nan"), "ci_low": lo, "ci_high": hi,
            "n": len(values)}
