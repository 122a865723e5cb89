
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from empo.rewards import build_reward
from empo.rewards.builtin import BUILTIN as REWARDS


def boxed(a):
    return "reasoning..." if a is None else f"so the answer is \\boxed{{{a}}}."


class Untouchable(list):
    """A gold column that fails the test if anything reads it."""

    def _boom(self, *a, **k):
        raise AssertionError("a label-free reward read the gold column")

    __getitem__ = __iter__ = __len__ = __contains__ = __bool__ = _boom


def call(name, answers, g, **kw):
    comps = [boxed(a) for a in answers]
    return build_reward(name, g)(prompts=["q"] * len(comps), completions=comps, **kw)


def test_empo_is_cluster_share_and_no_answer_gets_zero():
    r = call("empo", ["2", "2", "\\frac{4}{2}", "3", None, "3", "7", None], 8)
    assert r == [3 / 8, 3 / 8, 3 / 8, 2 / 8, 0.0, 2 / 8, 1 / 8, 0.0]
    completions = [boxed(None)] * 2 + [boxed(1)] * 2
    r = build_reward("empo", 4, no_answer_reward=-1.0)(prompts=["q"] * 4, completions=completions)
    assert r == [-1.0, -1.0, 0.5, 0.5]


def test_groups_are_scored_separately():
    r = call("empo", ["1", "1", "1", "2", "5", "5", "6", "6"], 4)
    assert r == [0.75, 0.75, 0.75, 0.25, 0.5, 0.5, 0.5, 0.5]


def test_majority_vote_ties_all_win_and_missing_never_wins():
    assert call("majority_vote", ["1", "1", "2", None], 4) == [1, 1, 0, 0]
    assert call("majority_vote", ["1", "1", "2", "2"], 4) == [1, 1, 1, 1]
    assert call("majority_vote", [None, None, None, "5"], 4) == [0, 0, 0, 1]


def test_format_and_gold():
    assert call("format", ["1", None, "", "x"], 4) == [1, 0, 0, 1]
    gold = ["0.5", "0.5", "0.5", "0.5"]
    assert call("gold_accuracy", ["\\frac12", "1/2", "2", None], 4, answer=gold) == [1, 1, 0, 0]
    with pytest.raises(KeyError, match="needs the dataset column 'answer'"):
        call("gold_accuracy", ["1"] * 4, 4)


def test_random_is_seeded_bernoulli_and_ignores_content():
    f = build_reward("random", 4, seed=1)
    g = build_reward("random", 4, seed=1)
    comps = [boxed(1)] * 400
    a = f(prompts=["q"] * 400, completions=comps)
    assert a == g(prompts=["q"] * 400, completions=[boxed(9)] * 400)  # same seed, other content: same draws
    assert set(a) == {0.0, 1.0} and 0.4 < sum(a) / len(a) < 0.6
    assert f(prompts=["q"] * 400, completions=comps) != a  # later calls draw afresh


@pytest.mark.parametrize("name", ["empo", "majority_vote", "format", "random"])
def test_label_free_rewards_never_read_gold(name):
    comps = [boxed(a) for a in ["1", "1", "2", None]]
    out = build_reward(name, 4)(prompts=["q"] * 4, completions=comps, answer=Untouchable(["1"] * 4),
                                gold=Untouchable(["1"] * 4), solution=Untouchable(["1"] * 4))
    assert len(out) == 4
    assert REWARDS[name].label_free


def test_batch_must_be_whole_groups():
    with pytest.raises(ValueError, match="not a whole number of groups of num_generations=4"):
        call("empo", ["1"] * 6, 4)


def test_unknown_reward_named():
    with pytest.raises(ValueError, match="unknown reward 'nope'"):
        build_reward("nope", 4)


def test_conversational_completions():
    comps = [[{"role": "assistant", "content": boxed(a)}] for a in ["3", "3", "4", "4"]]
    assert build_reward("empo", 4)(prompts=[[]] * 4, completions=comps) == [0.5] * 4


POOL = ["1", "2", "0.5", "\\frac{1}{2}", "x=2", "(1,2)", "[1,2]", None]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(POOL), min_size=6, max_size=6), st.randoms(use_true_random=False))
def test_rewards_permutation_invariant_and_in_range(answers, rnd):
    perm = list(range(6))
    rnd.shuffle(perm)
    for name in ("empo", "majority_vote", "format"):
        r = call(name, answers, 6)
        rp = call(name, [answers[i] for i in perm], 6)
        assert all(0.0 <= x <= 1.0 for x in r)
        assert [r[i] for i in perm] == rp, name


def test_degenerate_empty_answers_cannot_win():
    # three "answers" that normalise to nothing agree with each other, but they are no answers
    assert call("empo", ["\\,", "\\,", " ", "5"], 4) == [0.0, 0.0, 0.0, 0.25]
    assert call("majority_vote", ["\\,", "\\,", "\\!", "5"], 4) == [0, 0, 0, 1]
