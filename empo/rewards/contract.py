"""The reward contract: what a reward is called with, what it returns, and what it declares about itself.

A reward is a callable in TRL's contract, called once per generation batch on every process with this process's
slice of the batch (TRL's layout: a question's G completions are consecutive and may span processes)::

    reward(prompts=[...], completions=[...], completion_ids=[...], **columns_and_context) -> list[float | None]

Keyword arguments (one entry per completion where a list):

- ``prompts``, ``completions``: TRL's (plain strings, or message lists in conversational mode; see
  :func:`completion_text`); ``completion_ids``: the sampled token ids.
- the dataset's columns: ``id``, ``problem`` (free-form runs: the bare question) and the **gold column**
  ``answer`` (:data:`GOLD_COLUMNS`). A label-free reward is called *without* the gold columns: the trainer removes
  them before the call, so a label-free study cannot read gold even by accident. A reward that needs them declares
  ``label_free = False`` (the supervised baseline ``gold_accuracy`` does) and receives them.
- ``empo_group``: one :class:`empo.clustering.groups.GroupRef` per completion -- the group view, the trainer's one
  semantic clustering of the batch (answers, clusters, shares, entropy, majority), global over processes.
- ``token_stats``: one :class:`TokenStats` per completion, present when some reward of the run declares
  ``token_statistics`` (below): TRL's own per-token values of the policy that sampled the batch.
- ``trainer_state``: TRL's ``TrainerState`` (``global_step``: key any randomness on it, so a resumed run draws
  what the uninterrupted one drew); ``log_metric(name, value)``: **the one call that logs a reward's own scalar
  metric** -- averaged over processes and the logging step, it reaches ``metrics.jsonl`` beside TRL's and empo's;
  ``log_extra(column, values)``: a per-completion column for TRL's completions table.

It returns one float per completion of the call, or ``None`` where it has no opinion (TRL then leaves that
completion out of the group's baseline; a completion every reward leaves out gets advantage 0). A reward must
accept and ignore keywords it does not use (``**kwargs``).

What a reward declares, as attributes of its function or class (:func:`reward` sets them on a function):

- ``label_free`` (default True): whether it may be called without gold.
- ``order_dependent`` (default False): its scores depend on where a completion sits in the batch (the ``random``
  control does, by design); the test kit (:mod:`empo.rewards.kit`) then skips its permutation properties.
- ``token_statistics`` (default none): which of :data:`TOKEN_STATISTICS` it reads from ``token_stats``.

A group reward (a completion's score depends on the other completions of its question) reads ``empo_group``, or,
for per-completion inputs of its own across a group that spans processes, gathers them with
:func:`empo.distributed.gather_list` -- every process calls every reward, in the same order, so a collective is safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The columns that hold gold answers: never passed to a label-free reward.
GOLD_COLUMNS = ("answer",)

#: Per-token statistics a reward may ask for (``token_statistics``), computed once per generation batch by the trainer
#: from the policy that sampled it, at TRL's sampling temperature:
#: ``logps`` (log-probability of each sampled token) and ``entropies`` (entropy of the next-token distribution) are
#: TRL's own values (``GRPOTrainer._get_per_token_logps_and_entropies``, the function its loss uses);
#: ``self_certainty`` is KL(uniform || p) at each position (Intuitor), which needs every log-probability of the
#: vocabulary, so it comes from a pass of empo's own over the same ids (TRL's head returns only the two above).
TOKEN_STATISTICS = ("logps", "entropies", "self_certainty")

#: Keywords of the call that are not dataset columns (what the trainer and TRL add).
CALL_KEYWORDS = ("prompts", "completions", "completion_ids", "empo_group", "token_stats", "trainer_state",
                 "log_metric", "log_extra", "environments")


@dataclass(frozen=True)
class TokenStats:
    """One completion's per-token statistics (1-D float tensors of its length; only those some reward asked for)."""

    logps: Any = None
    entropies: Any = None
    self_certainty: Any = None


@dataclass(frozen=True)
class Traits:
    """What a reward declares about itself (module docstring)."""

    label_free: bool = True
    order_dependent: bool = False
    token_statistics: tuple[str, ...] = ()


def traits(target: Any) -> Traits:
    """The declared traits of a reward function, class or instance (defaults where it declares nothing)."""
    if isinstance(target, GoldGuard):
        target = target.reward
    stats = tuple(getattr(target, "token_statistics", ()) or ())
    unknown = [s for s in stats if s not in TOKEN_STATISTICS]
    if unknown:
        from empo.errors import ConfigError

        raise ConfigError(f"reward {_name(target)}: token_statistics {unknown} are not among {list(TOKEN_STATISTICS)}")
    return Traits(label_free=bool(getattr(target, "label_free", True)),
                  order_dependent=bool(getattr(target, "order_dependent", False)), token_statistics=stats)


def reward(label_free: bool = True, order_dependent: bool = False, token_statistics: tuple[str, ...] = ()):
    """Declare a reward function's traits::

        @reward(token_statistics=("entropies",))
        def confident(prompts, completions, token_stats, **kwargs):
            return [-float(s.entropies.mean()) if len(s.entropies) else None for s in token_stats]
    """
    def declare(func: Callable) -> Callable:
        func.label_free, func.order_dependent = label_free, order_dependent
        func.token_statistics = tuple(token_statistics)
        return func
    return declare


class GoldGuard:
    """A reward as the trainer calls it: a label-free reward's call loses the gold columns (module docstring)."""

    def __init__(self, reward: Callable):
        self.reward = reward
        self.label_free = traits(reward).label_free
        self.__name__ = getattr(reward, "__name__", type(reward).__name__)  # TRL names reward columns after it

    def __call__(self, *args, **kwargs):
        return self.reward(*args, **self.visible(kwargs))

    def visible(self, kwargs: dict) -> dict:
        """The call's keywords this reward may see: all of them, less the gold columns for a label-free one."""
        return {k: v for k, v in kwargs.items() if k not in GOLD_COLUMNS} if self.label_free else kwargs

    def __getattr__(self, name):  # the reward's own attributes (num_generations, clusterer, ...)
        if name == "reward":
            raise AttributeError(name)
        return getattr(self.reward, name)


class AsyncGoldGuard(GoldGuard):
    """:class:`GoldGuard` for a coroutine reward (TRL awaits those concurrently)."""

    async def __call__(self, *args, **kwargs):
        return await self.reward(*args, **self.visible(kwargs))


def guard(reward: Any) -> Any:
    """``reward`` as the trainer calls it (models and hub ids, which TRL scores itself, unchanged)."""
    from trl.trainer.utils import is_async_callable

    if isinstance(reward, (str, GoldGuard)) or not callable(reward) or _is_module(reward):
        return reward
    return AsyncGoldGuard(reward) if is_async_callable(reward) else GoldGuard(reward)


def _is_module(obj) -> bool:
    try:
        import torch

        return isinstance(obj, torch.nn.Module)
    except ImportError:  # pragma: no cover - torch is a dependency
        return False


def _name(target) -> str:
    return f"'{getattr(target, '__name__', None) or getattr(target, 'name', None) or type(target).__name__}'"


def completion_text(completion: Any) -> str:
    """TRL passes plain strings, or message lists in conversational mode (the last turn is the answer)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    raise TypeError(f"unsupported completion type {type(completion).__name__}")


def prompt_text(prompt: Any) -> str:
    """The question as the prompt shows it: a plain string, or the last user turn of a message list."""
    if isinstance(prompt, str):
        return prompt
    users = [m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    return str(users[-1] if users else "")
