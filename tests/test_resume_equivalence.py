"""Every decision a run takes survives a resume (issue 28): for each feature, a run killed between steps (SIGKILL) or
preempted (SIGTERM) and resumed with the same command ends as the uninterrupted run does -- every metrics.jsonl row
(the wall-time fields aside), every samples.jsonl row, stopping.json, and the final adapter bit for bit.

The features: the random control and self_certainty (the tiny random model: with the filter off its completions
train), 2 processes under torchrun, and dynamic sampling with label-free stopping in mark and stop mode (the
embedded default model: the tiny one never boxes an answer, so no group would enter the band and the rule would see
no signal). Each reference run is checked to train (its adapter moves), so a bit-identical adapter means something.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scripted import free_port

pytestmark = pytest.mark.slow

HELPERS = Path(__file__).resolve().parent / "helpers"
ROOT = HELPERS.parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}
RECIPE = "recipes/SmolLM2-135M-Instruct/empo/config_arith_cpu.yaml"
#: metrics.jsonl fields that measure wall time, and transformers' end-of-training ``train_loss`` (the mean over the
#: steps that invocation trained), documented in docs/preemption.md: everything else must match
WALL_TIME = {"step_time", "empo/sampling_seconds", "empo/sampling_share", "empo/vllm_sync_seconds", "train_runtime",
             "train_samples_per_second", "train_steps_per_second", "train_loss"}

TINY = {"num_generations": 4, "per_device_train_batch_size": 4, "max_completion_length": 8, "max_steps": 6,
        "save_steps": 2, "save_total_limit": 1, "dataset_limit": 16, "num_threads": 1, "entropy_filter": False}
REAL = {"model_name_or_path": "smollm2-135m-instruct", "num_generations": 4, "per_device_train_batch_size": 8,
        "max_completion_length": 24, "max_steps": 6, "save_steps": 2, "save_total_limit": 1, "dataset_limit": 24,
        "num_threads": 2, "dynamic_sampling": True, "max_sampling_rounds": 3, "stopping_window": 1,
        "stopping_patience": 1}
FEATURES = {
    "random": {**TINY, "reward_funcs": "random"},
    "self_certainty": {**TINY, "reward_funcs": "self_certainty"},
    "two_processes": {**TINY, "reward_funcs": "random", "per_device_train_batch_size": 2},
    "dynamic_mark": {**REAL, "stopping": "mark"},
    "dynamic_stop": {**REAL, "stopping": "stop"},
}


def command(feature: str, tiny: str, out: Path, killer: bool = False) -> list[str]:
    # the one-digit recipe, whose filter and sampler each feature sets (the default's band needs its filter)
    settings = {"config": RECIPE, "model_name_or_path": tiny, **FEATURES[feature], "output_dir": str(out)}
    args = [a for k, v in settings.items() for a in (f"--{k}", str(v))]
    entry = [str(HELPERS / "kill_during_save.py")] if killer else ["-m", "empo.train"]
    if feature == "two_processes":
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
        return [torchrun, "--nproc_per_node", "2", "--master_port", str(free_port()), *entry, *args]
    return [sys.executable, *entry, *args]


def run(cmd: list[str], **env) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env={**ENV, **env}, capture_output=True, text=True, timeout=900, cwd=ROOT)


def rows(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in WALL_TIME}
            for line in path.read_text().splitlines() if line.strip()]


def adapter(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(out / "adapter_model.safetensors")


def stopping(out: Path) -> dict | None:
    path = out / "stopping.json"
    return json.loads(path.read_text().replace(str(out), "OUT")) if path.exists() else None


def assert_same_run(out: Path, ref: Path) -> None:
    import torch

    assert rows(out / "metrics.jsonl") == rows(ref / "metrics.jsonl")
    assert rows(out / "samples.jsonl") == rows(ref / "samples.jsonl")
    assert stopping(out) == stopping(ref)
    a, b = adapter(out), adapter(ref)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


_references: dict[str, Path] = {}


@pytest.fixture
def reference(tiny, tmp_path_factory):
    def make(feature: str) -> Path:
        if feature not in _references:
            out = tmp_path_factory.mktemp(f"reference-{feature}") / "run"
            done = run(command(feature, tiny, out))
            assert done.returncode == 0, done.stderr[-3000:]
            _references[feature] = out
        return _references[feature]
    return make


def assert_it_trained(out: Path, tiny: str, feature: str) -> None:
    """The reference's adapter left its initialisation (else a bit-identical adapter would prove nothing)."""
    rows_ = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("grad_norm", 0) > 0 for r in rows_), f"{feature}: no gradient in the reference run"
    assert max(r.get("empo/skipped_optimizer_steps", 0) for r in rows_) < 6
    assert any(v.abs().sum() > 0 for k, v in adapter(out).items() if "lora_B" in k), "LoRA B never moved"


KILL_AT = {"dynamic_stop": "step@3", "dynamic_mark": "step@5"}  # stop fires at step 3: killed before it fires


@pytest.mark.parametrize("feature", list(FEATURES))
def test_a_run_killed_between_steps_resumes_to_the_uninterrupted_run(feature, tiny, reference, tmp_path):
    ref = reference(feature)
    assert_it_trained(ref, tiny, feature)
    out = tmp_path / "run"
    kill_at = KILL_AT.get(feature, "step@5")
    killed = run(command(feature, tiny, out, killer=True), EMPO_TEST_KILL_AT=kill_at)
    assert killed.returncode != 0, killed.stderr[-3000:]
    resumed = run(command(feature, tiny, out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    resumed_from = int(kill_at.split("@")[1]) - 1
    assert f"resuming from {out}/checkpoint-{resumed_from - resumed_from % 2}" in resumed.stderr
    assert_same_run(out, ref)
    if feature == "dynamic_stop":
        record = stopping(ref)
        assert record["mode"] == "stop" and record["fired_at"] < 6, "the reference never stopped: no test"
        again = run(command(feature, tiny, out))  # a requeued job runs the same command
        assert again.returncode == 0 and "already stopped" in again.stdout and "Nothing to train" in again.stdout
        assert_same_run(out, ref)


@pytest.mark.parametrize("feature", list(FEATURES))
def test_a_preempted_run_resumes_to_the_uninterrupted_run(feature, tiny, reference, tmp_path):
    ref = reference(feature)
    out = tmp_path / "run"
    env = {**ENV, "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": "120"}  # torchrun: time for the step and the save
    proc = subprocess.Popen(command(feature, tiny, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    deadline = time.time() + 600
    while not (out / "metrics.jsonl").exists() or len((out / "metrics.jsonl").read_text().splitlines()) < 2:
        assert proc.poll() is None and time.time() < deadline, "the run ended before the signal"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # torchrun forwards it to both workers
    proc.communicate(timeout=600)
    # one process exits 75 (the requeue status); torchrun reports its workers' status as its own failure
    assert proc.returncode == 75 if feature != "two_processes" else proc.returncode != 0
    assert json.loads((out / "preempted.json").read_text())["step"] >= 2
    resumed = run(command(feature, tiny, out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(out, ref)
