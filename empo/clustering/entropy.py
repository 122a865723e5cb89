"""Semantic entropy of one group's clustering and the EMPO keep/drop rule.

H = -sum_c p(c) log p(c) with p(c) = |c|/G (natural log), 0 <= H <= log G. A group trains only when
delta_low < H < delta_high: H = 0 (unanimous) carries no signal and rewards over-confidence; H near log G
(every answer differs) is noise. Defaults: delta_low = 0 and delta_high = log G, i.e. drop exactly the
unanimous groups and the all-different groups.
"""

from __future__ import annotations

import math
from collections import Counter

from empo.errors import ConfigError

_EPS = 1e-9  # entropies computed from counts; compare with a tolerance so H == log G is excluded reliably


def semantic_entropy(cluster_ids: list[int]) -> float:
    if not cluster_ids:
        raise ValueError("semantic_entropy of an empty group")
    n = len(cluster_ids)
    return -sum((c / n) * math.log(c / n) for c in Counter(cluster_ids).values()) + 0.0


def keep_group(entropy: float, group_size: int, delta_low: float = 0.0, delta_high: float | None = None) -> bool:
    """True when ``delta_low < entropy < delta_high`` (``delta_high=None`` means log(group_size))."""
    high = math.log(group_size) if delta_high is None else delta_high
    return delta_low + _EPS < entropy < high - _EPS


# How a dropped group is taken out of each TRL 1.16 loss so that the kept groups train exactly as in a batch that
# holds only them (see EmpoTrainer). "sequences": the loss divides by a count of sequences, which still includes the
# dropped rows, so the trainer multiplies the loss by all sequences / kept sequences of the generation batch.
# "tokens": the loss divides by num_items_in_batch, which the trainer recomputes over the kept tokens.
FILTER_NORMALISATION = {
    "grpo": "sequences", "sapo": "sequences", "luspo": "sequences", "dr_grpo": "sequences",
    "dapo": "tokens", "cispo": "tokens", "vespo": "tokens",
}


def check_filter_exact(training_args) -> None:
    """Raise ValueError naming the setting for which the entropy filter could not equal a kept-only batch.

    Those settings normalise per micro-batch (bnpo, the entropy bonus, the entropy quantile mask) or standardise
    advantages over the whole batch (scale_rewards='batch'): the kept-only batch would put the kept completions in
    different micro-batches or standardise them differently, and no rescaling of TRL's loss can undo that.
    """
    loss_type = training_args.loss_type
    if loss_type == "bnpo":
        raise ConfigError("loss_type 'bnpo' cannot be used with entropy_filter: it divides each micro-batch by its "
                         "own token count, so the update depends on how many kept completions share a micro-batch "
                         "and cannot equal a kept-only batch; use 'dapo' (tokens over the whole batch) or 'grpo', "
                         "or set entropy_filter: false")
    if loss_type not in FILTER_NORMALISATION:
        raise ConfigError(f"loss_type '{loss_type}' cannot be used with entropy_filter: the filter knows how to take "
                         f"a dropped group out of {sorted(FILTER_NORMALISATION)} only")
    if training_args.scale_rewards == "batch":
        raise ConfigError("scale_rewards 'batch' cannot be used with entropy_filter: it standardises advantages with "
                         "the std of the whole batch, dropped groups included; use 'group' or 'none'")
    if training_args.entropy_coef != 0.0 or training_args.use_adaptive_entropy:
        raise ConfigError("entropy_coef / use_adaptive_entropy cannot be used with entropy_filter: TRL's entropy "
                         "bonus is a per-micro-batch token mean, which no batch-level rescaling makes equal to a "
                         "kept-only batch")
    if training_args.top_entropy_quantile < 1.0:
        raise ConfigError("top_entropy_quantile < 1 cannot be used with entropy_filter: the quantile is taken per "
                         "micro-batch, so it depends on which kept completions share one")
