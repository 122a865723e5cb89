"""SCRL's selective positive and entropy-gated negative pseudo-labels (Yan et al., "What If Consensus Lies?
Selective-Complementary Reinforcement Learning at Test Time", arXiv 2603.19880; official code Jasper-Yan/SCRL,
``verl/verl/trainer/ppo/scrl_utils.py`` and ``verl/verl/utils/reward_score/scrl_math/__init__.py``).

As implemented, for one question's group of G completions, clustered by meaning (the trainer's group view; SCRL
compares normalised answer strings): p_a = |a| / G, the share of answer cluster a among all G (no-answer completions
included in G); H_i = the mean token entropy of completion i (the trainer's ``entropies`` statistic, TRL's values);
Hbar_a = the mean of H_i over a's completions; Hbar = the mean over all G.

- Selective positive label: y+ = the largest answered cluster, if p_top >= ``positive_share`` and
  p_top - p_second > ``positive_margin`` (so never on a tie); otherwise the group has no positive label.
- Entropy-gated negatives: N- = every answered cluster a != y+ with p_a < ``negative_share`` and Hbar_a >= Hbar
  (rare *and* uncertain).
- ``mode: binary`` (the config default): r = +1 for y+, -1 for N-, 0 otherwise. ``mode: continuous`` (the paper's
  run script): r = positive_scale * p_a - entropy_weight * (Hbar_a - Hbar) for y+,
  r = -negative_scale * (negative_share - p_a) - entropy_weight * (Hbar_a - Hbar) for N-, and
  r = -entropy_weight * (Hbar_a - Hbar) otherwise.
- A completion without an answer gets -1 in both modes.

Defaults are the official YAML's (0.5, 0.15, 0.15; binary), which fit G = 8: the run script's 0.375 / 0.125 / 0.125
are for 32-64 votes, where a share below 0.125 exists. Label-free; a group reward (entropies of a group that spans
processes are gathered); permutation-equivariant (no tie is ever broken by position).
"""

from __future__ import annotations

from empo.errors import ConfigError
from empo.rewards.builtin import ClusterReward

MODES = ("binary", "continuous")


class NegativeLabelsReward(ClusterReward):
    name = "negative_labels"
    paper = "SCRL, arXiv 2603.19880"
    token_statistics = ("entropies",)

    def __init__(self, num_generations: int, clusterer=None, min_majority_share: float = 0.0,
                 positive_share: float = 0.5, positive_margin: float = 0.15, negative_share: float = 0.15,
                 mode: str = "binary", positive_scale: float = 1.0, negative_scale: float = 1.0,
                 entropy_weight: float = 0.1):
        super().__init__(num_generations, clusterer=clusterer, min_majority_share=min_majority_share)
        if mode not in MODES:
            raise ConfigError(f"reward 'negative_labels': mode '{mode}' is not one of {list(MODES)}")
        for key, value in (("positive_share", positive_share), ("negative_share", negative_share),
                           ("positive_margin", positive_margin)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"reward 'negative_labels': {key} must be in [0, 1], got {value}")
        self.positive_share, self.positive_margin, self.negative_share = positive_share, positive_margin, negative_share
        self.mode, self.positive_scale, self.negative_scale = mode, positive_scale, negative_scale
        self.entropy_weight = entropy_weight

    def completion_features(self, prompts, completions, kwargs):
        stats = kwargs.get("token_stats")
        if stats is None:
            raise RuntimeError("reward 'negative_labels' reads the policy's token entropies: it runs inside "
                               "EmpoTrainer (or empo.testing, which supplies stand-ins)")
        return [float(s.entropies.float().mean()) if len(s.entropies) else 0.0 for s in stats]

    def score_group(self, group, features=None):
        g = group.size
        answered = {}
        for i, a in enumerate(group.answers):
            if a is not None:
                answered.setdefault(group.cluster_ids[i], []).append(i)
        mean_h = sum(features) / g
        cluster_h = {c: sum(features[i] for i in members) / len(members) for c, members in answered.items()}
        share = {c: len(members) / g for c, members in answered.items()}
        ranked = sorted(share.values(), reverse=True) + [0.0]
        top = ranked[0]
        positive = None
        if answered and top >= self.positive_share and top - ranked[1] > self.positive_margin:
            positive = next(c for c, s in share.items() if s == top)  # unique: the margin excludes a tie
        negatives = {c for c in answered if c != positive and share[c] < self.negative_share and cluster_h[c] >= mean_h}
        out = []
        for i, a in enumerate(group.answers):
            if a is None:
                out.append(-1.0)
                continue
            c = group.cluster_ids[i]
            if self.mode == "binary":
                out.append(1.0 if c == positive else -1.0 if c in negatives else 0.0)
                continue
            shaping = -self.entropy_weight * (cluster_h[c] - mean_h)
            if c == positive:
                out.append(self.positive_scale * share[c] + shaping)
            elif c in negatives:
                out.append(-self.negative_scale * (self.negative_share - share[c]) + shaping)
            else:
                out.append(shaping)
        return out
