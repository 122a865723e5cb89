"""empo's built-in rewards, in the contract of :mod:`empo.rewards.contract`.

Label-free: ``empo``, ``majority_vote``, ``format``, ``random``, ``self_certainty``; supervised: ``gold_accuracy``.
The group rewards (``empo``, ``majority_vote``; :class:`ClusterReward`) score the trainer's group view
(``empo_group``); called on their own they build it, gathering every process's answers first, so a group split
across processes is scored whole (a global batch that is not a whole number of groups is an error).

- ``empo``: p(c(i)), the share of the completion's own semantic cluster; a completion without a boxed
  answer gets ``no_answer_reward`` (default 0), so empty answers can never win by agreeing with each other.
- Free-form clustering (``clusterer``, :mod:`empo.clustering.freeform`): answers are free text judged by meaning; a
  missing, too long or question-repeating answer counts as no answer. ``min_majority_share`` (the recipe's, shared
  with dynamic sampling): a group whose largest cluster holds a smaller share gets 0 for every completion (noise, not
  consensus; 0 = off).
- ``majority_vote`` (TTRL): 1 if the completion's cluster is a largest answered cluster, else 0. Ties:
  every tied largest cluster gets 1 (a rule that does not depend on sample order); no answer gets 0.
- ``gold_accuracy``: 1 if the answer is equivalent to the row's gold answer, else 0 (``label_free = False``).
- ``format``: 1 if the completion has a boxed answer.
- ``random``: Bernoulli(p) from a generator keyed by (seed, step, call) over the global batch, independent of content
  (the Spurious-Rewards control; ``order_dependent``: its draws belong to positions, not completions). ``seed``: the
  run's.
- ``self_certainty`` (Intuitor, arXiv 2505.19590): the mean over the completion's tokens of KL(uniform || p_policy),
  from the trainer's ``self_certainty`` token statistic.
"""

from __future__ import annotations

import numpy as np

from empo.clustering.groups import GroupAnalysis, GroupRef, gather_groups
from empo.clustering.math_clusters import MathClusterer
from empo.distributed import gather_list
from empo.errors import ConfigError
from empo.grading.answers import is_equivalent
from empo.grading.extract import extract_answer
from empo.rewards.contract import completion_text, prompt_text


class GroupedReward:
    """Base class: a reward over batches made of groups of ``num_generations`` completions."""

    name: str = "grouped"
    label_free: bool = True
    order_dependent: bool = False
    token_statistics: tuple[str, ...] = ()

    def __init__(self, num_generations: int):
        if num_generations < 1:
            raise ConfigError(f"num_generations must be >= 1, got {num_generations}")
        self.num_generations = num_generations
        self.__name__ = self.name  # TRL names reward columns after __name__

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float | None]:
        raise NotImplementedError


class ClusterReward(GroupedReward):
    """A reward read off each group's semantic clustering (``score_group``).

    Inside ``EmpoTrainer`` the groups come with the call (``empo_group``: one :class:`empo.clustering.groups.GroupRef`
    per completion, from the trainer's one analysis of the generation batch). Called on its own, the reward builds them:
    every process's answers are gathered, the global batch is cut into groups of G and clustered (with
    ``clusterer``), so a group spread over several processes is scored whole; this process's slice is returned.

    A subclass whose score also reads a per-completion input of its own (an embedding, a mean token entropy) returns
    it from ``completion_features``; those are gathered over processes too, and ``score_group`` gets the group's.
    """

    def __init__(self, num_generations: int, clusterer=None, min_majority_share: float = 0.0):
        super().__init__(num_generations)
        if not 0.0 <= min_majority_share <= 1.0:
            raise ConfigError(f"min_majority_share must be in [0, 1], got {min_majority_share}")
        self.clusterer = clusterer or MathClusterer()  # math: last \boxed{} answer, mathematical equivalence
        self.min_majority_share = min_majority_share

    def score_group(self, group: GroupAnalysis, features: list | None = None) -> list[float | None]:
        raise NotImplementedError

    def completion_features(self, prompts, completions, kwargs) -> list | None:
        """Per-completion inputs of this reward beside the clusters (None: it reads the clusters alone)."""
        return None

    def __call__(self, prompts, completions, empo_group: list[GroupRef] | None = None, **kwargs):
        if empo_group is None:
            texts = [completion_text(c) for c in completions]
            # free-form judges read the question: the dataset column 'problem', else the prompt's last user turn
            questions = kwargs.get("problem") or [prompt_text(p) for p in prompts]
            rows = [{"problem": q} for q in questions]
            empo_group = gather_groups(texts, rows, self.clusterer, self.num_generations).local_refs()
        features = self.completion_features(prompts, completions, kwargs)
        offset = 0
        if features is not None:
            features, offset = gather_list(features)  # a group may span processes: every member's, in batch order
        scores: dict[int, list] = {}  # per group object: each group is scored once
        out = []
        for j, ref in enumerate(empo_group):
            key = id(ref.group)
            if key not in scores:
                noise = self.min_majority_share and ref.group.majority_ratio < self.min_majority_share
                first = offset + j - ref.index  # the group's first completion in the global batch
                scores[key] = [0.0] * ref.group.size if noise else \
                    self.score_group(ref.group, None if features is None else features[first:first + ref.group.size])
            out.append(scores[key][ref.index])
        return out


