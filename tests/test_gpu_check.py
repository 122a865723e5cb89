"""The one-call GPU check (scripts/gpu_check.sh, scripts/gpu_check.py; issue 21) runs end to end on CPU with a tiny
model of the 1.5B recipe's architecture, so it cannot rot before a GPU runs it; its comparison with the plan, which
only runs on CUDA, is checked here on made-up peaks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_check  # noqa: E402


def test_the_gpu_check_runs_on_cpu_with_a_tiny_model(tmp_path, default_model_path):
    env = {**os.environ, "PY": sys.executable, "OUT": str(tmp_path / "out"), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(["bash", str(ROOT / "scripts/gpu_check.sh"), "--tiny", "--tokenizer", default_model_path],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    check = json.loads((tmp_path / "out/gpu_check.json").read_text())
    stages = check["stages"]
    assert list(stages) == ["build", "train", "filter_exactness", "all_filtered"] and check["ok"]
    train = stages["train"]
    assert train["exit_status"] == 0 and train["steps"] == 3 and len(train["step_seconds"]) == 3
    assert train["phase_calls"]["forward/backward"] == 3 * 14  # 14 micro-batches of one completion per step
    assert train["phase_calls"]["generation"] == 3  # generation_batch_size 14 = one rollout per step here
    assert train["plan"]["memory_per_gpu_gib"]["components"] and train["plan"]["steps"]["total"] == 3
    assert set(train["time_vs_plan"]["measured_s"]) == {"generation", "rewards and clustering", "training"}
    assert "not measured on CPU" in train["memory_vs_plan"]
    exact = stages["filter_exactness"]
    assert exact["dtype"] == "float32" and exact["tolerance_relative_l2"] == 1e-5
    for loss_type, row in exact["loss_types"].items():
        assert row["gradient_norm"] > 0 and row["relative_l2"] <= 1e-5, loss_type
    assert stages["all_filtered"] == {**stages["all_filtered"], "skipped_optimizer_steps": 2, "tensors_moved": 0}


def test_measured_phase_peaks_are_compared_with_the_plans_resident_terms_plus_the_phase(tmp_path):
    from empo.launch import Cluster, make_plan

    plan = make_plan(gpu_check.RECIPE, Cluster(gpus_per_node=1, gpu_memory_gib=139), overrides=gpu_check.OVERRIDES)
    model = plan.memory_model
    seen = sum(v for k, v in model.resident.items() if not k.startswith(("CUDA context", "allocator fragmentation")))
    assert 0 < seen < sum(model.resident.values())
    generation = seen + sum(model.phases["generation (HF generate)"].values())
    backward = seen + sum(model.phases["forward/backward"].values())
    meter = gpu_check.PhaseMeter()
    meter.peak_gib = {"generation": generation * 1.1, "forward/backward": backward * 1.5, "optimizer step": seen}
    rows = gpu_check._memory_vs_plan(plan, meter)
    assert rows["generation"]["planned_gib"] == pytest.approx(generation, abs=0.01) and rows["generation"]["within"]
    assert rows["forward/backward"]["ratio"] == pytest.approx(1.5, abs=0.01) and not rows["forward/backward"]["within"]
    assert rows["optimizer step"]["planned_gib"] == pytest.approx(seen, abs=0.01)  # ddp: no optimizer-step terms
