"""Rewards broken on purpose, one way each: the test kit (empo.testing) must fail each, naming the property."""

import os
import random

from empo.rewards import reward


def reads_gold(prompts, completions, **kwargs):
    """Declares nothing (so label-free) yet scores against the gold column when one is passed."""
    golds = kwargs.get("answer") or [None] * len(completions)
    return [float(g is not None and str(g) in c) for g, c in zip(golds, completions)]


def order_dependent(prompts, completions, **kwargs):
    """Pays a completion for its place in the batch, not for what it says."""
    return [float(i % 4) for i in range(len(completions))]


def leaks_across_groups(prompts, completions, **kwargs):
    """Every completion gets the mean length of the whole call: one group's completions move another's scores."""
    mean = sum(len(c) for c in completions) / len(completions)
    return [mean] * len(completions)


def unseeded(prompts, completions, **kwargs):
    """Randomness from nowhere: a resumed or repeated run draws otherwise."""
    return [random.random() for _ in completions]


def split_breaks(prompts, completions, **kwargs):
    """Normalises by this process's share of the batch, so 2 processes score unlike 1."""
    return [1.0 / len(completions)] * len(completions)


def crashes_when_launched(prompts, completions, **kwargs):
    """Fine in one process; raises under a launcher (WORLD_SIZE set, as torchrun and accelerate set it)."""
    if os.environ.get("WORLD_SIZE", "1") != "1":
        raise RuntimeError(f"no launched runs, please (WORLD_SIZE={os.environ['WORLD_SIZE']})")
    return [0.0] * len(completions)


def not_finite(prompts, completions, **kwargs):
    return [float("nan")] * len(completions)


def crashes_on_empty(prompts, completions, **kwargs):
    return [float(len(c.split()[-1])) for c in completions]


@reward(label_free=False)
def declared_supervised(prompts, completions, answer, **kwargs):
    """Reads gold and says so: the gold properties do not apply."""
    return [float(str(a) in c) for a, c in zip(answer, completions)]


#: broken reward -> the property the kit must name
BROKEN = {"reads_gold": "gold_untouched", "order_dependent": "group_equivariant",
          "leaks_across_groups": "group_independent", "unseeded": "seeded", "split_breaks": "process_split",
          "not_finite": "scores", "crashes_on_empty": "hostile_input"}
