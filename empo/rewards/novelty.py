"""EVOL-RL's majority-gated novelty reward (Zhou et al., "Evolving Language Models without Labels: Majority Drives
Selection, Novelty Promotes Variation", arXiv 2509.15194; official code YujunZhou/EVOL-RL,
``verl/verl/workers/reward_manager/semantic_novelty.py``).

As implemented, for one question's group of G completions:

1. Majority: a completion whose answer cluster is a largest answered one (the trainer's group view: semantic
   clusters, every tied largest cluster counting -- the official code takes one voted label). A completion without
   an answer gets -1 and takes no part in the similarities.
2. Each answered completion's whole text is embedded (``embedding_model``: the shipped all-MiniLM-L6-v2 by default;
   the official code embeds the text after ``</think>`` with Qwen3-Embedding-4B); s_ij = cos(e_i, e_j) clipped to
   [0, 1].
3. Novelty u_i = 1 - (0.5 * mean_j s_ij + 0.5 * max_j s_ij): the mean over the other members of i's own class
   (majority or minority; over all other answered completions when i is alone in its class), the max over all other
   answered completions.
4. Within each class, u is min-max normalised to ũ (a lone member: ũ = 1; all equal: ũ = 0.5), and
   r = 0.5 + 0.5 ũ for the majority (in [0.5, 1]), r = -1 + 0.5 ũ for the minority (in [-1, -0.5]).

So selection comes from the majority and variation from novelty within it. The official recipe adds an entropy bonus
(0.003) and a higher upper clip (0.28): in empo those are GRPOConfig's ``epsilon_high``; TRL's entropy bonus is
refused with the entropy filter (it normalises per micro-batch), so run this reward with ``entropy_filter: false``
if you want the bonus. Label-free; a group reward (embeddings of a group that spans processes are gathered).
"""

from __future__ import annotations

from functools import lru_cache

from empo.rewards.builtin import ClusterReward
from empo.rewards.contract import completion_text


@lru_cache(maxsize=4)
def _embedder(model: str, device: str, batch_size: int, max_length: int):
    from empo.clustering.judges.embedding import EmbeddingJudge

    return EmbeddingJudge(model, batch_size=batch_size, device=device, max_length=max_length)


class NoveltyReward(ClusterReward):
    name = "novelty"
    paper = "EVOL-RL, arXiv 2509.15194"

    def __init__(self, num_generations: int, clusterer=None, min_majority_share: float = 0.0,
                 embedding_model: str = "all-minilm-l6-v2", device: str = "cpu", batch_size: int = 32,
                 max_length: int = 256):
        super().__init__(num_generations, clusterer=clusterer, min_majority_share=min_majority_share)
        self.embedding_model, self.device, self.batch_size, self.max_length = (embedding_model, device, batch_size,
                                                                               max_length)

    def completion_features(self, prompts, completions, kwargs):
        texts = [completion_text(c) for c in completions]
        if not texts:
            return []
        embedder = _embedder(self.embedding_model, self.device, self.batch_size, self.max_length)  # loads once
        return [row.tolist() for row in embedder.embed([t if t.strip() else " " for t in texts])]

    def score_group(self, group, features=None):
        import torch

        valid = [i for i, a in enumerate(group.answers) if a is not None]
        majority = {i for i in valid if group.in_largest_cluster(i)}
        out: list[float] = [-1.0] * group.size
        if not valid:
            return out
        e = torch.tensor([features[i] for i in valid])
        sim = (e @ e.T).clamp(0.0, 1.0)
        where = {i: k for k, i in enumerate(valid)}
        novelty = {}
        for i in valid:
            others = [where[j] for j in valid if j != i]
            if not others:
                novelty[i] = 1.0
                continue
            own = [where[j] for j in valid if j != i and (j in majority) == (i in majority)] or others
            row = sim[where[i]]
            novelty[i] = 1.0 - (0.5 * float(row[own].mean()) + 0.5 * float(row[others].max()))
        for members, base in ((sorted(majority), 0.5), ([i for i in valid if i not in majority], -1.0)):
            if not members:
                continue
            values = [novelty[i] for i in members]
            low, high = min(values), max(values)
            for i in members:
                scaled = 1.0 if len(members) == 1 else 0.5 if high - low < 1e-12 else (novelty[i] - low) / (high - low)
                out[i] = base + 0.5 * scaled
        return out
