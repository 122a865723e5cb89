"""`python -m empo.train`, killed by itself (SIGKILL, as a node loss or an OOM killer would) at one point of a run:

    EMPO_TEST_KILL_AT=model@2      half of checkpoint-2's adapter weights written
    EMPO_TEST_KILL_AT=optimizer@2  half of checkpoint-2's optimizer state written
    EMPO_TEST_KILL_AT=state@2      half of checkpoint-2's trainer_state.json written
    EMPO_TEST_KILL_AT=marker@2     every file of checkpoint-2 written, its completeness marker not yet
    EMPO_TEST_KILL_AT=step@3       between steps: as optimizer step 3 begins (after checkpoint-2 is complete)

Usage: python tests/helpers/kill_during_save.py <empo train arguments>
"""

import os
import signal
import sys


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _half_then_die(path) -> None:
    """What a kill in the middle of a write leaves: the first half of the file's bytes."""
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    _die()


def install(spec: str) -> None:
    what, _, at = spec.partition("@")
    step = int(at)
    folder = f"checkpoint-{step}"

    if what == "model":
        import safetensors.torch

        save_file = safetensors.torch.save_file

        def save_file_then_die(tensors, filename, *args, **kwargs):
            save_file(tensors, filename, *args, **kwargs)
            if folder in str(filename):
                _half_then_die(filename)

        safetensors.torch.save_file = save_file_then_die
    elif what == "optimizer":
        import torch

        save = torch.save

        def save_then_die(obj, f, *args, **kwargs):
            save(obj, f, *args, **kwargs)
            if isinstance(f, (str, os.PathLike)) and folder in str(f) and str(f).endswith("optimizer.pt"):
                _half_then_die(f)

        torch.save = save_then_die
    elif what == "state":
        from transformers import TrainerState

        save_to_json = TrainerState.save_to_json

        def save_to_json_then_die(self, json_path):
            save_to_json(self, json_path)
            if folder in str(json_path):
                _half_then_die(json_path)

        TrainerState.save_to_json = save_to_json_then_die
    elif what == "marker":
        from empo.training import checkpoints

        mark_complete = checkpoints.mark_complete

        def die_before_marking(path):
            if str(path).endswith(folder):
                _die()
            mark_complete(path)

        checkpoints.mark_complete = die_before_marking
    elif what == "step":
        from empo.training.trainer import EmpoTrainer

        training_step = EmpoTrainer.training_step

        def die_at_step(self, *args, **kwargs):
            if self.state.global_step == step - 1:
                _die()
            return training_step(self, *args, **kwargs)

        EmpoTrainer.training_step = die_at_step
    else:
        raise SystemExit(f"unknown kill point {spec!r}")


if __name__ == "__main__":
    install(os.environ["EMPO_TEST_KILL_AT"])
    from empo.distributed import exit_worker
    from empo.train import main

    exit_worker(main(sys.argv[1:]))  # as empo.train ends: no abort in interpreter teardown
