"""Reward functions in TRL's contract, for ``GRPOTrainer(reward_funcs=...)``.

Each is called as ``f(prompts=..., completions=..., **kwargs)`` where kwargs hold every dataset column,
and returns one float per completion. Completions arrive in groups of ``num_generations`` consecutive
items (one question's G samples). The group rewards (``empo``, ``majority_vote``) gather the answers of all
processes first, so a group split across processes is scored whole; a global batch that is not a whole
number of groups is an error.

Label-free rewards (``empo``, ``majority_vote``, ``format``, ``random``) never read the gold column: they
take only ``prompts`` and ``completions`` from the call. ``gold_accuracy`` is the supervised baseline.

- ``empo``: p(c(i)), the share of the completion's own semantic cluster; a completion without a boxed
  answer gets ``no_answer_reward`` (default 0), so empty answers can never win by agreeing with each other.
- Free-form clustering (``clusterer=``, :mod:`empo.clustering.freeform`): answers are free text judged by meaning; a
  missing, too long or question-repeating answer counts as no answer. ``min_majority_share``: a group whose
  largest cluster holds a smaller share gets 0 for every completion (noise, not consensus; 0 = off).
- ``majority_vote`` (TTRL): 1 if the completion's cluster is a largest answered cluster, else 0. Ties:
  every tied largest cluster gets 1 (a rule that does not depend on sample order); no answer gets 0.
- ``gold_accuracy``: 1 if the answer is equivalent to the row's gold answer, else 0.
- ``format``: 1 if the completion has a boxed answer.
- ``random``: Bernoulli(0.5) from a seeded generator (Spurious-Rewards control), independent of content.
- ``self_certainty`` (Intuitor): mean KL(uniform || policy) over the completion's tokens; trainer-only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from empo.clustering.groups import GroupAnalysis, GroupRef, gather_groups
from empo.clustering.math_clusters import MathClusterer
from empo.distributed import world
from empo.errors import ConfigError
from empo.grading.answers import is_equivalent
from empo.grading.extract import extract_answer
from empo.rollout.hf import chat_prompt


def completion_text(completion: Any) -> str:
    """TRL passes plain strings, or message lists in conversational mode (the last turn is the answer)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    raise TypeError(f"unsupported completion type {type(completion).__name__}")


class GroupedReward:
    """Base class: a reward over batches made of groups of ``num_generations`` completions."""

    name: str = "grouped"
    label_free: bool = True

    def __init__(self, num_generations: int):
        if num_generations < 1:
            raise ConfigError(f"num_generations must be >= 1, got {num_generations}")
        self.num_generations = num_generations
        self.__name__ = self.name  # TRL names reward columns after __name__

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float]:
        raise NotImplementedError


class ClusterReward(GroupedReward):
    """A reward read off each group's semantic clustering (``score_group``).

    Inside ``EmpoTrainer`` the groups come with the call (``empo_group``: one :class:`empo.clustering.groups.GroupRef`
    per completion, from the trainer's one analysis of the generation batch). Called on its own, the reward builds them:
    every process's answers are gathered, the global batch is cut into groups of G and clustered (with
    ``clusterer``), so a group spread over several processes is scored whole; this process's slice is returned.
    """

    def __init__(self, num_generations: int, clusterer=None, min_majority_share: float = 0.0):
        super().__init__(num_generations)
        if not 0.0 <= min_majority_share <= 1.0:
            raise ConfigError(f"min_majority_share must be in [0, 1], got {min_majority_share}")
        self.clusterer = clusterer or MathClusterer()  # math: last \boxed{} answer, mathematical equivalence
        self.min_majority_share = min_majority_share

    def score_group(self, group: GroupAnalysis) -> list[float]:
        raise NotImplementedError

    def __call__(self, prompts, completions, empo_group: list[GroupRef] | None = None, **kwargs):
        if empo_group is None:
            texts = [completion_text(c) for c in completions]
            # free-form judges read the question: the dataset column 'problem', else the prompt's last user turn
            questions = kwargs.get("problem") or [prompt_text(p) for p in prompts]
            rows = [{"problem": q} for q in questions]
            empo_group = gather_groups(texts, rows, self.clusterer, self.num_generations).local_refs()
        scores: dict[int, list[float]] = {}  # per group object: each group is scored once
        out = []
        for ref in empo_group:
            key = id(ref.group)
            if key not in scores:
                noise = self.min_majority_share and ref.group.majority_ratio < self.min_majority_share
                scores[key] = [0.0] * ref.group.size if noise else self.score_group(ref.group)  # noise: nobody wins
            out.append(scores[key][ref.index])
        return out


