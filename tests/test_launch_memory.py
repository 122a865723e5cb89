"""The launch plan's memory model (empo/launch/memory.py, issue 21): the model states agree with DeepSpeed's own
estimators, and scripts/plan_memory_cpu.py -- the formula against measured training steps on CPU -- runs."""

import json
import sys
from pathlib import Path

import pytest
from extras import needs_deepspeed

from empo.launch import Cluster, make_plan

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "recipes/Qwen2.5-Math-1.5B/empo/config_numina20k.yaml"   # server mode, ZeRO-3
BIG = ROOT / "recipes/Qwen2.5-Math-7B/empo/config_numina20k.yaml"       # colocated, ZeRO-3


# the memory plan against DeepSpeed's own estimators -----------------------------------------------------------------
@pytest.mark.slow  # with the deepspeed extra, installed after the default run (CI)
@pytest.mark.parametrize("recipe, gpus", [(BIG, 8), (SMALL, 8)])
def test_model_states_match_deepspeeds_estimators(recipe, gpus, capsys):
    needs_deepspeed()
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    from empo.launch.memory import GiB
    from empo.launch.plan import find_model_shape

    plan = make_plan(recipe, Cluster(gpus_per_node=gpus, gpu_memory_gib=1000))
    shape, _ = find_model_shape(recipe, plan.model)
    n = plan.layout.trainers
    largest = max(shape.layer_params(), shape.embedding_params())
    _, ds3, _ = estimate_zero3_model_states_mem_needs(plan.params, largest, num_gpus_per_node=n, num_nodes=1,
                                                      cpu_offload=False, cpu_offload_params=False, zero_init=True)
    assert plan.model_states_gib == pytest.approx(ds3 / GiB, rel=0.05)
    zero2 = make_plan(recipe, Cluster(gpus_per_node=gpus, gpu_memory_gib=1000),
                      overrides=["--accelerate_config", "zero2"])
    _, ds2 = estimate_zero2_model_states_mem_needs(plan.params, num_gpus_per_node=n, num_nodes=1, cpu_offload=False)
    assert zero2.model_states_gib == pytest.approx(ds2 / GiB, rel=0.05)
    capsys.readouterr()  # DeepSpeed prints as it estimates


# the formula against a measured training step on CPU --------------------------------------------------------------
def test_plan_memory_cpu_measures_a_step_within_the_tolerance(tmp_path, monkeypatch):
    # a small full fine-tuning shape (gradients, Adam moments, activations and the log-prob head all in play), in a
    # fresh process as the published table's shapes are
    sys.path.insert(0, str(ROOT / "scripts"))
    import plan_memory_cpu

    monkeypatch.setitem(plan_memory_cpu.SHAPES, "test", dict(hidden=64, layers=2, heads=4, kv_heads=2,
                                                               intermediate=256, prompt=96, completion=160, G=2,
                                                               questions=1, lora=False, ckpt=False))
    assert plan_memory_cpu.main(["--shapes", "test", "--output", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())["results"][0]
    planned = sum(result["planned_terms"].values())
    assert result["measured_step_bytes"], "the steps raised no peak above the trainer's resident memory"
    assert abs(result["measured_step_bytes"] / planned - 1) <= plan_memory_cpu.TOLERANCE, result
    assert "| test |" in (tmp_path / "report.md").read_text()
