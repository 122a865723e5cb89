"""Run under `torchrun --nproc_per_node 2`: one training step per loss type in argv[5] (comma-separated) on the
scripted questions given as argv[3] (comma-separated SCRIPT indices, G=4 completions each, argv[4] rows per
process), LoRA on the tiny model at argv[2]; rank 0 writes {loss_type: {LoRA parameter: gradient after DDP's
all-reduce}} to argv[1]."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from scripted import SCRIPT, lora_step_gradients  # noqa: E402

from empo.distributed import exit_worker  # noqa: E402


def main(out_path: str, tiny: str, question_indices: str, per_device: int, loss_types: str) -> None:
    torch.set_num_threads(1)
    questions = [list(SCRIPT)[int(i)] for i in question_indices.split(",")]
    results = {}
    for loss_type in loss_types.split(","):
        grads, _ = lora_step_gradients(Path(out_path).parent / f"dist_{loss_type}", tiny, questions, loss_type,
                                       per_device=per_device)
        results[loss_type] = {k: v.tolist() for k, v in grads.items()}
    if torch.distributed.get_rank() == 0:
        Path(out_path).write_text(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    exit_worker(0)  # as empo.train ends: no abort in interpreter teardown
