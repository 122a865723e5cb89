"""How the entropy filter takes a dropped group out of each TRL loss, and the settings under which it cannot.

The filter's guarantee (``EmpoTrainer``'s docstring): training on a batch in which some groups are filtered gives the
same update as training on the batch that holds only the kept groups. A dropped group's rows and advantages are
zeroed; what remains is each loss's denominator, corrected per :data:`FILTER_NORMALISATION`. Settings whose
normaliser no batch-level correction can fix are refused by :func:`check_filter_exact` (through
:func:`empo.recipe.validate`, before any model loads)."""

from __future__ import annotations

from empo.errors import ConfigError

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
    advantages over the whole batch (scale_rewards='batch', multi_objective_aggregation='normalize_then_sum'): the
    kept-only batch would put the kept completions in different micro-batches or standardise them differently, and no
    rescaling of TRL's loss can undo that.
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
    if training_args.multi_objective_aggregation == "normalize_then_sum":
        raise ConfigError("multi_objective_aggregation 'normalize_then_sum' cannot be used with entropy_filter: it "
                          "standardises the summed advantages over the whole batch, dropped groups included; use "
                          "'sum_then_normalize'")
    if training_args.entropy_coef != 0.0 or training_args.use_adaptive_entropy:
        raise ConfigError("entropy_coef / use_adaptive_entropy cannot be used with entropy_filter: TRL's entropy "
                         "bonus is a per-micro-batch token mean, which no batch-level rescaling makes equal to a "
                         "kept-only batch")
    if training_args.top_entropy_quantile < 1.0:
        raise ConfigError("top_entropy_quantile < 1 cannot be used with entropy_filter: the quantile is taken per "
                         "micro-batch, so it depends on which kept completions share one")
