"""Metric functions against hand-computed cases."""

import math

import pytest

from empo.evaluation.metrics import bootstrap_ci, maj_at_k, mean_with_ci, pass_at_k


def test_pass_at_k_hand_cases():
    assert pass_at_k(5, 0, 1) == 0.0
    assert pass_at_k(4, 2, 1) == pytest.approx(0.5)
    assert pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    assert pass_at_k(4, 3, 2) == 1.0  # n - c < k: every pair holds a correct sample
    assert pass_at_k(5, 5, 3) == 1.0


@pytest.mark.parametrize("n", [1, 3, 8, 16])
def test_pass_at_k_matches_binomial_formula(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            exact = 1.0 - math.comb(n - c, k) / math.comb(n, k)
            assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)


def test_pass_at_k_rejects_bad_arguments():
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_maj_at_k_hand_case_with_abstention_and_tie():
    labels, correct = [0, 0, 1, None], [True, True, False, False]
    assert maj_at_k(labels, correct, 4) == 1.0
    # singletons: two right votes, one wrong, one abstention (scores 0)
    assert maj_at_k(labels, correct, 1) == pytest.approx(0.5)
    # pairs: (0,1)=1 (0,2)=tie .5 (0,3)=1 (1,2)=tie .5 (1,3)=1 (2,3)=0 -> 4/6
    assert maj_at_k(labels, correct, 2) == pytest.approx(4 / 6)


def test_maj_at_k_ties_split_and_all_abstain():
    assert maj_at_k([0, 1], [True, False], 2) == pytest.approx(0.5)
    assert maj_at_k([None, None, None], [False] * 3, 2) == 0.0


def test_maj_at_k_wrong_majority_beats_right_minority():
    assert maj_at_k([0, 0, 0, 1], [False, False, False, True], 4) == 0.0


def test_maj_at_k_monte_carlo_path_is_close_to_exact_value():
    # 15 right votes, 5 wrong, k=10: wrong only ties when all 5 wrong are drawn (C(20,10) > exact limit)
    labels, correct = [0] * 15 + [1] * 5, [True] * 15 + [False] * 5
    exact = 1 - 0.5 * math.comb(15, 5) / math.comb(20, 10)
    assert maj_at_k(labels, correct, 10) == pytest.approx(exact, abs=0.01)
    assert maj_at_k(labels, correct, 10) == maj_at_k(labels, correct, 10)  # seeded


def test_bootstrap_ci_brackets_the_mean_and_is_seeded():
    values = [1.0] * 30 + [0.0] * 70
    lo, hi = bootstrap_ci(values)
    assert lo < 0.3 < hi and 0.18 < lo and hi < 0.42
    assert bootstrap_ci(values) == (lo, hi)
    assert bootstrap_ci([1.0] * 10) == (1.0, 1.0)
    block = mean_with_ci(values)
    assert block["mean"] == pytest.approx(0.3) and block["n"] == 100
