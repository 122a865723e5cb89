"""Clustering a group's answers by mathematical meaning (EMPO's semantic clusters).

Rule
----
``cluster_answers(answers)`` returns one cluster id per answer.  Two answers share a cluster when they are
connected by a chain of equivalences (:func:`empo.grading.answers.is_equivalent`): the clusters are the **connected
components (transitive closure)** of the equivalence relation over the answers that exist.  If A≈B and B≈C,
then A, B and C share a cluster even when A≉C.

Why: math-verify's relation is not transitive (``\\frac{\\sqrt{1}}{3}`` ≈ ``1/3`` and ≈ ``0.333333``, but the
exact numeric path keeps ``1/3`` ≉ ``0.333333``).  Greedy "compare with each cluster's first member" then
depends on the order of the answers; connected components do not, so the partition is invariant under any
permutation of the group.  Only the numbering follows the order: ids are ``0, 1, 2, ...`` in order of first
appearance.

* ``None`` (no extracted answer), and an answer whose canonical form is empty, never joins a cluster: each is
  its own singleton id.
* Evaluation, cheapest first: answers with the same canonical form are joined without any comparison; numeric
  answers are joined by value, never through math-verify (equal values; and values within relative tolerance
  1e-9 of a value written as a decimal or in scientific notation -- integers and fractions written exactly
  only join equal values); then math-verify compares only *representatives* of
  components that are still separate (per atom -- one canonical form, or one numeric value -- the
  representative is its shortest form, ties broken alphabetically, so the choice does not depend on order),
  skipping pairs already in one component and pairs of two numeric atoms.  All math-verify work for a group is
  one task for the worker process (:mod:`empo.grading.mathverify_pool`); a comparison that times out counts as "not
  equivalent".
* **Bounded cost per group.**  All math-verify work for one group stops after ``group_budget`` seconds (default
  ``2 x timeout``; :func:`set_limits`, the recipe's ``math_timeout`` / ``group_time_budget``).  What is still
  unresolved then stays apart -- never merged -- so a group of pathological answers costs one budget, not one
  timeout per answer and partner.  :data:`GRADING` counts, per process, the groups that ran out of budget and
  the answers that hit a timeout (the trainer logs them per step), so a researcher sees when grading, not the
  model, shapes the reward.  A budget cut makes the partition depend on timing; without cuts it does not.
* ``equivalent=`` replaces the whole relation (for tests, or another grader): identical strings are always
  joined; every other pair of distinct strings of separate components is passed to ``equivalent(a, b)``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from fractions import Fraction

from empo.configs import CLUSTERINGS
from empo.errors import ConfigError
from empo.grading.answers import (
    _numeric_from_canonical,
    canonical_form,
    is_exact_numeral,
    mathverify_form,
    numbers_close,
)
from empo.grading.mathverify_pool import default_timeout, mathverify_cluster
from empo.grading.union_find import UnionFind

__all__ = ["CLUSTERINGS", "GRADING", "build_clusterer", "cluster_answers", "clusterer_from_args", "count_missing",
           "set_limits"]

#: Group budget as a multiple of the per-comparison timeout, when none is set.
DEFAULT_BUDGET_FACTOR = 2.0
_limits: dict[str, float | None] = {"timeout": None, "group_budget": None}


def set_limits(timeout: float | None = None, group_budget: float | None = None) -> None:
    """Process-wide defaults for :func:`cluster_answers`: seconds per math-verify operation, and per group
    (None: ``2 x timeout``; 0 or less: no group budget)."""
    _limits["timeout"] = timeout
    _limits["group_budget"] = group_budget


def _group_budget(timeout: float, group_budget: float | None) -> float | None:
    budget = group_budget if group_budget is not None else _limits["group_budget"]
    if budget is None:
        return DEFAULT_BUDGET_FACTOR * timeout
    return budget if budget > 0 else None


class GradingCounters:
    """Counts of grading events since the last :meth:`take` (thread-safe; rewards may run in threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {"groups_over_budget": 0, "math_timeouts": 0}

    def add(self, over_budget: bool, timed_out: int) -> None:
        with self._lock:
            self._counts["groups_over_budget"] += int(over_budget)
            self._counts["math_timeouts"] += timed_out

    def take(self) -> dict[str, int]:
        """The counts so far, reset to zero."""
        with self._lock:
            out, self._counts = self._counts, dict.fromkeys(self._counts, 0)
        return out


GRADING = GradingCounters()


def count_missing(answers: Sequence[str | None]) -> int:
    """How many answers are missing (``None``, or empty after canonicalisation)."""
    return sum(1 for a in answers if a is None or not canonical_form(a))


def _number_ids(keys: list, comp_of: Callable[[object], int]) -> list[int]:
    """Ids in order of first appearance; ``None`` keys get fresh singleton ids."""
    ids: list[int] = []
    seen: dict[int, int] = {}
    nxt = 0
    for k in keys:
        if k is None:
            ids.append(nxt)
            nxt += 1
            continue
        c = comp_of(k)
        if c not in seen:
            seen[c] = nxt
            nxt += 1
        ids.append(seen[c])
    return ids


def _cluster_with(answers: Sequence[str | None], equivalent: Callable[[str, str], bool]) -> list[int]:
    distinct: list[str] = []
    index: dict[str, int] = {}
    for a in answers:
        if a is not None and a not in index:
            index[a] = len(distinct)
            distinct.append(a)
    uf = UnionFind(len(distinct))
    for i in range(len(distinct)):
        for j in range(i + 1, len(distinct)):
            if uf.find(i) != uf.find(j) and equivalent(distinct[i], distinct[j]):
                uf.union(i, j)
    return _number_ids([None if a is None else index[a] for a in answers], uf.find)


def cluster_answers(
    answers: Sequence[str | None],
    equivalent: Callable[[str, str], bool] | None = None,
    *,
    timeout: float | None = None,
    group_budget: float | None = None,
) -> list[int]:
    """Cluster id per answer: connected components of answer equivalence, numbered by first appearance.

    ``None`` answers are singletons.  ``equivalent`` (optional) replaces :func:`empo.grading.answers.is_equivalent`;
    ``timeout`` is math-verify's per-comparison timeout in seconds (default :func:`set_limits`, else
    ``EMPO_MATH_TIMEOUT`` or 5); ``group_budget`` bounds the group's math-verify work in seconds (default
    :func:`set_limits`, else ``2 x timeout``; 0: none).
    """
    answers = list(answers)
    if equivalent is not None:
        return _cluster_with(answers, equivalent)

    # 1. canonical forms: identical forms are one atom from the start
    canon: list[str | None] = []
    for a in answers:
        c = canonical_form(a) if isinstance(a, str) else ""
        canon.append(c or None)
    keys: list[str] = list(dict.fromkeys(c for c in canon if c is not None))
    if not keys:
        return _number_ids(canon, lambda k: 0)
    key_index = {k: i for i, k in enumerate(keys)}
    uf = UnionFind(len(keys))

    # 2. numeric values, decided exactly (never through math-verify)
    values: list[Fraction | None] = [_numeric_from_canonical(k) for k in keys]
    by_value: dict[Fraction, list[int]] = {}
    for i, v in enumerate(values):
        if v is not None:
            by_value.setdefault(v, []).append(i)
    for members in by_value.values():  # equal values
        for m in members[1:]:
            uf.union(members[0], m)
    if len(by_value) > 1:  # distinct values within tolerance, when one of them is written inexactly
        distinct = sorted(by_value)
        inexact = [not all(is_exact_numeral(keys[m]) for m in by_value[v]) for v in distinct]
        for a, v in enumerate(distinct):
            if not inexact[a]:
                continue
            for step in (-1, 1):
                b = a + step
                while 0 <= b < len(distinct) and numbers_close(v, distinct[b]):
                    uf.union(by_value[v][0], by_value[distinct[b]][0])
                    b += step

    # 3. math-verify between representatives of the atoms (one per canonical form or numeric value)
    atoms: dict[int, list[int]] = {}
    for i in range(len(keys)):
        atoms.setdefault(uf.find(i), []).append(i)
    if len(atoms) > 1 and any(values[members[0]] is None for members in atoms.values()):
        reps = []
        for root, members in atoms.items():
            rep = min((keys[m] for m in members), key=lambda k: (len(k), k))
            reps.append((rep, root, values[members[0]] is not None))
        reps.sort(key=lambda r: (len(r[0]), r[0]))  # evaluation order independent of the answers' order
        timeout = timeout or _limits["timeout"] or default_timeout()
        report: dict = {}
        labels = mathverify_cluster([mathverify_form(r[0]) for r in reps], [r[2] for r in reps], timeout=timeout,
                                    budget=_group_budget(timeout, group_budget), report=report)
        GRADING.add(report.get("over_budget", False), len(report.get("timed_out", ())))
        for (_, root, _), lab in zip(reps, labels):
            uf.union(root, reps[lab][1])

    return _number_ids([None if c is None else key_index[c] for c in canon], uf.find)


# --- the clusterer a recipe chooses (EmpoArguments.clustering) ------------------------------------------------------


class MathClusterer:
    """EMPO's math setting: the last ``\\boxed{}`` answer, clustered by mathematical equivalence (above)."""

    kind = "math"

    def extract(self, text: str, question: str | None = None) -> str | None:
        from empo.grading.extract import extract_answer

        return extract_answer(text)

    def cluster(self, answers: Sequence[str | None], question: str | None = None) -> list[int]:
        return cluster_answers(answers)


def build_clusterer(kind: str = "math", **options):
    """The clusterer for ``kind`` (see :data:`CLUSTERINGS`); free-form kinds take :class:`FreeformClusterer`'s
    options (judge, judge_model, threshold, device, batch_size, template, engine, gpu_memory_utilization,
    max_answer_chars, reject_question_echo)."""
    if kind not in CLUSTERINGS:
        raise ConfigError(f"unknown clustering '{kind}'; known: {list(CLUSTERINGS)}")
    if kind == "math":
        return MathClusterer()
    from empo.clustering.freeform import FreeformClusterer

    return FreeformClusterer(kind, **options)


def clusterer_from_args(empo_args):
    """The clusterer a recipe's settings ask for. ``empo train`` builds one and gives the same object to the rewards
    and the trainer (a judge model is loaded once)."""
    kind = getattr(empo_args, "clustering", "math")
    if kind == "math":
        return MathClusterer()
    return build_clusterer(kind, judge=empo_args.entailment_judge, judge_model=empo_args.judge_model,
                           threshold=empo_args.judge_threshold, device=empo_args.judge_device,
                           batch_size=empo_args.judge_batch_size, template=empo_args.judge_template,
                           engine=empo_args.judge_engine,
                           gpu_memory_utilization=empo_args.judge_gpu_memory_utilization,
                           max_answer_chars=empo_args.max_answer_chars,
                           reject_question_echo=empo_args.reject_question_echo)
