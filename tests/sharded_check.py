"""Run under `accelerate launch` (or plain python for one process): two optimizer steps of EmpoTrainer with LoRA on
scripted completions -- step 1 keeps both groups, step 2's groups are all filtered -- and write the LoRA weights
and the optimizer state after each step (rank 0) to the JSON file given as argv[1].

    python tests/sharded_check.py OUT.json TINY_MODEL 8
    accelerate launch --config_file cpu_zero2.yaml tests/sharded_check.py OUT.json TINY_MODEL 4
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datasets  # noqa: E402
import torch  # noqa: E402
from peft import LoraConfig  # noqa: E402
from transformers import TrainerCallback  # noqa: E402
from trl import GRPOConfig  # noqa: E402

from empo.configs import EmpoArguments  # noqa: E402
from empo.model import load_model, load_tokenizer  # noqa: E402
from empo.prompts import PRESETS, build_messages  # noqa: E402
from empo.rewards import build_reward  # noqa: E402
from scripted import SCRIPT, ScriptedTrainer  # noqa: E402

KEPT, FILTERED = ["What is 2 + 3?", "What is 4 + 4?"], ["What is 1 + 1?", "What is 9 - 3?"]


def base_optimizer(trainer):
    """The torch optimizer under accelerate's wrapper and DeepSpeed's ZeRO optimizer."""
    opt = trainer.optimizer
    while not isinstance(opt, torch.optim.Optimizer) or hasattr(opt, "optimizer"):
        opt = opt.optimizer
    return opt


def lora_weights(trainer) -> dict[str, list[float]]:
    named = [(n, p) for n, p in trainer.model.named_parameters() if "lora_" in n]
    if trainer.is_deepspeed_enabled and any(hasattr(p, "ds_id") for _, p in named):  # ZeRO-3: partitioned
        import deepspeed

        with deepspeed.zero.GatheredParameters([p for _, p in named]):
            return {n: p.detach().float().flatten().tolist() for n, p in named}
    return {n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().float().flatten().tolist()
            for n, p in named}


def optimizer_state(trainer) -> dict:
    opt = base_optimizer(trainer)
    steps = [float(s["step"]) for s in opt.state.values() if "step" in s]
    moments = sum(float(s["exp_avg"].abs().sum()) for s in opt.state.values() if "exp_avg" in s)
    return {"tensors": len(opt.state), "steps": sorted(set(steps)), "exp_avg_abs_sum": moments}


class Record(TrainerCallback):
    def __init__(self):
        self.trainer, self.after = None, []

    def on_step_end(self, args, state, control, **kwargs):
        self.after.append({"step": state.global_step, "lora": lora_weights(self.trainer),
                           "optimizer": optimizer_state(self.trainer),
                           "skipped": self.trainer._skipped_optimizer_steps})


def main(out_path: str, tiny: str, per_device: int) -> None:
    torch.set_num_threads(1)
    g = 4
    args = GRPOConfig(output_dir=str(Path(out_path).parent / "sharded_out"), num_generations=g,
                      per_device_train_batch_size=per_device, gradient_accumulation_steps=1, max_completion_length=16,
                      max_steps=2, learning_rate=1e-2, weight_decay=0.1, bf16=False, gradient_checkpointing=False,
                      use_cpu=True, report_to="none", save_strategy="no", seed=0, shuffle_dataset=False,
                      logging_steps=1)
    ds = datasets.Dataset.from_list([{"id": str(i), "prompt": build_messages(q, PRESETS["qwen-math"]), "answer": "5"}
                                     for i, q in enumerate(KEPT + FILTERED)])
    assert set(KEPT + FILTERED) <= set(SCRIPT)
    record = Record()
    trainer = ScriptedTrainer(model=load_model(tiny), reward_funcs=[build_reward("empo", g)], args=args,
                              train_dataset=ds, processing_class=load_tokenizer(tiny), callbacks=[record],
                              peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                     lora_dropout=0.0),
                              empo_args=EmpoArguments())
    record.trainer = trainer
    before = lora_weights(trainer)
    trainer.train()
    if trainer.accelerator.is_main_process:
        Path(out_path).write_text(json.dumps({
            "world_size": trainer.accelerator.num_processes,
            "distributed_type": str(trainer.accelerator.distributed_type),
            "before": before, "after": record.after}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
