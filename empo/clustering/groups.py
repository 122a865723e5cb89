"""One question's group of G answers, analysed once: clusters, entropy, majority; and a generation batch's groups.

``analyse_group`` clusters one group (math equivalence, or a free-form clusterer's judge) and computes its semantic
entropy. ``BatchGroups`` is what the trainer builds once per generation batch: every process's answers gathered in
one collective, cut into groups of G, each analysed once; the group rewards, the entropy filter, the metrics and
the sample log all read it. Nothing is cached between batches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from empo.clustering.entropy import semantic_entropy
from empo.clustering.math_clusters import cluster_answers
from empo.distributed import gather_list, world


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

    @cached_property  # rewards read it once per completion
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
        """(is each sample's answer equivalent to ``gold``, is the majority answer) -- for logging only.

        Math answers are graded as they are clustered: the group's answers and the gold answer clustered together,
        in one task under the group time budget (a pathological answer costs one budget, not a timeout per pair);
        an answer is right when it shares the gold answer's cluster. Free-form answers ask the clusterer's judge."""
        majority = self.majority_answer
        if self.equivalent is None:
            ids = cluster_answers([*self.answers, gold])
            samples = [a is not None and c == ids[-1] for a, c in zip(self.answers, ids)]
            at = self.answers.index(majority) if majority is not None else None
            return samples, at is not None and samples[at]
        samples = [a is not None and self.equivalent(a, gold) for a in self.answers]
        return samples, majority is not None and self.equivalent(majority, gold)


def analyse_group(answers: list[str | None], question: str | None = None, clusterer=None) -> GroupAnalysis:
    """The group's analysis; a ``clusterer`` (from :func:`empo.clustering.math_clusters.build_clusterer`) other than
    math clusters by meaning given ``question``."""
    if clusterer is None or clusterer.kind == "math":
        ids = tuple(cluster_answers(list(answers)))
        return GroupAnalysis(answers=tuple(answers), cluster_ids=ids, entropy=semantic_entropy(list(ids)))
    ids = tuple(clusterer.cluster(list(answers), question))
    return GroupAnalysis(answers=tuple(answers), cluster_ids=ids, entropy=semantic_entropy(list(ids)),
                         equivalent=lambda a, b: clusterer.equivalent(a, b, question))


@dataclass(frozen=True)
class GroupRef:
    """One completion's place in its batch's groups: the group and the completion's index in it."""

    group: GroupAnalysis
    index: int


@dataclass
class BatchGroups:
    """A generation batch's groups, global over processes, built once (:func:`gather_groups`)."""

    groups: list[GroupAnalysis]
    group_size: int
    offset: int                 # this process's first completion in the global batch
    local_count: int            # this process's completions
    texts: list[str]            # every completion of the global batch
    golds: list                 # per completion: the gold column (logging only; None where unlabeled)
    ids: list                   # per completion: the question id
    math_timeouts: int = 0      # math-verify operations that timed out while these groups were clustered
    groups_over_budget: int = 0  # groups whose math-verify work ran out of the group budget
    judge_pairs: int = 0        # directed answer pairs a free-form judge scored for these groups (every process's)

    @property
    def size(self) -> int:
        return len(self.texts)

    def grades(self) -> list[tuple[list[bool], bool]]:
        """Each group graded against its gold answer (:meth:`GroupAnalysis.grade`; logging only), once in the whole
        job: shared out over processes as the clustering is (group i on rank i mod world size), results gathered."""
        g = self.group_size
        rank, size = world()
        mine = [(qi, gr.grade(str(self.golds[qi * g]))) for qi, gr in enumerate(self.groups) if qi % size == rank]
        shared = dict(gather_list(mine)[0] if size > 1 else mine)
        return [shared[qi] for qi in range(len(self.groups))]

    def local_refs(self) -> list[GroupRef]:
        """One :class:`GroupRef` per completion of this process, in order."""
        g = self.group_size
        return [GroupRef(self.groups[i // g], i % g) for i in range(self.offset, self.offset + self.local_count)]


def gather_groups(texts: list[str], inputs: list[dict], clusterer, group_size: int) -> BatchGroups:
    """Gather every process's (answer, gold, id, text, question) in one collective, cut the global batch into groups
    of ``group_size`` consecutive completions (TRL's layout: a group may span processes) and analyse each group once.

    Under several processes the groups are shared out (group i on rank i mod world size) and the analyses gathered,
    so every group is clustered once in the whole job and every process holds the same clusters -- its rewards, the
    filter's decisions and the dynamic sampler's agree even when math-verify's wall-clock timeouts would not.
    ``inputs`` are this process's dataset rows, one per completion (``problem``, ``answer``, ``id``)."""
    from empo.clustering.math_clusters import GRADING

    local = [(clusterer.extract(t, x.get("problem")), x.get("answer"), x.get("id"), t, x.get("problem"))
             for t, x in zip(texts, inputs)]
    rows, offset = gather_list(local)
    if len(rows) % group_size:
        raise ValueError(f"{len(rows)} completions are not a whole number of groups of num_generations={group_size}")
    answers, golds, ids, all_texts, questions = (list(col) for col in zip(*rows))
    starts = range(0, len(answers), group_size)
    rank, size = world()
    GRADING.take()  # count only this batch's clustering
    judged_before = getattr(clusterer, "pairs_judged", 0)
    mine = {i: analyse_group(answers[s:s + group_size], questions[s], clusterer)
            for i, s in enumerate(starts) if i % size == rank}
    counts = GRADING.take()
    mine_counts = (counts["math_timeouts"], counts["groups_over_budget"],
                   getattr(clusterer, "pairs_judged", 0) - judged_before)
    if size == 1:
        groups = [mine[i] for i in range(len(starts))]
        timeouts, over_budget, pairs = mine_counts
    else:
        shared, _ = gather_list([(i, g.cluster_ids, g.entropy) for i, g in mine.items()] + [("counts", mine_counts)])
        by_index = {row[0]: row[1:] for row in shared if row[0] != "counts"}
        groups = [mine[i] if i in mine else _shared_group(answers[s:s + group_size], *by_index[i], questions[s],
                                                           clusterer) for i, s in enumerate(starts)]
        timeouts, over_budget, pairs = (sum(col) for col in zip(*(row[1] for row in shared if row[0] == "counts")))
    return BatchGroups(groups=groups, group_size=group_size, offset=offset, local_count=len(texts), texts=all_texts,
                       golds=golds, ids=ids, math_timeouts=timeouts, groups_over_budget=over_budget, judge_pairs=pairs)


def _shared_group(answers, cluster_ids, entropy, question, clusterer) -> GroupAnalysis:
    """Another process's analysis of a group, rebuilt here (the grading equivalence is this process's clusterer's)."""
    free_form = clusterer is not None and clusterer.kind != "math"
    return GroupAnalysis(answers=tuple(answers), cluster_ids=tuple(cluster_ids), entropy=entropy,
                         equivalent=(lambda a, b: clusterer.equivalent(a, b, question)) if free_form else None)
