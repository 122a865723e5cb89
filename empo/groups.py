"""One question's group of G answers, analysed once: clusters, entropy, majority.

Rewards, training metrics and rollouts all need the same clustering of the same answers; ``analyse_group``
caches it so the math-verify work is done once per group however many consumers ask.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from empo.answers import is_equivalent
from empo.clustering import cluster_answers
from empo.entropy import semantic_entropy


@dataclass(frozen=True)
class GroupAnalysis:
    answers: tuple[str | None, ...]
    cluster_ids: tuple[int, ...]
    entropy: float
    #: the clusterer's equivalence for grading against a reference (None: math equivalence); logging only
    equivalent: Callable[[str, str], bool] | None = field(default=None, compare=False, repr=False)

    @property
    def size(self) -> int:
        return len(self.answers)

    @cached_property  # derived once per (cached) group; rewards read it once per completion
    def cluster_sizes(self) -> Counter:
        return Counter(self.cluster_ids)

    @property
    def num_clusters(self) -> int:
        """Clusters among the answers that exist (no-answer singletons are not counted)."""
        return len({c for c, a in zip(self.cluster_ids, self.answers) if a is not None})

    @property
    def num_missing(self) -> int:
        return sum(a is None for a in self.answers)

    def share(self, i: int) -> float:
        """p(c(i)): the share of completion i's own cluster."""
        return self.cluster_sizes[self.cluster_ids[i]] / self.size

    @cached_property
    def largest_answered_size(self) -> int:
        sizes = Counter(c for c, a in zip(self.cluster_ids, self.answers) if a is not None)
        return max(sizes.values(), default=0)

    def in_largest_cluster(self, i: int) -> bool:
        """True when completion i has an answer and its cluster is a largest one (every tied cluster counts)."""
        return self.answers[i] is not None and self.cluster_sizes[self.cluster_ids[i]] == self.largest_answered_size

    @property
    def majority_answer(self) -> str | None:
        """The answer of the largest answered cluster; ties go to the cluster seen first (for logging)."""
        best = self.largest_answered_size
        for c, a in zip(self.cluster_ids, self.answers):
            if a is not None and self.cluster_sizes[c] == best:
                return a
        return None

    @property
    def majority_ratio(self) -> float:
        return self.largest_answered_size / self.size

    def grade(self, gold: str) -> tuple[list[bool], bool]:
        """(is each sample's answer equivalent to ``gold``, is the majority answer) -- for logging only."""
        same = self.equivalent or is_equivalent
        samples = [a is not None and same(a, gold) for a in self.answers]
        majority = self.majority_answer
        return samples, majority is not None and same(majority, gold)


@lru_cache(maxsize=4096)
def _analyse(answers: tuple[str | None, ...]) -> GroupAnalysis:
    ids = tuple(cluster_answers(list(answers)))
    return GroupAnalysis(answers=answers, cluster_ids=ids, entropy=semantic_entropy(list(ids)))


_FREEFORM: OrderedDict[tuple, GroupAnalysis] = OrderedDict()


def analyse_group(answers: list[str | None], question: str | None = None, clusterer=None) -> GroupAnalysis:
    """The group's analysis; ``clusterer`` (from :func:`empo.clustering.build_clusterer`) other than math
    clusters by meaning given ``question``.  Cached per (clusterer, question, answers)."""
    if clusterer is None or clusterer.kind == "math":
        return _analyse(tuple(answers))
    key = (clusterer, question, tuple(answers))  # the clusterer itself: its id could be reused after it dies
    if key not in _FREEFORM:
        ids = tuple(clusterer.cluster(list(answers), question))
        _FREEFORM[key] = GroupAnalysis(answers=tuple(answers), cluster_ids=ids, entropy=semantic_entropy(list(ids)),
                                       equivalent=lambda a, b: clusterer.equivalent(a, b, question))
        while len(_FREEFORM) > 4096:
            _FREEFORM.popitem(last=False)
    return _FREEFORM[key]
