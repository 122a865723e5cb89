"""The all-filtered optimizer-step skip under sharded training.

DeepSpeed owns the optimizer step: accelerate's ``accelerator.backward`` calls ``engine.step()``, whose ZeRO
optimizer calls the wrapped torch optimizer's ``step`` once per parameter group (stage 1/2) or sub-group (stage 3).
The skip is therefore decided once per optimizer step and shared by those calls (fast test below, on the torch
optimizer the way ZeRO drives it). Under FSDP2 the Trainer calls accelerate's optimizer wrapper, which calls the
same torch optimizer's ``step`` once, over the DTensor shards ``fully_shard`` swapped in for the parameters.

The slow tests run the real thing on two CPU processes under accelerate, with the repo's configs changed to
use_cpu, mixed_precision 'no', 2 processes: DeepSpeed ZeRO-2 and ZeRO-3, plain data parallel, and FSDP2 (through
``fsdp_on_cpu``'s test-only shim: accelerate 1.15 drops the FSDP plugin on CPU and runs plain data parallel,
which the FSDP test would catch). Each runs a kept step that must match one process on the same batch, then an
all-filtered step that must move no weight and no optimizer state on any rank. The FSDP2 run must also show the
model sharded (every parameter a DTensor, half on each rank), and the CPU default recipe must train two steps
under FSDP2 through ``empo.train`` itself (generation, checkpoints and the final adapter included).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from extras import needs_deepspeed
from scripted import free_port

HERE = Path(__file__).resolve().parent / "helpers"  # the scripts the tests run in other processes
ROOT = HERE.parents[1]


def test_skip_is_decided_once_per_step_however_often_zero_calls_the_optimizer(tmp_path, tiny):
    from test_trainer import QUESTIONS, make_trainer

    trainer = make_trainer(tmp_path, tiny, QUESTIONS[:2], per_device=8, weight_decay=0.1)
    optimizer = trainer.create_optimizer()
    groups = list(optimizer.param_groups)
    assert len(groups) == 2  # decay and no-decay (norms): ZeRO-1/2 step them one at a time

    def zero_style_step():  # deepspeed/runtime/zero/stage_1_and_2.py: _optimizer_step(group_no) for each group
        for group in groups:
            optimizer.param_groups = [group]
            optimizer.step()
        optimizer.param_groups = groups

    params = [p for g in groups for p in g["params"]]
    for p in params:
        p.grad = torch.ones_like(p)
    before = [p.detach().clone() for p in params]
    trainer.step_gate.micro_step(10)  # a window with kept tokens
    zero_style_step()
    assert all(not torch.equal(b, p) for b, p in zip(before, params))  # both groups stepped
    assert trainer.step_gate.skipped == 0

    moved = [p.detach().clone() for p in params]
    state = {id(p): optimizer.state[p]["step"].clone() for p in params}
    trainer.step_gate.micro_step(0)  # an all-filtered window
    zero_style_step()
    assert all(torch.equal(m, p) for m, p in zip(moved, params))  # no weight decay, no momentum
    assert all(torch.equal(optimizer.state[p]["step"], state[id(p)]) for p in params)
    assert trainer.step_gate.skipped == 1  # one skipped optimizer step, not one per group


def test_a_step_outside_training_runs_so_fsdp2_resume_can_materialise_the_optimizer_state(tmp_path, tiny):
    # accelerate's FSDP2 resume loads the optimizer through torch.distributed.checkpoint, which first fills a fresh
    # optimizer's state with one zero-gradient, lr=0 step (state_dict._init_optim_state). No training micro-step
    # has run then: skipping that step left the state empty and set_optimizer_state_dict failed ("Expected device
    # to be set"), so FSDP2 runs could not resume.
    from test_trainer import QUESTIONS, make_trainer
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    trainer = make_trainer(tmp_path, tiny, QUESTIONS[:2], per_device=8, weight_decay=0.1)
    optimizer = trainer.create_optimizer()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    before = [p.detach().clone() for p in params]
    saved = get_optimizer_state_dict(trainer.model, optimizer)  # runs _init_optim_state on the empty optimizer
    assert len(optimizer.state) == len(params) and len(saved["state"]) == len(params)
    assert all(torch.equal(b, p) for b, p in zip(before, params))  # lr 0, zero gradients: nothing moved
    assert trainer.step_gate.skipped == 0  # not an optimizer step of training, so not a skipped one


def run_check(tmp_path: Path, tiny: str, name: str, backend: str | None, *options: str) -> dict:
    """sharded_check.py on one process (backend None) or two under the repo's accelerate config ``backend``."""
    out = tmp_path / f"{name}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    if backend is None:
        cmd = [sys.executable, str(HERE / "sharded_check.py"), str(out), tiny, "8", *options]
    else:
        config = yaml.safe_load((ROOT / "recipes" / "accelerate_configs" / f"{backend}.yaml").read_text())
        config.update(use_cpu=True, mixed_precision="bf16" if "--bf16" in options else "no", num_processes=2)
        config_file = tmp_path / f"{backend}.yaml"
        config_file.write_text(yaml.safe_dump(config))
        accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
        cmd = [accelerate, "launch", "--config_file", str(config_file), "--main_process_port", str(free_port()),
               str(HERE / "sharded_check.py"), str(out), tiny, "4", *options]  # 4 per process: one group each
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def max_diff(a: dict, b: dict) -> float:
    return max(max(abs(x - y) for x, y in zip(a[k], b[k])) for k in a)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny):
    return run_check(tmp_path_factory.mktemp("one"), tiny, "one", None)


