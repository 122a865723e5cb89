"""The entropy filter is exact: a step on [kept + filtered groups] gives the same LoRA gradient as a step on a batch
holding only the kept groups, for every loss type TRL 1.16 offers that the filter accepts, with gradient
accumulation and with 2 processes; the loss types it cannot make exact are refused before a model loads.

Scripted completions (tests/helpers/scripted.py), no sampling. SCRIPT's questions 1 and 2 are kept, 0 (unanimous) and
3 (all different) are dropped, so [0, 1, 2, 3] filtered must train like [1, 2] alone."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from scripted import (
    FILTERED,
    KEPT,
    SCRIPT,
    G,
    assert_same_gradients,
    free_port,
    lora_step_gradients,
    make_trainer,
)

from empo.errors import ConfigError
from empo.training.filter import FILTER_NORMALISATION

HERE = Path(__file__).resolve().parent / "helpers"  # the scripts the tests run in other processes
QUESTIONS = list(SCRIPT)
LOSS_TYPES = list(FILTER_NORMALISATION)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_filtered_batch_trains_like_kept_only_batch(tmp_path, tiny, loss_type):
    torch.set_num_threads(1)
    filtered, _ = lora_step_gradients(tmp_path / "f", tiny, QUESTIONS, loss_type, per_device=G * 4)
    kept_only, _ = lora_step_gradients(tmp_path / "k", tiny, KEPT, loss_type, per_device=G * 2)
    assert_same_gradients(filtered, kept_only)


@pytest.mark.parametrize("loss_type", [lt if lt in ("grpo", "dr_grpo", "dapo")  # the default run: one per normaliser
                                       else pytest.param(lt, marks=pytest.mark.slow) for lt in LOSS_TYPES])
def test_filtered_batch_trains_like_kept_only_batch_with_accumulation(tmp_path, tiny, loss_type):
    # gradient_accumulation_steps 2 and steps_per_generation 2: TRL shuffles the generation batch into two
    # micro-batches, so the kept rows land unevenly in them; the accumulated gradient must not care
    torch.set_num_threads(1)
    filtered, _ = lora_step_gradients(tmp_path / "f", tiny, QUESTIONS, loss_type, per_device=G * 2,
                                      gradient_accumulation_steps=2)
    kept_only, _ = lora_step_gradients(tmp_path / "k", tiny, KEPT, loss_type, per_device=G,
                                       gradient_accumulation_steps=2)
    assert_same_gradients(filtered, kept_only)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_loss_scale_lands_in_metrics_jsonl(tmp_path, tiny, loss_type):
    from empo.training.callbacks import JsonlMetricsCallback

    trainer = make_trainer(tmp_path, tiny, QUESTIONS, loss_type=loss_type, callbacks=[JsonlMetricsCallback()])
    trainer.train()
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    logged = [r["empo/loss_scale"] for r in rows if "empo/loss_scale" in r]
    if loss_type == "grpo":  # 16 sequences, 8 kept: each kept sequence weighs twice what it would unfiltered
        assert logged == [2.0]
    else:  # dapo: all tokens / kept tokens, applied through num_items_in_batch
        mask = trainer._buffered_inputs[0]["completion_mask"]
        assert len(logged) == 1 and logged[0] > 1.0 and mask.sum().item() == trainer._buffered_inputs[0][
            "num_items_in_batch"].item()


def test_all_filtered_batch_moves_no_weight_under_grpo(tmp_path, tiny):
    trainer = make_trainer(tmp_path, tiny, FILTERED, per_device=G * 2, max_steps=2,
                           weight_decay=0.5, loss_type="grpo")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert trainer.step_gate.skipped == 2


@pytest.mark.parametrize("setting, named", [
    ({"loss_type": "bnpo"}, "bnpo"),
    ({"scale_rewards": "batch"}, "scale_rewards 'batch'"),
    ({"multi_objective_aggregation": "normalize_then_sum"}, "normalize_then_sum"),
    ({"entropy_coef": 0.01}, "entropy_coef"),
    ({"top_entropy_quantile": 0.2}, "top_entropy_quantile"),
    ({"loss_type": "some_future_loss"}, "some_future_loss"),  # a loss the filter has not been taught
])
def test_inexact_settings_are_refused_before_the_model_loads(tmp_path, tiny, setting, named):
    from trl import GRPOConfig

    from empo.configs import EmpoArguments
    from empo.recipe import validate

    args = GRPOConfig(output_dir=str(tmp_path), num_generations=G, per_device_train_batch_size=G, use_cpu=True,
                      bf16=False, report_to="none", **setting)
    with pytest.raises(ConfigError, match=named):
        validate(EmpoArguments(), args)
    validate(EmpoArguments(entropy_filter=False), args)  # without the filter there is nothing to make exact
    with pytest.raises(ValueError, match=named):  # the trainer refuses too, for callers that skip validate()
        make_trainer(tmp_path, tiny, KEPT, **setting)


def run_two_processes(tmp_path, tiny, question_indices, per_device, loss_types):
    out = tmp_path / "dist.json"
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", str(free_port()), str(HERE / "filter_exact_check.py"),
           str(out), tiny, question_indices, str(per_device), ",".join(loss_types)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {lt: {k: torch.tensor(v) for k, v in g.items()} for lt, g in json.loads(out.read_text()).items()}


@pytest.mark.parametrize("loss_types", [
    ["grpo", "dapo"],  # one loss per normalisation kind in the default run
    pytest.param([lt for lt in LOSS_TYPES if lt not in ("grpo", "dapo")], marks=pytest.mark.slow),
])
def test_two_processes_filtered_batch_trains_like_kept_only_batch(tmp_path, tiny, loss_types):
    # [dropped, kept, kept] with 6 rows per process: the kept group 1 is split across the processes, which hold
    # 2 and 6 kept rows (a per-process rescaling would fail here); the reference is one process on the 8 kept rows
    torch.set_num_threads(1)
    two = run_two_processes(tmp_path, tiny, "0,1,2", 6, loss_types)
    assert list(two) == loss_types
    for loss_type in loss_types:
        kept_only, _ = lora_step_gradients(tmp_path / loss_type, tiny, KEPT, loss_type, per_device=G * 2)
        assert_same_gradients(two[loss_type], kept_only)
