"""The built-in rewards' formulas on fixed groups (the properties every reward must have: tests/test_reward_kit.py)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from empo.rewards import build_reward


def boxed(a):
    return "reasoning..." if a is None else f"so the answer is \\boxed{{{a}}}."


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


# --- the field's rewards: each formula on a hand-computed group -----------------------------------------------------
def stats(*entropies):
    import torch

    from empo.rewards import TokenStats

    return [TokenStats(entropies=torch.tensor(e, dtype=torch.float32)) for e in entropies]


def test_token_entropy_is_minus_the_mean_token_entropy_and_unboxed_gets_the_base():
    comps = [boxed(1), boxed(2), boxed(None), ""]
    r = build_reward("token_entropy", 4)(prompts=["q"] * 4, completions=comps,
                                        token_stats=stats([1.0, 3.0], [0.5], [0.1, 0.1], []))
    assert r == [-2.0, -0.5, -7.0, -7.0]  # RENT's main command: no boxed answer scores as entropy 7
    r = build_reward("token_entropy", 4, no_answer_entropy=None)(prompts=["q"] * 4, completions=comps,
                                                                 token_stats=stats([1.0, 3.0], [0.5], [0.1, 0.1], []))
    assert r[2] == pytest.approx(-0.1) and r[3] is None  # off: the entropy counts; an empty completion: no opinion


def test_negative_labels_positive_majority_and_rare_uncertain_negatives():
    # G = 8: "2" x5 (p .625, a clear top: margin .625 - .125 > .15), "3" once with high entropy (rare and uncertain:
    # negative), "4" once with low entropy (rare but confident: neither), one without an answer
    answers = ["2", "2", "2", "2", "2", "3", "4", None]
    ent = [[1.0]] * 5 + [[5.0], [0.1], [1.0]]
    comps = [boxed(a) for a in answers]
    r = build_reward("negative_labels", 8)(prompts=["q"] * 8, completions=comps, token_stats=stats(*ent))
    assert r == [1.0] * 5 + [-1.0, 0.0, -1.0]
    # continuous (the paper's run script): a+ p_a - lambda (H_a - H), -a- (tau_low - p_a) - lambda (H_a - H)
    r = build_reward("negative_labels", 8, mode="continuous")(prompts=["q"] * 8, completions=comps,
                                                             token_stats=stats(*ent))
    mean = (5 * 1.0 + 5.0 + 0.1 + 1.0) / 8
    assert r[0] == pytest.approx(0.625 - 0.1 * (1.0 - mean))
    assert r[5] == pytest.approx(-(0.15 - 0.125) - 0.1 * (5.0 - mean))
    assert r[6] == pytest.approx(-0.1 * (0.1 - mean)) and r[7] == -1.0
    # no clear top (a tie): no positive label at all
    tie = [boxed(a) for a in ["2", "2", "2", "3", "3", "3", "4", "5"]]
    r = build_reward("negative_labels", 8)(prompts=["q"] * 8, completions=tie, token_stats=stats(*[[1.0]] * 8))
    assert max(r) <= 0.0


def test_novelty_majority_in_upper_band_minority_in_lower_band():
    from empo.clustering.groups import analyse_group
    from empo.rewards.novelty import NoveltyReward

    reward = NoveltyReward(6)
    group = analyse_group(["2", "2", "2", "3", "3", None])
    e = [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [1.0, 0.0]]  # unit vectors
    r = reward.score_group(group, e)
    assert r[5] == -1.0  # no answer
    assert all(0.5 <= x <= 1.0 for x in r[:3]) and all(-1.0 <= x <= -0.5 for x in r[3:5])
    # u_i = 1 - (0.5 mean over own class + 0.5 max over all others); min-max within the class
    sim = lambda a, b: max(0.0, a[0] * b[0] + a[1] * b[1])  # noqa: E731
    u = [1 - (0.5 * sum(sim(e[i], e[j]) for j in own if j != i) / (len(own) - 1)
              + 0.5 * max(sim(e[i], e[j]) for j in range(5) if j != i))
         for i, own in [(0, [0, 1, 2]), (1, [0, 1, 2]), (2, [0, 1, 2]), (3, [3, 4]), (4, [3, 4])]]
    lo, hi = min(u[:3]), max(u[:3])
    assert r[:3] == pytest.approx([0.5 + 0.5 * (x - lo) / (hi - lo) for x in u[:3]])
    assert r[3:5] == pytest.approx([-1.0 + 0.5 * (x - min(u[3:])) / (max(u[3:]) - min(u[3:])) for x in u[3:]])
    lone = reward.score_group(analyse_group(["2", "2", "2", "2", "2", "3"]), e)
    assert lone[5] == -0.5  # a lone minority member: the top of its band
