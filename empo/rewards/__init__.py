"""Rewards, empo's first-class concept: the contract (:mod:`empo.rewards.contract`), finding and building them
(:mod:`empo.rewards.registry`), the built-ins (:mod:`empo.rewards.builtin`), the field's intrinsic rewards
(:mod:`~empo.rewards.token_entropy`, :mod:`~empo.rewards.novelty`, :mod:`~empo.rewards.negative_labels`) and the test
kit that certifies a reward (:mod:`empo.rewards.kit`, public as :mod:`empo.testing`).

This package sits below the recipe layer: checking a recipe resolves its rewards here, and nothing here imports
``empo.training``.
"""

from empo.rewards.contract import (
    GOLD_COLUMNS,
    TOKEN_STATISTICS,
    TokenStats,
    Traits,
    completion_text,
    prompt_text,
    reward,
    traits,
)
from empo.rewards.registry import build_reward, build_rewards, check_rewards, resolve

__all__ = ["GOLD_COLUMNS", "TOKEN_STATISTICS", "TokenStats", "Traits", "build_reward", "build_rewards",
           "check_rewards", "completion_text", "prompt_text", "resolve", "reward", "traits"]
