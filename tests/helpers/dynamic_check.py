"""Run under `torchrun --nproc_per_node 2` (or plain python): one optimizer step with dynamic sampling on the scripted
questions argv[3] (comma-separated SCRIPT indices, in dataset order), argv[4] rows per process and micro-step,
argv[5] gradient accumulation steps, LoRA on the tiny model at argv[2]. Rank 0 writes {"grads": {LoRA parameter:
gradient after DDP's all-reduce}, "trained": [question ids of the groups that trained], "metrics": {...}} to
argv[1]."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from scripted import SCRIPT, lora_step_gradients  # noqa: E402

from empo.distributed import exit_worker  # noqa: E402


def main(out_path: str, tiny: str, question_indices: str, per_device: int, accumulation: int) -> None:
    torch.set_num_threads(1)
    questions = [list(SCRIPT)[int(i)] for i in question_indices.split(",")]
    run = Path(out_path).parent / "dynamic"
    grads, trainer = lora_step_gradients(run, tiny, questions, "dapo", per_device=per_device,
                                         gradient_accumulation_steps=accumulation, dynamic_sampling=True,
                                         max_sampling_rounds=8)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    if rank == 0:
        rows = [json.loads(line) for line in (run / "out" / "samples.jsonl").read_text().splitlines()]
        metrics = {k: v for k, v in trainer.state.log_history[0].items() if k.startswith("empo/")}
        Path(out_path).write_text(json.dumps({"grads": {k: v.tolist() for k, v in grads.items()},
                                              "trained": [r["id"] for r in rows if r["kept"]], "metrics": metrics}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    exit_worker(0)  # as empo.train ends: no abort in interpreter teardown
