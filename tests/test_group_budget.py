"""A group's math-verify work is bounded by its time budget; what is unresolved then stays apart, and it is counted."""

import time

import pytest

from empo.clustering.math_clusters import GRADING, cluster_answers
from empo.grading import mathverify_pool as pool

SLOW = r"\slowmarker"
NORMAL = [r"\sqrt{2}", r"2^{1/2}", r"\frac{2}{\sqrt{2}}", "x+1", "1+x", r"\frac{1}{3}", r"\pi", r"2\pi"]
# distinct slow answers that the worker grinds on (interruptibly) whenever it compares them
SLOW_ANSWERS = [f"{SLOW}{{{k}}}+x" for k in range(8)]


@pytest.fixture
def slow_worker(monkeypatch):
    monkeypatch.setenv("EMPO_MATH_TEST_SLOW", SLOW)
    pool.shutdown()  # new workers read the fault-injection variable
    pool.mathverify_equivalent("x+2", "2+x", timeout=5)  # start the worker outside the timed part
    GRADING.take()
    yield
    monkeypatch.delenv("EMPO_MATH_TEST_SLOW")
    pool.shutdown()


def test_group_with_slow_answers_finishes_within_budget(slow_worker):
    group = [a for pair in zip(NORMAL, SLOW_ANSWERS) for a in pair]  # 16 answers, 8 of them slow
    budget, timeout = 2.0, 0.5
    t = time.monotonic()
    ids = cluster_answers(group, timeout=timeout, group_budget=budget)
    elapsed = time.monotonic() - t
    # the budget plus the caller's grace for the worker to report, plus scheduling slack on a busy machine
    assert elapsed < budget + pool._BUDGET_GRACE + 1.0, elapsed
    slow_ids = [ids[group.index(a)] for a in SLOW_ANSWERS]
    assert all(ids.count(c) == 1 for c in slow_ids)  # never merged
    # the short, ordinary answers are settled before the budget goes to the (longer) slow ones
    assert ids[group.index(r"\sqrt{2}")] == ids[group.index(r"2^{1/2}")]
    assert ids[group.index("x+1")] == ids[group.index("1+x")]
    counts = GRADING.take()
    assert counts["groups_over_budget"] == 1
    assert counts["math_timeouts"] >= 1


def test_without_budget_the_same_group_costs_a_timeout_per_slow_answer(slow_worker):
    """The reference the budget is for: unbounded, each slow answer costs up to two timeouts."""
    # other strings than the first test's: the run-wide caches remember answers that timed out there
    normal = [r"\sqrt{5}", r"5^{1/2}", "z+1", "1+z"]
    slow = [f"{SLOW}{{{k}}}+z" for k in range(4)]
    group = [a for pair in zip(normal, slow) for a in pair]
    timeout = 0.3
    t = time.monotonic()
    ids = cluster_answers(group, timeout=timeout, group_budget=0)
    elapsed = time.monotonic() - t
    assert elapsed >= 4 * timeout  # every slow answer timed out at least once
    assert ids[0] == ids[2]  # sqrt(5) ~ 5^(1/2): resolved, no cut
    assert all(ids.count(ids[group.index(a)]) == 1 for a in slow)
    counts = GRADING.take()
    assert counts["groups_over_budget"] == 0 and counts["math_timeouts"] >= 4


def test_budget_does_not_bind_on_an_ordinary_group():
    GRADING.take()
    ids = cluster_answers([r"\sqrt{7}", r"7^{1/2}", "w+1", "1+w", "3", "3.0"], timeout=5, group_budget=10)
    assert ids == [0, 0, 1, 1, 2, 2]
    assert GRADING.take() == {"groups_over_budget": 0, "math_timeouts": 0}


def test_grading_against_gold_runs_under_the_group_budget(slow_worker):
    from empo.clustering.groups import analyse_group
    from empo.clustering.math_clusters import set_limits

    answers = [r"\sqrt{7}", r"7^{1/2}", r"\sqrt{7}"] + [f"{SLOW}{{{k}}}+w" for k in range(5)]
    set_limits(timeout=0.5, group_budget=2.0)
    try:
        group = analyse_group(answers)
        GRADING.take()
        t = time.monotonic()
        samples, majority = group.grade(r"7^{\frac{1}{2}}")
        elapsed = time.monotonic() - t
    finally:
        set_limits()
    assert elapsed < 2.0 + pool._BUDGET_GRACE + 1.0, elapsed  # one budget for the group, not a timeout per answer
    assert samples[:3] == [True, True, True] and not any(samples[3:]) and majority
