"""The all-filtered optimizer-step skip under sharded training.

DeepSpeed owns the optimizer step: accelerate's ``accelerator.backward`` calls ``engine.step()``, whose ZeRO
optimizer calls the wrapped torch optimizer's ``step`` once per parameter group (stage 1/2) or sub-group (stage 3).
The skip is therefore decided once per optimizer step and shared by those calls (fast test below, on the torch
optimizer the way ZeRO drives it). The slow tests run the real thing: two CPU processes under accelerate with
DeepSpeed ZeRO-2 and ZeRO-3, and plain data parallel (the repo's configs with use_cpu, mixed_precision 'no',
2 processes; FSDP does not run on CPU, see below), a kept
step that must match one process on the same batch, then an all-filtered step that must move no weight and no
optimizer state.
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
from scripted import free_port, make_tiny_model

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, default_model_path):
    return make_tiny_model(tmp_path_factory.mktemp("tiny"), default_model_path)


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
    trainer._window_kept_tokens, trainer._step_decision = 10, None  # a window with kept tokens
    zero_style_step()
    assert all(not torch.equal(b, p) for b, p in zip(before, params))  # both groups stepped
    assert trainer._skipped_optimizer_steps == 0

    moved = [p.detach().clone() for p in params]
    state = {id(p): optimizer.state[p]["step"].clone() for p in params}
    trainer._window_kept_tokens, trainer._step_decision = 0, None  # an all-filtered window
    zero_style_step()
    assert all(torch.equal(m, p) for m, p in zip(moved, params))  # no weight decay, no momentum
    assert all(torch.equal(optimizer.state[p]["step"], state[id(p)]) for p in params)
    assert trainer._skipped_optimizer_steps == 1  # one skipped optimizer step, not one per group


def run_check(tmp_path: Path, tiny: str, name: str, backend: str | None) -> dict:
    out = tmp_path / f"{name}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    if backend is None:
        cmd = [sys.executable, str(HERE / "sharded_check.py"), str(out), tiny, "8"]
    else:
        config = yaml.safe_load((ROOT / "recipes" / "accelerate_configs" / f"{backend}.yaml").read_text())
        config.update(use_cpu=True, mixed_precision="no", num_processes=2)
        config_file = tmp_path / f"{backend}.yaml"
        config_file.write_text(yaml.safe_dump(config))
        accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
        cmd = [accelerate, "launch", "--config_file", str(config_file), "--main_process_port", str(free_port()),
               str(HERE / "sharded_check.py"), str(out), tiny, "4"]  # 4 per process: one group each
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def max_diff(a: dict, b: dict) -> float:
    return max(max(abs(x - y) for x, y in zip(a[k], b[k])) for k in a)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny):
    return run_check(tmp_path_factory.mktemp("one"), tiny, "one", None)


@pytest.mark.slow
# FSDP is not here: accelerate enables FSDP only for GPU-like devices (accelerate/state.py), so the repo's fsdp.yaml
# with use_cpu: true runs as plain MULTI_CPU data parallel -- that is the "ddp" case, not FSDP.
@pytest.mark.parametrize("backend,kind", [("zero2", "DEEPSPEED"), ("zero3", "DEEPSPEED"), ("ddp", "MULTI_CPU")])
def test_two_cpu_processes_match_one_and_skip_the_filtered_step(backend, kind, tmp_path, tiny, one_process):
    if kind == "DEEPSPEED":
        needs_deepspeed()
    result = run_check(tmp_path, tiny, backend, backend)
    assert result["world_size"] == 2 and result["distributed_type"] == f"DistributedType.{kind}"
    kept, filtered = result["after"]
    single_kept, single_filtered = one_process["after"]
    # step 1 (both groups kept): LoRA weights move, and as far as one process on the same batch moves them
    assert max_diff(result["before"], one_process["before"]) == 0
    assert max_diff(kept["lora"], result["before"]) > 1e-3
    assert max_diff(kept["lora"], single_kept["lora"]) < 1e-5
    assert kept["skipped"] == 0 and kept["optimizer"]["steps"] == [1.0]
    # step 2 (all groups filtered): no weight, no Adam moment, no step count moves
    assert filtered["skipped"] == 1 and single_filtered["skipped"] == 1
    assert max_diff(filtered["lora"], kept["lora"]) == 0
    assert filtered["optimizer"] == kept["optimizer"]
