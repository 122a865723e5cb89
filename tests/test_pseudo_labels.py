"""empo.training.pseudo_labels: what a reward taught, measured against gold answers after the fact."""

import pytest

from empo.training.pseudo_labels import (
    advantage_agreement,
    group_advantages,
    run_diagnostics,
    sign_disagreement,
)


def test_sign_disagreement_counts_only_completions_where_both_signals_exist():
    correct = [True, True, False, False]
    assert sign_disagreement([1, 1, -1, -1], correct) == (0, 4)
    assert sign_disagreement([-1, -1, 1, 1], correct) == (4, 4)
    assert sign_disagreement([1, 0, -1, 0], correct) == (0, 2)  # the method says nothing about two of them
    assert sign_disagreement([1, -1, 1, -1], [True] * 4) == (0, 0)  # gold has no signal: nothing to disagree with


def test_advantage_agreement_is_up_to_grpo_normalisation():
    correct = [True, False, False, False]
    assert advantage_agreement([0.75, -0.25, -0.25, -0.25], correct) == "same"
    assert advantage_agreement([3.0, -1.0, -1.0, -1.0], correct) == "same"  # scale does not matter
    assert advantage_agreement([-0.75, 0.25, 0.25, 0.25], [False, True, True, True]) == "same"
    assert advantage_agreement([-3.0, 1.0, 1.0, 1.0], correct) == "opposite"
    assert advantage_agreement([1.0, 1.0, -1.0, -1.0], correct) == "other"
    assert advantage_agreement([0.0] * 4, correct) == "no signal"
    assert advantage_agreement([1.0, -1.0, 0.0, 0.0], [False] * 4) == "no signal"


def test_group_advantages_prefers_trl_s_and_else_centres_the_weighted_rewards():
    assert group_advantages({"advantages": [1, -1], "rewards": {"empo": [0, 0]}}) == [1.0, -1.0]
    row = {"rewards": {"empo": [1.0, 0.0], "format": [1.0, 1.0]}}
    assert group_advantages(row) == pytest.approx([0.5, -0.5])
    assert group_advantages(row, reward_weights=[2.0, 1.0]) == pytest.approx([1.0, -1.0])


def test_run_diagnostics_over_kept_groups_with_a_resumed_step_counted_once():
    def row(step, gid, answers, kept=True, advantages=(1.0, 1.0, -1.0, -1.0)):
        return {"step": step, "id": gid, "kept": kept, "answers": answers, "gold": "4", "advantages": list(advantages),
                "rewards": {"empo": [0.0] * 4}}

    rows = [row(0, "q1", ["4", "4", "5", "6"]),  # right majority, the gold reward's advantages ("same")
            row(0, "q2", ["5", "5", "4", "6"]),  # wrong majority
            row(1, "q3", ["4", "4", "4", "4"], kept=False),  # a skipped step
            row(1, "q3", ["4", "4", "4", "4"], kept=False),  # ...logged again by a resumed run
            row(2, "q4", ["9", "9", "9", "4"], advantages=(0.25, 0.25, 0.25, -0.75))]  # opposite
    d = run_diagnostics(rows)
    assert d["groups"] == 4 and d["kept_groups"] == 3 and d["skipped_step_share"] == pytest.approx(1 / 3)
    assert d["pseudo_label_accuracy"] == pytest.approx(1 / 3)
    # q1: 0 of 4; q2: the right answer (idx 2) pushed down and two wrong ones up, idx 3 down as gold -> 3 of 4; q4: 4
    assert d["sign_disagreement"] == pytest.approx(7 / 12) and d["sign_pairs"] == 12
    assert d["agreement"] == pytest.approx({"same": 1 / 3, "opposite": 1 / 3, "other": 1 / 3, "no signal": 0.0})
    assert run_diagnostics([row(0, "q", ["4"] * 4, kept=False)]) is None