def assert_kept_matches_one_and_filtered_moves_nothing(result: dict, one_process: dict) -> None:
    kept, filtered = result["after"]
    single_kept, single_filtered = one_process["after"]
    # step 1 (both groups kept): LoRA weights move, and as far as one process on the same batch moves them
    assert max_diff(result["before"], one_process["before"]) == 0
    assert max_diff(kept["lora"], result["before"]) > 1e-3
    assert max_diff(kept["lora"], single_kept["lora"]) < 1e-5
    assert kept["skipped"] == 0
    assert len(kept["optimizer"]) == result["world_size"]  # one optimizer state per rank
    assert all(rank["steps"] == [1.0] and any(rank["exp_avg"]) for rank in kept["optimizer"])
    # step 2 (all groups filtered): no weight, and on no rank any Adam moment or step count, moves
    assert filtered["skipped"] == 1 and single_filtered["skipped"] == 1
    assert max_diff(filtered["lora"], kept["lora"]) == 0
    assert filtered["optimizer"] == kept["optimizer"]


@pytest.mark.slow
@pytest.mark.parametrize("backend,kind", [("zero2", "DEEPSPEED"), ("zero3", "DEEPSPEED"), ("ddp", "MULTI_CPU")])
def test_two_cpu_processes_match_one_and_skip_the_filtered_step(backend, kind, tmp_path, tiny, one_process):
    if kind == "DEEPSPEED":
        needs_deepspeed()
    result = run_check(tmp_path, tiny, backend, backend)
    assert result["world_size"] == 2 and result["distributed_type"] == f"DistributedType.{kind}"
    assert_kept_matches_one_and_filtered_moves_nothing(result, one_process)


@pytest.mark.slow
def test_fsdp2_shards_the_model_on_two_cpu_processes_matches_one_and_skips_the_filtered_step(tmp_path, tiny,
                                                                                              one_process):
    result = run_check(tmp_path, tiny, "fsdp", "fsdp", "--save")  # a checkpoint per step, for the resume below
    assert result["world_size"] == 2 and result["distributed_type"] == "DistributedType.FSDP"
    # sharded for real, not data parallel: FSDP2 modules, every parameter (and every parameter the optimizer
    # steps) a DTensor sharded on dim 0 over both ranks, each rank holding half
    layout = result["after"][0]["sharding"]
    assert len(layout) == 2
    for rank in layout:
        assert rank["fsdp_version"] == 2 and rank["root_is_fsdp_module"]
        assert rank["fsdp_param_dtype"] is None and rank["param_dtypes"] == ["torch.float32"]
        assert rank["fsdp_modules"] >= 3  # the root and each of the tiny model's 2 decoder layers (transformer wrap)
        assert rank["dtensor_params"] == rank["params"] > 0
        assert rank["placements"] == ["(Shard(dim=0),)"] and rank["mesh_sizes"] == [2]
        assert rank["optimizer_dtensor_params"] == rank["optimizer_params"] > 0
        assert rank["local_numel"] < rank["full_numel"]
    assert sum(rank["local_numel"] for rank in layout) == layout[0]["full_numel"]  # nothing replicated
    single_layout = one_process["after"][0]["sharding"][0]
    assert sum(rank["optimizer_local_numel"] for rank in layout) == single_layout["optimizer_local_numel"]

    assert_kept_matches_one_and_filtered_moves_nothing(result, one_process)
    # the gathered Adam moments after the kept step are one process's, to fp32 rounding
    for key in ("exp_avg", "exp_avg_sq"):
        mine, single = result["after"][0]["moments"][key], one_process["after"][0]["moments"][key]
        assert len(mine) == len(single) > 0
        assert max(abs(a - b) for a, b in zip(mine, single)) <= 1e-5 * max(abs(b) for b in single)

    # resumed from the kept step's FSDP checkpoint, step 2 ends exactly where the uninterrupted run did: the
    # weights and, on every rank, the Adam moments and step counts were restored, not reset
    (tmp_path / "resumed").mkdir()
    resumed = run_check(tmp_path / "resumed", tiny, "fsdp_resumed", "fsdp", "--resume",
                        str(tmp_path / "sharded_out" / "checkpoint-1"))
    (step2,) = resumed["after"]
    assert step2["step"] == 2 and step2["skipped"] == 1
    assert max_diff(step2["lora"], result["after"][1]["lora"]) == 0
    assert step2["optimizer"] == result["after"][1]["optimizer"]


