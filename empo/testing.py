"""The reward test kit, for users' own tests (see :mod:`empo.rewards.kit` for the properties)::

    from empo.testing import check_reward

    def test_my_reward_is_fit_for_a_study():
        check_reward("mypkg.rewards:novelty", {"weight": 0.5})    # raises RewardCheckFailure naming the property
"""

from empo.rewards.kit import (
    PROPERTIES,
    Result,
    RewardCheckFailure,
    check_gold_invariant,
    check_gold_untouched,
    check_group_equivariant,
    check_group_independent,
    check_hostile_input,
    check_process_split,
    check_resumable,
    check_reward,
    check_scores,
    check_seeded,
)

__all__ = ["PROPERTIES", "Result", "RewardCheckFailure", "check_gold_invariant", "check_gold_untouched",
           "check_group_equivariant", "check_group_independent", "check_hostile_input", "check_process_split",
           "check_resumable", "check_reward", "check_scores", "check_seeded"]
