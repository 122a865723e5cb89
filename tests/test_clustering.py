"""Semantic clustering of a group's answers (empo.clustering.math_clusters)."""

from __future__ import annotations

import itertools
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from empo.clustering import math_clusters as clustering
from empo.clustering.math_clusters import cluster_answers, count_missing


def partition(answers, ids):
    """The partition of indices (None answers included as singletons) -- order-free."""
    groups: dict[int, set[int]] = {}
    for i, c in enumerate(ids):
        groups.setdefault(c, set()).add(i)
    return {frozenset(g) for g in groups.values()}


def assert_valid_ids(ids, n):
    assert len(ids) == n
    seen = []
    for c in ids:
        assert isinstance(c, int) and c >= 0
        if c not in seen:
            assert c == len(seen), f"ids not numbered by first appearance: {ids}"
            seen.append(c)


def test_ids_in_first_appearance_order():
    answers = ["3", "5", "3.0", None, "x=5", None, "7", r"\frac{6}{2}"]
    assert cluster_answers(answers) == [0, 1, 0, 2, 1, 3, 4, 0]


def test_none_answers_are_singletons():
    assert cluster_answers([None, None, None]) == [0, 1, 2]
    assert cluster_answers([None, "1", None, "1"]) == [0, 1, 2, 1]
    assert cluster_answers([]) == []
    # an answer that is empty after normalisation is treated like None
    assert cluster_answers([r"\,", r"\,", "2"]) == [0, 1, 2]
    assert count_missing([None, r"\,", "2", " "]) == 3


def test_equivalent_variants_share_a_cluster():
    answers = [r"\frac12", "0.5", "1/2", r"\dfrac{1}{2}", r"x = \frac{1}{2}", "0.50", r"\frac{1}{2}\text{ m}", "2",
               r"\sqrt{4}"]
    assert cluster_answers(answers) == [0, 0, 0, 0, 0, 0, 0, 1, 1]


def test_math_verify_structures():
    answers = ["(1,2)", "[1,2]", r"\left(1, 2\right)", r"\{1,2\}", r"\{2,1\}", r"\frac{\sqrt{3}}{2}",
               r"\frac{1}{2}\sqrt{3}"]
    ids = cluster_answers(answers)
    assert ids[0] == ids[2]
    assert ids[0] != ids[1]
    assert ids[3] == ids[4]
    assert ids[5] == ids[6]
    assert ids[5] not in (ids[0], ids[1], ids[3])


def test_percent_is_stripped():
    ids = cluster_answers([r"10\%", "10", "0.1", "10 percent"])
    assert ids == [0, 0, 1, 0]


def test_non_transitive_triple_real():
    # math-verify: \frac{\sqrt{1}}{3} ~ 1/3 and ~ 0.333333 (6-digit rounding); numeric path: 1/3 !~ 0.333333
    a, b, c = "1/3", "0.333333", r"\frac{\sqrt{1}}{3}"
    assert cluster_answers([a, b]) == [0, 1]
    for perm in itertools.permutations([a, b, c]):
        assert cluster_answers(list(perm)) == [0, 0, 0], perm  # connected through c, whatever the order
    assert cluster_answers([b, a, c, "2"]) == [0, 0, 0, 1]


def test_non_transitive_stub_relation():
    chain = {frozenset("ab"), frozenset("bc"), frozenset("de")}
    calls = []

    def stub(x, y):
        calls.append((x, y))
        return frozenset((x, y)) in chain

    assert cluster_answers(["a", "c", "e"], equivalent=stub) == [0, 1, 2]
    assert cluster_answers(["a", "c", "b", None, "e", "d", "a"], equivalent=stub) == [0, 0, 0, 1, 2, 2, 0]
    assert cluster_answers(["c", "e", "d", "b", "a"], equivalent=stub) == [0, 1, 1, 0, 0]
    # identical strings are joined without asking; pairs already in one component are skipped
    calls.clear()
    assert cluster_answers(["b", "b", "a", "c", "a"], equivalent=stub) == [0, 0, 0, 0, 0]
    assert calls == [("b", "a"), ("b", "c")]  # b-a and b-c joined everything; a-c is never asked


