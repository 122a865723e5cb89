"""An example of a reward written outside empo (docs/rewards.md walks through it).

``concise_consensus``: the EMPO signal -- the share p(c(i)) of the completion's own answer cluster -- discounted for
completions longer than ``target_tokens``, so agreement is paid for without rewarding rambling:

    r_i = p(c(i)) * min(1, target_tokens / T_i)      (0 for a completion without an answer)

It reads the trainer's group view (``empo_group``: the clusters are empo's, global over processes) and the sampled
ids (``completion_ids``), takes one option (``target_tokens``, set in a recipe's ``reward_options``) and logs one
metric of its own through ``log_metric``. It never reads gold, so it keeps the default ``label_free = True``.

Train with it: ``empo train --config examples/rewards/config_concise_consensus_cpu.yaml``; certify it:
``empo reward check examples/rewards/concise_consensus.py:concise_consensus`` (or the pytest file beside it).
"""

from empo.rewards import reward


@reward()  # label-free, order-independent, no token statistics: the defaults, said out loud
def concise_consensus(prompts, completions, completion_ids, empo_group, target_tokens: int = 32, log_metric=None,
                      **kwargs):
    if target_tokens < 1:
        raise ValueError(f"target_tokens must be >= 1, got {target_tokens}")
    scores, over = [], 0
    for ids, ref in zip(completion_ids, empo_group):
        length = max(1, len(ids))
        over += length > target_tokens
        if ref.group.answers[ref.index] is None:
            scores.append(0.0)
        else:
            scores.append(ref.group.share(ref.index) * min(1.0, target_tokens / length))
    if log_metric is not None and completions:
        log_metric("concise_consensus/over_target", over / len(completions))
    return scores
