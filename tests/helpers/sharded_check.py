"""Run under `accelerate launch` (or plain python for one process): two optimizer steps of EmpoTrainer with LoRA on
scripted completions -- step 1 keeps both groups, step 2's groups are all filtered -- and write the LoRA weights
(full, gathered), every rank's optimizer state and how every rank holds the model after each step to the JSON file
given as argv[1] (written by rank 0).

    python tests/helpers/sharded_check.py OUT.json TINY_MODEL 8
    accelerate launch --config_file cpu_zero2.yaml tests/helpers/sharded_check.py OUT.json TINY_MODEL 4 [--bf16]
        [--save] [--resume CHECKPOINT]

``--bf16`` trains with ``bf16=True`` (the accelerate config must then say ``mixed_precision: bf16``); ``--save``
writes a checkpoint after each step to OUT's folder/sharded_out; ``--resume`` continues from such a checkpoint,
so only the steps after it are recorded.

Under an FSDP config (``ACCELERATE_USE_FSDP=true``) on CPU it first installs ``fsdp_on_cpu``'s test-only shim,
without which accelerate silently runs plain data parallel (see that module).
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datasets  # noqa: E402
import torch  # noqa: E402
from peft import LoraConfig  # noqa: E402
from scripted import FILTERED, KEPT, SCRIPT, ScriptedTrainer  # noqa: E402
from transformers import TrainerCallback  # noqa: E402
from trl import GRPOConfig  # noqa: E402

from empo.configs import EmpoArguments  # noqa: E402
from empo.distributed import exit_worker  # noqa: E402
from empo.model import load_model, load_tokenizer  # noqa: E402
from empo.prompts import PRESETS, build_messages  # noqa: E402
from empo.rewards import build_reward  # noqa: E402


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
    return {n: full(p).detach().float().flatten().tolist() for n, p in named}


def all_ranks(obj) -> list:
    """``obj`` from every rank, in rank order (a list of one without a process group)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [obj]
    out = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of a tensor: the local shard of an FSDP2 DTensor, the tensor itself otherwise."""
    return t.to_local() if hasattr(t, "to_local") else t


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor: an FSDP2 DTensor gathered from every rank (a collective), the tensor itself otherwise."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def optimizer_state(trainer) -> list[dict]:
    """Each rank's own optimizer state, every value of it (under ZeRO and FSDP a rank holds its partition or shard)."""
    opt = base_optimizer(trainer)
    states = list(opt.state.values())
    moments = {k: [v for s in states if k in s for v in local(s[k]).detach().float().flatten().tolist()]
               for k in ("exp_avg", "exp_avg_sq")}
    return all_ranks({"tensors": len(states), "steps": sorted({float(s["step"]) for s in states if "step" in s}),
                      **moments})


def full_moments(trainer) -> dict[str, list[float]] | None:
    """The Adam moments as full tensors, in the optimizer's parameter order: gathered where they are FSDP2 DTensors,
    as they are where every rank holds them whole (one process, data parallel). None under DeepSpeed, whose ZeRO
    partitions are flat slices with no per-parameter layout to compare."""
    if trainer.is_deepspeed_enabled:
        return None
    states = list(base_optimizer(trainer).state.values())
    return {k: [v for s in states for v in full(s[k]).detach().float().flatten().tolist()]
            for k in ("exp_avg", "exp_avg_sq")}


def sharding(trainer) -> list[dict]:
    """How every rank holds the trained model: FSDP2 modules, DTensor parameters and their local shard sizes."""
    from torch.distributed.fsdp import FSDPModule

    model = trainer.model_wrapped
    params = [p for _, p in model.named_parameters()]
    opt_params = [p for g in base_optimizer(trainer).param_groups for p in g["params"]]
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    policy = getattr(plugin, "mixed_precision_policy", None)
    return all_ranks({
        "fsdp_version": getattr(plugin, "fsdp_version", None),
        "fsdp_param_dtype": str(policy.param_dtype) if policy is not None else None,  # compute dtype of the shards
        "param_dtypes": sorted({str(p.dtype) for p in params}),
        "root_is_fsdp_module": isinstance(model, FSDPModule),
        "fsdp_modules": sum(isinstance(m, FSDPModule) for m in model.modules()),
        "params": len(params), "dtensor_params": sum(hasattr(p, "to_local") for p in params),
        "placements": sorted({str(p.placements) for p in params if hasattr(p, "placements")}),
        "mesh_sizes": sorted({p.device_mesh.size() for p in params if hasattr(p, "device_mesh")}),
        "full_numel": sum(p.numel() for p in params),  # a DTensor's numel is the full parameter's
        "local_numel": sum(local(p).numel() for p in params),
        "optimizer_params": len(opt_params),
        "optimizer_dtensor_params": sum(hasattr(p, "to_local") for p in opt_params),
        "optimizer_local_numel": sum(local(p).numel() for p in opt_params),
    })


class Record(TrainerCallback):
    def __init__(self):
        self.trainer, self.after = None, []

    def on_step_end(self, args, state, control, **kwargs):
        self.after.append({"step": state.global_step, "lora": lora_weights(self.trainer),
                           "optimizer": optimizer_state(self.trainer), "moments": full_moments(self.trainer),
                           "sharding": sharding(self.trainer),
                           "skipped": self.trainer.step_gate.skipped})


def main(out_path: str, tiny: str, per_device: int, bf16: bool = False, save: bool = False,
         resume: str | None = None) -> None:
    torch.set_num_threads(1)
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        from fsdp_on_cpu import let_accelerate_run_fsdp_on_cpu

        let_accelerate_run_fsdp_on_cpu()  # before the trainer builds its Accelerator
    g = 4
    args = GRPOConfig(output_dir=str(Path(out_path).parent / "sharded_out"), num_generations=g,
                      per_device_train_batch_size=per_device, gradient_accumulation_steps=1, max_completion_length=16,
                      max_steps=2, learning_rate=1e-2, weight_decay=0.1, bf16=bf16,
                      gradient_checkpointing=False, use_cpu=True, report_to="none",
                      save_strategy="steps" if save else "no", save_steps=1, seed=0, shuffle_dataset=False,
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
    trainer.train(resume_from_checkpoint=resume)
    if trainer.accelerator.is_main_process:
        Path(out_path).write_text(json.dumps({
            "world_size": trainer.accelerator.num_processes,
            "distributed_type": str(trainer.accelerator.distributed_type),
            "before": before, "after": record.after}))


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description="two EmpoTrainer steps, kept then all-filtered, recorded")
    cli.add_argument("out")
    cli.add_argument("tiny")
    cli.add_argument("per_device", type=int)
    cli.add_argument("--bf16", action="store_true")
    cli.add_argument("--save", action="store_true")
    cli.add_argument("--resume")
    a = cli.parse_args()
    main(a.out, a.tiny, a.per_device, bf16=a.bf16, save=a.save, resume=a.resume)
    exit_worker(0)  # as empo.train ends: no abort in interpreter teardown