class EmpoReward(ClusterReward):
    name = "empo"

    def __init__(self, num_generations: int, no_answer_reward: float = 0.0, clusterer=None,
                 min_majority_share: float = 0.0):
        super().__init__(num_generations, clusterer=clusterer, min_majority_share=min_majority_share)
        self.no_answer_reward = no_answer_reward

    def score_group(self, group, features=None):
        return [self.no_answer_reward if a is None else group.share(i) for i, a in enumerate(group.answers)]


class MajorityVoteReward(ClusterReward):
    name = "majority_vote"

    def score_group(self, group, features=None):
        return [float(group.in_largest_cluster(i)) for i in range(group.size)]


class FormatReward(GroupedReward):
    name = "format"

    def __call__(self, prompts, completions, **kwargs):
        return [float(extract_answer(completion_text(c)) is not None) for c in completions]


class RandomReward(GroupedReward):
    """Bernoulli(p) per completion of the global batch, from a generator keyed by (seed, training step, call within the
    step): a resumed run draws what the uninterrupted one drew (outside a trainer: by call count), and a batch split
    over processes draws what one process would (each takes its slice). ``seed``: the run's ``seed`` unless the
    recipe's ``reward_options`` set one."""

    name = "random"
    order_dependent = True  # a draw belongs to a position of the batch, whatever completion sits there

    def __init__(self, num_generations: int, seed: int = 0, p: float = 0.5):
        super().__init__(num_generations)
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"reward 'random': p must be in [0, 1], got {p}")
        self.seed, self.p, self._calls = seed, p, 0
        self._step: int | None = None

    def __call__(self, prompts, completions, trainer_state=None, **kwargs):
        step = None if trainer_state is None else trainer_state.global_step
        if step != self._step:  # a new step (or a resumed run): count calls from 0 within it
            self._step, self._calls = step, 0
        # the 0 where the process rank was: one process draws as it always did
        key = [self.seed, 0, self._calls] if step is None else [self.seed, 0, step, self._calls]
        self._calls += 1
        counts, rank = gather_list([len(completions)])  # this process's slice of the global batch
        start = sum(counts[:rank])
        draws = np.random.default_rng(key).random(sum(counts))[start:start + len(completions)]
        return [float(x) for x in (draws < self.p)]


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
    """Intuitor's self-certainty: the mean over completion tokens of KL(uniform || p_policy(. | prefix)), read from the
    trainer's ``self_certainty`` token statistic (0 for an empty completion)."""

    name = "self_certainty"
    token_statistics = ("self_certainty",)

    def __call__(self, prompts, completions, token_stats=None, **kwargs):
        if token_stats is None:
            raise RuntimeError("reward 'self_certainty' reads the policy's token statistics: it runs inside "
                               "EmpoTrainer (or empo.testing, which supplies stand-ins)")
        return [float(s.self_certainty.mean()) if len(s.self_certainty) else 0.0 for s in token_stats]


#: The built-in rewards by name (:mod:`empo.rewards.registry` finds these, entry points and import paths).
BUILTIN: dict[str, type[GroupedReward]] = {
    cls.name: cls for cls in (EmpoReward, MajorityVoteReward, GoldAccuracyReward, FormatReward, RandomReward,
                              SelfCertaintyReward)
}