@pytest.mark.slow
def test_the_cpu_default_recipe_trains_and_resumes_under_fsdp2_on_two_processes(tmp_path, tiny):
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from safetensors.torch import load_file

    from empo.model import load_model
    from empo.recipe import find_recipe
    from empo.resources import DEFAULT_RECIPE

    recipe = yaml.safe_load(find_recipe(DEFAULT_RECIPE).read_text())
    out = tmp_path / "out"
    # the tiny model and short completions; the recipe's global batch (2 processes x half); a checkpoint per step,
    # both kept
    recipe.update(model_name_or_path=tiny, per_device_train_batch_size=recipe["per_device_train_batch_size"] // 2,
                  max_completion_length=16, max_steps=2, save_steps=1, save_total_limit=2, output_dir=str(out),
                  num_threads=1)
    recipe_file = tmp_path / "recipe.yaml"
    config = yaml.safe_load((ROOT / "recipes" / "accelerate_configs" / "fsdp.yaml").read_text())
    config.update(use_cpu=True, mixed_precision="no", num_processes=2)
    config_file = tmp_path / "fsdp.yaml"
    config_file.write_text(yaml.safe_dump(config))

    def train(max_steps: int) -> list[dict]:  # empo.train under FSDP2; returns how accelerate ran it
        recipe_file.write_text(yaml.safe_dump({**recipe, "max_steps": max_steps}))
        report = tmp_path / f"fsdp_report_{max_steps}.json"
        accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "EMPO_FSDP_REPORT": str(report)}
        proc = subprocess.run([accelerate, "launch", "--config_file", str(config_file), "--main_process_port",
                               str(free_port()), str(HERE / "fsdp_train.py"), "--config", str(recipe_file)],
                              env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return json.loads(report.read_text())

    (run,) = train(2)
    assert run["distributed_type"] == "DistributedType.FSDP" and run["fsdp_version"] == 2 and run["world_size"] == 2
    assert all(r["root_is_fsdp_module"] and r["dtensor_params"] == r["params"] and r["local_numel"] < r["full_numel"]
               for r in run["ranks"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]
    for step in (1, 2):  # accelerate's FSDP checkpoint files: written only when the Trainer runs FSDP
        assert (out / f"checkpoint-{step}" / "pytorch_model_fsdp.bin").is_file()
        assert (out / f"checkpoint-{step}" / "optimizer.bin").is_file()
    # the final adapter holds full LoRA tensors (gathered from the shards), as a 1-process LoRA model has them
    saved = load_file(str(out / "adapter_model.safetensors"))
    lora = LoraConfig(r=recipe["lora_r"], lora_alpha=recipe["lora_alpha"],
                      target_modules=recipe["lora_target_modules"], lora_dropout=0.0)
    expected = get_peft_model_state_dict(get_peft_model(load_model(tiny), lora))
    assert {k: tuple(v.shape) for k, v in saved.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    # a longer run in the same folder resumes from checkpoint-2 under FSDP2 (model and optimizer through
    # accelerate's FSDP loaders) and trains step 3
    (resumed,) = train(3)
    assert resumed["distributed_type"] == "DistributedType.FSDP"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]


@pytest.mark.slow
def test_fsdp2_bf16_mixed_precision_on_two_cpu_processes_skips_the_filtered_step(tmp_path, tiny, one_process):
    result = run_check(tmp_path, tiny, "fsdp_bf16", "fsdp", "--bf16")
    assert result["distributed_type"] == "DistributedType.FSDP"
    for rank in result["after"][0]["sharding"]:  # FSDP2's MixedPrecisionPolicy: bf16 compute, fp32 master shards
        assert rank["fsdp_param_dtype"] == "torch.bfloat16" and rank["param_dtypes"] == ["torch.float32"]
        assert rank["dtensor_params"] == rank["params"] > 0
    kept, filtered = result["after"]
    # No match with the fp32 run is asked of bf16: Adam's first step moves each weight by about +-lr, so a gradient
    # whose sign bf16 rounding flips differs by 2 lr. Step 1 must move the weights and step every rank's state;
    # step 2, all filtered, must move nothing.
    assert max_diff(result["before"], one_process["before"]) == 0
    assert max_diff(kept["lora"], result["before"]) > 1e-3
    assert kept["skipped"] == 0 and all(r["steps"] == [1.0] and any(r["exp_avg"]) for r in kept["optimizer"])
    assert filtered["skipped"] == 1
    assert max_diff(filtered["lora"], kept["lora"]) == 0
    assert filtered["optimizer"] == kept["optimizer"]


def test_an_fsdp_config_that_accelerate_dropped_is_reported(monkeypatch, capsys):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from empo.training.run import warn_if_fsdp_dropped

    trainer = SimpleNamespace(is_fsdp_enabled=False, accelerator=SimpleNamespace(
        is_main_process=True, distributed_type=DistributedType.MULTI_CPU))
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch` sets for an FSDP config
    assert warn_if_fsdp_dropped(trainer)
    assert "asks for FSDP, but accelerate runs this MULTI_CPU launch unsharded" in capsys.readouterr().err
    trainer.is_fsdp_enabled = True  # sharded as asked: nothing to say
    assert not warn_if_fsdp_dropped(trainer)
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    trainer.is_fsdp_enabled = False
    assert not warn_if_fsdp_dropped(trainer) and not capsys.readouterr().err
