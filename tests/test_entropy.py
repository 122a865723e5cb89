import math

from hypothesis import given
from hypothesis import strategies as st

from empo.clustering.entropy import keep_group, semantic_entropy


def test_known_values():
    assert semantic_entropy([0, 0, 0, 0]) == 0.0
    assert math.isclose(semantic_entropy([0, 1, 2, 3]), math.log(4))
    assert math.isclose(semantic_entropy([0, 0, 1, 1]), math.log(2))
    assert math.isclose(semantic_entropy([0, 0, 0, 1]), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))


@given(st.lists(st.integers(0, 15), min_size=1, max_size=32))
def test_bounds_and_permutation(ids):
    h = semantic_entropy(ids)
    assert -1e-12 <= h <= math.log(len(ids)) + 1e-12
    assert math.isclose(h, semantic_entropy(sorted(ids)), abs_tol=1e-12)


def test_default_thresholds_drop_unanimous_and_all_different():
    g = 8
    assert not keep_group(semantic_entropy([0] * g), g)
    assert not keep_group(semantic_entropy(list(range(g))), g)
    assert keep_group(semantic_entropy([0] * 7 + [1]), g)
    assert keep_group(semantic_entropy([0, 0] + list(range(1, 7))), g)


def test_custom_thresholds():
    h = semantic_entropy([0, 0, 1, 1])  # log 2 = 0.693
    assert keep_group(h, 4, delta_low=0.5, delta_high=0.7)
    assert not keep_group(h, 4, delta_low=0.7)
    assert not keep_group(h, 4, delta_high=0.6)
