"""The state EmpoTrainer carries between TRL's hooks, made explicit: what one generation batch carries from the hook
that makes it to the hooks that read it (:class:`GenerationBatch`), and the keep/skip decision of each optimizer step
(:class:`StepGate`). Each fails loudly when a hook reads state that belongs to another generation batch or step,
instead of silently using it.

The protocol (one generation batch; dynamic sampling runs it once per round):

1. ``_generate`` (TRL's sampling) opens generation ``n``: its prompt and completion ids.
2. ``_calculate_rewards`` scores generation ``n`` -- the same completion ids, or it fails: its groups (the one
   clustering), the rewards' token statistics (taken once), the gathered rewards.
3. ``_generate_and_score_completions``, after TRL's part, reads generation ``n`` -- the one its own TRL call
   opened, or it fails -- for the filter, the metrics and the sample log.
4. every training micro-step adds its kept tokens to the :class:`StepGate`; the optimizer's ``step`` asks the gate
   once per optimizer step (a collective: every process reaches it together) whether any process kept a token.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class BatchStateError(RuntimeError):
    """A hook read state of another generation batch (a bug, or a TRL whose hook order changed)."""


@dataclass
class GenerationBatch:
    """One generation's state, opened by ``_generate`` and filled by ``_calculate_rewards``."""

    serial: int                 # the trainer's count of generations: which one this is
    prompt_ids: list
    completion_ids: list
    groups: object = None       # empo.clustering.groups.BatchGroups, once scored
    rewards: object = None      # the gathered rewards (tensor: completions x reward functions), once scored
    token_stats_taken: bool = field(default=False, repr=False)

    def take_ids(self) -> tuple[list, list]:
        """The prompt and completion ids, once: the token statistics are computed once per generation."""
        if self.token_stats_taken:
            raise BatchStateError(f"generation {self.serial}: its token statistics were already computed")
        self.token_stats_taken = True
        return self.prompt_ids, self.completion_ids

    @property
    def scored(self) -> bool:
        return self.groups is not None and self.rewards is not None


class GenerationLedger:
    """Opens each generation and hands it to the hooks that may read it."""

    def __init__(self):
        self.serial = 0
        self.current: GenerationBatch | None = None

    def open(self, prompt_ids: list, completion_ids: list) -> GenerationBatch:
        self.serial += 1
        self.current = GenerationBatch(self.serial, prompt_ids, completion_ids)
        return self.current

    def to_score(self, completion_ids: list) -> GenerationBatch:
        """The generation ``_calculate_rewards`` scores: the open one, for these completions, not yet scored."""
        batch = self.current
        if batch is None or completion_ids is not batch.completion_ids:
            raise BatchStateError("_calculate_rewards: these completions are not those of the last generation "
                                  f"({'none yet' if batch is None else batch.serial})")
        if batch.scored:
            raise BatchStateError(f"_calculate_rewards: generation {batch.serial} was scored already")
        return batch

    def scored(self, serial: int) -> GenerationBatch:
        """Generation ``serial``, scored (what ``_generate_and_score_completions`` reads after TRL's part)."""
        batch = self.current
        if batch is None or batch.serial != serial or not batch.scored:
            found = "none" if batch is None else f"generation {batch.serial}" + ("" if batch.scored else ", unscored")
            raise BatchStateError(f"expected generation {serial}, scored; found {found}")
        return batch


class StepGate:
    """The optimizer step's keep/skip decision: skipped when no process kept a token in the whole accumulation window,
    decided once per optimizer step (ZeRO calls the torch optimizer's ``step`` once per parameter group) and
    counted. Before the first training micro-step every ``step`` runs: torch.distributed.checkpoint fills a fresh
    optimizer's state with a zero-gradient, lr=0 step before loading one (accelerate's FSDP2 resume)."""

    def __init__(self):
        self.window_tokens = 0
        self.decision: bool | None = True  # None: a micro-step ran since the last decision
        self.skipped = 0  # optimizer steps of the run skipped so far (restored on resume: empo_trainer_state.json)

    def micro_step(self, kept_tokens: int) -> None:
        self.window_tokens += kept_tokens
        self.decision = None

    def allows_step(self, reduce_sum) -> tuple[bool, bool]:
        """(whether this optimizer step moves weights, whether this call decided it). ``reduce_sum``: the collective
        sum over processes of a float (every process reaches the deciding call together)."""
        if self.decision is not None:
            return self.decision, False
        self.decision = reduce_sum(float(self.window_tokens)) > 0
        self.window_tokens = 0
        if not self.decision:
            self.skipped += 1
        return self.decision, True
