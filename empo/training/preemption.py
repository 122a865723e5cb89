"""Preemption: SIGTERM (what Slurm sends at preemption and before the time limit) or SIGUSR1 (an early warning)
saves a checkpoint at the end of the current optimizer step and ends the run with a status to requeue on.

* The handler only records the signal (a second one exits at once, status 128 + signal: the user insists).
* At the end of every optimizer step every process contributes its record to one all-reduce (max), so all processes
  agree on the step to save even when the signal reached only some of them (torchrun forwards SIGTERM to every
  worker; Slurm may signal them directly too; the handler is idempotent). Then the trainer saves that step's
  checkpoint (complete or not at all: :mod:`empo.training.checkpoints`) and stops.
* ``empo train`` then writes ``<output_dir>/preempted.json`` (signal, step, checkpoint), prints the end-of-run
  summary headed "preempted", and exits with :data:`REQUEUE_EXIT` (75, EX_TEMPFAIL: try again). Under torchrun or
  ``accelerate launch`` the launcher reports its own failure status, so a scheduler script requeues on the file
  (``empo launch --slurm`` writes such a script). The same command resumes from the saved step.
* A signal that arrives before training starts ends the run at once with the same status (nothing new to save).

What a preemption costs: the current optimizer step is finished, not lost; a SIGKILL (a node lost, a grace period
too short) costs at most the steps since the last complete checkpoint (``save_steps``).
"""

from __future__ import annotations

import os
import signal
import sys

from transformers import TrainerCallback

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
REQUEUE_EXIT = 75  # EX_TEMPFAIL: a temporary failure, try again
RECORD = "preempted.json"


class Preemption:
    """The signal record of this process."""

    def __init__(self):
        self.signal: int | None = None

    def install(self) -> Preemption:
        for sig in SIGNALS:
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            os._exit(128 + signum)  # a second signal: out now, no save (the last complete checkpoint stands)
        self.signal = signum
        print(f"[empo] {signal.Signals(signum).name} received: saving a checkpoint at the end of this step, then "
              f"exiting with status {REQUEUE_EXIT} (a second signal exits at once)", file=sys.stderr, flush=True)


class PreemptionCallback(TrainerCallback):
    """At each optimizer step's end: did any process get a signal? Then save this step and stop, on every process."""

    def __init__(self, preemption: Preemption):
        self.preemption = preemption
        self.signal: int | None = None  # the agreed signal, once the run stops for it
        self.step: int | None = None

    def _agreed(self, args) -> int:
        import torch
        import torch.distributed as dist

        local = float(self.preemption.signal or 0)
        if not (dist.is_available() and dist.is_initialized()):
            return int(local)
        flag = torch.tensor([local], device=args.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())

    def on_step_end(self, args, state, control, **kwargs):
        if self.signal is not None:
            return
        agreed = self._agreed(args)
        if agreed:
            self.signal, self.step = agreed, state.global_step
            control.should_save = True
            control.should_training_stop = True
            control.should_evaluate = False

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.signal is not None:
            control.should_save = False  # saved at the step already; an epoch save would write it again
