"""RENT's token-entropy reward (Prabhudesai et al., "Maximizing Confidence Alone Improves Reasoning", arXiv
2505.22660; official code satrams/rent-rl, ``verl/trainer/ppo/ray_trainer.py``).

As implemented, per completion i with tokens t = 1..T_i:

    r_i = - (1/T_i) * sum_t H_t,    H_t = - sum_v p(v | prefix_<t) log p(v | prefix_<t)   (nats)

over every completion token (the chain of thought and the answer, as the released training path does), with the
entropies of the policy that sampled the batch at its sampling temperature -- TRL's own values (the trainer's
``entropies`` token statistic). The official main command also sets ``base_format``: a completion without a boxed
answer is scored as if its entropy were ``no_answer_entropy`` (7.0 there); ``None`` turns that off. An empty completion
has no entropy: it gets the no-answer score, or ``None`` (no opinion) when that is off.

Label-free; per completion (no group), so permutation-equivariant. Its collapse mode is the one the paper reports:
confident, short and possibly wrong answers; keep the controls beside it.
"""

from __future__ import annotations

from empo.grading.extract import extract_answer
from empo.rewards.builtin import GroupedReward
from empo.rewards.contract import completion_text


class TokenEntropyReward(GroupedReward):
    name = "token_entropy"
    paper = "RENT, arXiv 2505.22660"
    token_statistics = ("entropies",)

    def __init__(self, num_generations: int, no_answer_entropy: float | None = 7.0):
        super().__init__(num_generations)
        self.no_answer_entropy = no_answer_entropy

    def __call__(self, prompts, completions, token_stats=None, **kwargs):
        if token_stats is None:
            raise RuntimeError("reward 'token_entropy' reads the policy's token entropies: it runs inside EmpoTrainer "
                               "(or empo.testing, which supplies stand-ins)")
        missing = None if self.no_answer_entropy is None else -float(self.no_answer_entropy)
        out = []
        for completion, stats in zip(completions, token_stats):
            unboxed = missing is not None and extract_answer(completion_text(completion)) is None
            out.append(missing if len(stats.entropies) == 0 or unboxed else -float(stats.entropies.float().mean()))
        return out
