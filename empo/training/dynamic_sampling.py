"""Dynamic sampling (DAPO's, by semantic entropy): the mechanics the trainer uses to fill a generation batch with
kept groups only.

A generation round is TRL's own ``_generate_and_score_completions`` on a generation batch of questions: the first
round takes the dataloader's batch; every further round takes a fresh generation batch of questions from a
:class:`RefillSampler` (a seeded stream over the training set, its position saved with each checkpoint, so a
resumed run draws the same questions). The trainer keeps the groups its criterion accepts, round after round, until
it holds a full generation batch of them or ``max_sampling_rounds`` is spent (each round after the first a whole
generation batch of questions, or, with ``sampling_round_size: shortfall``, as many as :class:`RoundSizer` says the
shortfall needs); the rows of the chosen groups are then
assembled into one generation batch in TRL's layout (:func:`assemble`), which TRL splits into micro-batches as
usual. Here live the row operations: gathering a round's rows from every process, cutting them into groups,
masking filler groups, and concatenating groups generated in different rounds (padded to a common width).
"""

from __future__ import annotations

import math

import torch

#: Per-row tensors of TRL 1.16's generation output: (side padded, padding value; "pad" = the tokenizer's pad id).
#: A row tensor without a width (``advantages``, a sequence-level importance ratio) needs no padding.
ROW_PADDING = {
    "prompt_ids": ("left", "pad"), "prompt_mask": ("left", 0),
    "completion_ids": ("right", "pad"), "completion_mask": ("right", 0),
    "old_per_token_logps": ("right", 0.0), "ref_per_token_logps": ("right", 0.0),
    "sampling_per_token_logps": ("right", 0.0), "importance_sampling_ratio": ("right", 1.0),
    "tool_mask": ("right", 1), "advantages": (None, None),
}
#: Scalars of the generation output that describe the whole batch; recomputed for the assembled batch.
BATCH_SCALARS = ("num_items_in_batch", "empo_loss_scale")


class RefillSampler:
    """Question indices for the rounds after the first: one seeded permutation of the training set after another.

    Every process draws the same indices (same seed, same cursor), so the processes build the same global round;
    ``state_dict`` (saved with each checkpoint) makes a resumed run draw what the uninterrupted one would have.
    """

    def __init__(self, num_rows: int, seed: int):
        if num_rows < 1:
            raise ValueError("dynamic sampling needs a non-empty training set")
        self.num_rows, self.seed = num_rows, seed
        self.epoch, self.position = 0, 0
        self._order = self._permutation()

    def _permutation(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.num_rows, generator=generator).tolist()

    def take(self, count: int) -> list[int]:
        out = []
        while len(out) < count:
            if self.position == self.num_rows:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._permutation()
            out.append(self._order[self.position])
            self.position += 1
        return out

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
        self._order = self._permutation()


class RoundSizer:
    """The questions of a generation round after the first.

    ``generation_batch``: a whole generation batch (``need`` questions), as DAPO. ``shortfall``: the groups still
    missing divided by the run's running acceptance rate, ``(accepted + 1) / (sampled + 2)`` over every round so far
    (Laplace's rule: 1/2 before the first round; saved with each checkpoint, so a resumed run sizes its rounds as the
    uninterrupted one), rounded up; at least the groups missing, at most ``cap`` generation batches, and a whole
    number of rows per process. Sizing to the shortfall cuts the rounds a step needs and the steps left short after
    ``max_sampling_rounds``; it cannot cut the completions generated per *trained* group below ``1 / acceptance
    rate`` groups (no sampler that trains on-policy accepted groups only can), and it drops more surplus groups.
    """

    def __init__(self, mode: str, need: int, group_size: int, num_processes: int, cap: float = 2.0):
        self.mode, self.need, self.group_size, self.num_processes = mode, need, group_size, num_processes
        self.cap = max(need, int(cap * need))
        self.accepted, self.sampled = 0, 0

    @property
    def acceptance_rate(self) -> float:
        return (self.accepted + 1) / (self.sampled + 2)

    def size(self, shortfall: int) -> int:
        if self.mode == "generation_batch":
            return self.need
        questions = min(self.cap, max(shortfall, math.ceil(shortfall / self.acceptance_rate - 1e-9)))
        while (questions * self.group_size) % self.num_processes:  # every process generates the same number of rows
            questions += 1
        return questions

    def update(self, accepted: int, sampled: int) -> None:
        self.accepted += accepted
        self.sampled += sampled

    def state_dict(self) -> dict:
        return {"accepted": self.accepted, "sampled": self.sampled}

    def load_state_dict(self, state: dict) -> None:
        self.accepted, self.sampled = state["accepted"], state["sampled"]