def test_numeric_groups_never_call_mathverify(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("math-verify must not be called")

    monkeypatch.setattr(clustering, "mathverify_cluster", boom)
    answers = ["12", "12.0", r"\frac{24}{2}", "1.2e1", "13", None, "x = 13", r"12\text{ cm}", r"\dfrac{1}{3}", "0.3333"]
    assert cluster_answers(answers) == [0, 0, 0, 0, 1, 2, 1, 0, 3, 4]
    # identical canonical forms of non-numeric answers need no comparison either
    assert cluster_answers([r"\frac{\sqrt3}{2}", r"\dfrac{\sqrt{3}}{2}", r"\frac{\sqrt{3}}{2}"]) == [0, 0, 0]


def test_numeric_tolerance_only_for_inexact_forms():
    assert cluster_answers(["11111111100", "11111111101"]) == [0, 1]
    # 1.1111111105e10 is within 1e-9 of both integers: it connects them
    assert cluster_answers(["11111111100", "11111111101", "1.1111111105e10"]) == [0, 0, 0]
    assert cluster_answers(["1/3", "0.3333333333333", "0.333"]) == [0, 0, 1]


def test_large_group():
    answers = ([r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}", r"\sqrt{2}/2"] * 10 + ["0.7", None, "1", r"\sqrt{3}"] * 8)
    ids = cluster_answers(answers)
    assert_valid_ids(ids, len(answers))
    assert len({ids[i] for i in range(30)}) == 1
    assert len(set(ids)) == 1 + 1 + 1 + 1 + 8  # sqrt2/2, 0.7, 1, sqrt3 and eight None singletons


def test_threads_agree_with_sequential():
    groups = [
        ["(1,2)", "[1,2]", "(1, 2)", None, r"\{1,2\}"],
        [r"\frac{\sqrt{3}}{2}", r"\frac{1}{2}\sqrt{3}", "0.866", "2"],
        ["x^2-1", "(x-1)(x+1)", "x^2+1", None],
        [r"\pi", r"\frac{2\pi}{2}", "3.14159", "3"],
    ]
    expected = [cluster_answers(g) for g in groups]
    got: dict[int, list[int]] = {}

    def work(k):
        got[k] = cluster_answers(groups[k % len(groups)])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert all(got[k] == expected[k % len(groups)] for k in range(8))


# pool of variants: several meanings, each written several ways, plus near-misses and a non-transitive triple
POOL = [
    r"\frac12", "0.5", "1/2", r"x=\frac{1}{2}",
    r"\frac{\sqrt{3}}{2}", r"\frac{\sqrt3}{2}", r"\frac{1}{2}\sqrt{3}",
    "(1,2)", "[1,2]", r"\left(1,2\right)",
    r"\{1,2\}", r"\{2,1\}",
    "2", r"\sqrt{4}", "3",
    "1/3", "0.333333", r"\frac{\sqrt{1}}{3}",
    r"10\%", "0.1",
    None,
]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(POOL), min_size=1, max_size=10), st.randoms(use_true_random=False))
def test_partition_is_permutation_invariant(answers, rnd):
    perm = list(range(len(answers)))
    rnd.shuffle(perm)
    shuffled = [answers[p] for p in perm]
    ids = cluster_answers(answers)
    ids_shuffled = cluster_answers(shuffled)
    assert_valid_ids(ids, len(answers))
    assert_valid_ids(ids_shuffled, len(answers))
    # map the shuffled partition back to original indices
    back = {frozenset(perm[i] for i in g) for g in partition(shuffled, ids_shuffled)}
    assert back == partition(answers, ids)


TOKENS = [
    "\\frac", "{", "}", "^", "\\sqrt", "1", "2", "3", "x", "(", ")", ",", "\\boxed{", "[", "]", "-", "+", "=",
    "\\pi", "10", ".", " ", "\\%", "\\{", "\\}", "e", "/",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.none(), st.lists(st.sampled_from(TOKENS), max_size=12).map("".join)), max_size=8))
def test_fuzz_cluster_answers(answers):
    ids = cluster_answers(answers, timeout=1.0)
    assert_valid_ids(ids, len(answers))
    for a, c in zip(answers, ids):
        if a is None:
            assert ids.count(c) == 1
