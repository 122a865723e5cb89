"""How a user tests a reward of their own: the kit (empo.testing) certifies it, and a test of its own formula."""

from pathlib import Path

from empo.testing import check_reward

SPEC = f"{Path(__file__).with_name('concise_consensus.py')}:concise_consensus"


def test_concise_consensus_passes_the_kit():
    results = check_reward(SPEC, {"target_tokens": 24})  # raises RewardCheckFailure naming a failed property
    assert {r.property for r in results if r.status == "ok"} >= {"scores", "gold_untouched", "process_split"}


def test_concise_consensus_discounts_long_completions():
    from empo.rewards.kit import build, call

    func = build(SPEC, {"target_tokens": 10_000}, 4)
    long = build(SPEC, {"target_tokens": 1}, 4)
    columns = {"prompts": [[{"role": "user", "content": "What is 2 + 2?"}]] * 4, "problem": ["What is 2 + 2?"] * 4,
               "answer": ["4"] * 4, "id": ["q"] * 4,
               "completions": ["\\boxed{4}", "so \\boxed{4}", "\\boxed{5}", "no answer"]}
    assert call(func, columns, 4) == [0.5, 0.5, 0.25, 0.0]          # the cluster shares
    assert all(s < 0.5 for s in call(long, columns, 4)[:2])          # discounted past one token