def local_rows(dataset, indices: list[int], group_size: int, process_index: int, num_processes: int) -> list[dict]:
    """This process's share of a generation batch of the questions ``indices`` (each repeated ``group_size`` times),
    laid out as TRL's RepeatSampler does: the global batch in order, cut into equal contiguous slices by rank."""
    rows = [dataset[i] for i in indices for _ in range(group_size)]
    per_process = len(rows) // num_processes
    return rows[process_index * per_process:(process_index + 1) * per_process]


def gather_rows(accelerator, output: dict, pad_token_id: int) -> dict[str, torch.Tensor]:
    """The per-row tensors of every process's generation output, concatenated in rank order (the global batch)."""
    rows = {}
    for key, value in output.items():
        if key in BATCH_SCALARS:
            continue
        if key not in ROW_PADDING:
            raise NotImplementedError(f"dynamic sampling does not know how to carry '{key}' of TRL's generation output "
                                      "(multimodal or tool inputs); turn dynamic_sampling off")
        side, fill = ROW_PADDING[key]
        if side is not None and value.dim() > 1:
            value = accelerator.pad_across_processes(value, dim=1, pad_index=pad_token_id if fill == "pad" else fill,
                                                     pad_first=side == "left")
        rows[key] = accelerator.gather(value)
    return rows


def group_rows(rows: dict[str, torch.Tensor], group: int, group_size: int) -> dict[str, torch.Tensor]:
    """The rows of the ``group``-th group of a global batch."""
    return {k: v[group * group_size:(group + 1) * group_size] for k, v in rows.items()}


def masked(rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A filler group: real rows (every forward pass stays well formed) that the loss does not see."""
    out = dict(rows)
    out["completion_mask"] = torch.zeros_like(rows["completion_mask"])
    out["advantages"] = torch.zeros_like(rows["advantages"])
    if "tool_mask" in out:
        out["tool_mask"] = torch.zeros_like(rows["tool_mask"])
    return out


def concatenate(groups: list[dict[str, torch.Tensor]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Groups of different rounds as one batch: each tensor padded to the widest round (prompts on the left,
    completions on the right, as TRL pads them), rows in the given order."""
    out = {}
    for key in groups[0]:
        side, fill = ROW_PADDING[key]
        parts = [g[key] for g in groups]
        if side is not None and parts[0].dim() > 1:
            width = max(p.shape[1] for p in parts)
            value = pad_token_id if fill == "pad" else fill
            parts = [_pad_width(p, width, value, side) for p in parts]
        out[key] = torch.cat(parts)
    return out


def _pad_width(t: torch.Tensor, width: int, value, side: str) -> torch.Tensor:
    missing = width - t.shape[1]
    if missing == 0:
        return t
    filler = torch.full((t.shape[0], missing, *t.shape[2:]), value, dtype=t.dtype, device=t.device)
    return torch.cat([filler, t] if side == "left" else [t, filler], dim=1)


def process_slice(rows: dict[str, torch.Tensor], process_index: int, num_processes: int) -> dict[str, torch.Tensor]:
    """This process's contiguous share of a global batch (TRL's layout)."""
    n = next(iter(rows.values())).shape[0] // num_processes
    return {k: v[process_index * n:(process_index + 1) * n] for k, v in rows.items()}
