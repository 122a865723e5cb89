"""Run under `torchrun --nproc_per_node N`: score one scripted generation batch with EmpoTrainer and write the
gathered rewards, entropies and keep mask (rank 0) to the JSON file given as argv[1]. With per-device batch 6
and G=4 on 2 processes, the second question's group is split across the two processes."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datasets  # noqa: E402
from scripted import SCRIPT, ScriptedTrainer  # noqa: E402
from trl import GRPOConfig  # noqa: E402

from empo.configs import EmpoArguments  # noqa: E402
from empo.distributed import exit_worker, gather_list, world  # noqa: E402
from empo.model import load_model, load_tokenizer  # noqa: E402
from empo.prompts import PRESETS, build_messages  # noqa: E402
from empo.rewards import build_reward  # noqa: E402

QUESTIONS = [list(SCRIPT)[i] for i in (1, 0, 2)]  # kept, dropped, kept: 12 completions


def main(out_path: str, tiny: str, per_device: int) -> None:
    g = 4
    args = GRPOConfig(output_dir=str(Path(out_path).parent / "dist_out"), num_generations=g,
                      per_device_train_batch_size=per_device, max_completion_length=16, max_steps=1, bf16=False,
                      gradient_checkpointing=False, use_cpu=True, report_to="none", save_strategy="no", seed=0)
    ds = datasets.Dataset.from_list([{"id": str(i), "prompt": build_messages(q, PRESETS["qwen-math"]), "answer": "5"}
                                     for i, q in enumerate(QUESTIONS)])
    trainer = ScriptedTrainer(model=load_model(tiny),
                              reward_funcs=[build_reward("empo", g), build_reward("majority_vote", g)],
                              args=args, train_dataset=ds, processing_class=load_tokenizer(tiny),
                              empo_args=EmpoArguments())
    trainer.model.train()
    rank, size = world()
    rows = [dict(ds[i]) for i in range(len(QUESTIONS)) for _ in range(g)]
    local = rows[rank * per_device:(rank + 1) * per_device]
    out = trainer._generate_and_score_completions(local)
    keep, _ = gather_list((out["completion_mask"].sum(dim=1) > 0).tolist())
    advantages, _ = gather_list(out["advantages"].tolist())
    if rank == 0:
        Path(out_path).write_text(json.dumps({
            "world_size": size,
            "rewards": trainer.generations.current.rewards.tolist(),
            "keep": keep,
            "advantages": advantages,
            "entropy_mean": trainer._metrics["train"]["empo/entropy_mean"][-1],
            "kept_fraction": trainer._metrics["train"]["empo/kept_fraction"][-1],
            "num_items_in_batch": out["num_items_in_batch"].item(),
        }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    exit_worker(0)  # as empo.train ends: no abort in interpreter teardown