def prompt_text(prompt: Any) -> str:
    """The question as the prompt shows it: a plain string, or the last user turn of a message list."""
    if isinstance(prompt, str):
        return prompt
    users = [m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    return str(users[-1] if users else "")


class EmpoReward(ClusterReward):
    name = "empo"

    def __init__(self, num_generations: int, no_answer_reward: float = 0.0, **options):
        super().__init__(num_generations, **options)
        self.no_answer_reward = no_answer_reward

    def score_group(self, group):
        return [self.no_answer_reward if a is None else group.share(i) for i, a in enumerate(group.answers)]


class MajorityVoteReward(ClusterReward):
    name = "majority_vote"

    def score_group(self, group):
        return [float(group.in_largest_cluster(i)) for i in range(group.size)]


class FormatReward(GroupedReward):
    name = "format"

    def __call__(self, prompts, completions, **kwargs):
        return [float(extract_answer(completion_text(c)) is not None) for c in completions]


class RandomReward(GroupedReward):
    """Bernoulli(p) per completion from a generator seeded by (seed, process, training step, call within the step), so
    a resumed run draws what the uninterrupted one drew (outside a trainer: by call count)."""

    name = "random"

    def __init__(self, num_generations: int, seed: int = 0, p: float = 0.5):
        super().__init__(num_generations)
        self.seed, self.p, self._calls = seed, p, 0
        self._step: int | None = None

    def __call__(self, prompts, completions, trainer_state=None, **kwargs):
        rank, _ = world()
        step = None if trainer_state is None else trainer_state.global_step
        if step != self._step:  # a new step (or a resumed run): count calls from 0 within it
            self._step, self._calls = step, 0
        key = [self.seed, rank, self._calls] if step is None else [self.seed, rank, step, self._calls]
        rng = np.random.default_rng(key)
        self._calls += 1
        return [float(x) for x in (rng.random(len(completions)) < self.p)]


class GoldAccuracyReward(GroupedReward):
    name = "gold_accuracy"
    label_free = False

    def __init__(self, num_generations: int, gold_field: str = "answer"):
        super().__init__(num_generations)
        self.gold_field = gold_field

    def __call__(self, prompts, completions, **kwargs):
        if self.gold_field not in kwargs:
            raise KeyError(f"reward 'gold_accuracy' needs the dataset column '{self.gold_field}' "
                           f"(columns passed: {sorted(k for k in kwargs if not k.startswith('_'))})")
        golds = kwargs[self.gold_field]
        answers = [extract_answer(completion_text(c)) for c in completions]
        return [float(a is not None and g is not None and is_equivalent(a, str(g))) for a, g in zip(answers, golds)]


class SelfCertaintyReward(GroupedReward):
    """Intuitor's self-certainty: the mean over completion tokens of KL(uniform || p_policy(. | prefix)).

    It needs the current policy's logits, so the trainer binds itself (``bind_trainer``) before training.
    """

    name = "self_certainty"

    def __init__(self, num_generations: int, chunk_size: int = 8):
        super().__init__(num_generations)
        self.chunk_size = chunk_size
        self.trainer = None

    def bind_trainer(self, trainer) -> None:
        self.trainer = trainer

    def __call__(self, prompts, completions, completion_ids=None, **kwargs):
        import torch

        if self.trainer is None or completion_ids is None:
            raise RuntimeError("reward 'self_certainty' runs inside EmpoTrainer (it needs the policy's logits)")
        tok, model = self.trainer.processing_class, self.trainer.model
        prompt_texts = [p if isinstance(p, str) else chat_prompt(tok, p) for p in prompts]
        prompt_ids = [tok(t, add_special_tokens=False)["input_ids"] for t in prompt_texts]
        device = next(model.parameters()).device
        scores: list[float] = []
        with torch.no_grad():
            for start in range(0, len(prompt_ids), self.chunk_size):
                p_chunk = prompt_ids[start:start + self.chunk_size]
                c_chunk = [list(c) for c in completion_ids[start:start + self.chunk_size]]
                seqs = [p + c for p, c in zip(p_chunk, c_chunk)]
                width = max(len(s) for s in seqs)
                ids = torch.full((len(seqs), width), tok.pad_token_id, dtype=torch.long)
                attn = torch.zeros_like(ids)
                for i, s in enumerate(seqs):  # right padding: completion positions are easy to index
                    ids[i, :len(s)] = torch.tensor(s)
                    attn[i, :len(s)] = 1
                logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits.float()
                for i, (p, c) in enumerate(zip(p_chunk, c_chunk)):
                    if not c:
                        scores.append(0.0)
                        continue
                    # logits at position t predict token t+1: completion tokens are predicted from len(p)-1 on
                    logp = torch.log_softmax(logits[i, len(p) - 1:len(p) - 1 + len(c)], dim=-1)
                    kl_uniform = -math.log(logp.shape[-1]) - logp.mean(dim=-1)
                    scores.append(kl_uniform.mean().item())
        return scores


REWARDS: dict[str, type[GroupedReward]] = {
    cls.name: cls for cls in (EmpoReward, MajorityVoteReward, GoldAccuracyReward, FormatReward, RandomReward,
                              SelfCertaintyReward)
}


def build_reward(name: str, num_generations: int, **options) -> GroupedReward:
    """Instantiate a reward by registry name, e.g. ``build_reward("empo", 8, no_answer_reward=0.0)``."""
    if name not in REWARDS:
        raise ConfigError(f"unknown reward '{name}'; known: {sorted(REWARDS)}")
    try:
        return REWARDS[name](num_generations, **options)
    except TypeError as e:
        raise ConfigError(f"reward '{name}': bad options {options}: {e}") from None
