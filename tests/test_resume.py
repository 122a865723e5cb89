"""Kill a real `empo train` run after its first checkpoint; the same command resumes it with the same step count
and the same data order as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "SmolLM2-135M-Instruct" / "empo" / "config_arith_cpu.yaml"
SMALL = ["--num_generations", "4", "--per_device_train_batch_size", "4", "--max_completion_length", "12",
         "--max_steps", "4", "--save_steps", "2", "--dataset_limit", "16"]


def command(out: Path) -> list[str]:
    return [sys.executable, "-m", "empo.train", "--config", str(RECIPE), *SMALL, "--output_dir", str(out)]


def rows_by_step(out: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in rows}  # a step redone after the kill keeps its last row


@pytest.mark.slow
def test_killed_run_resumes(tmp_path, default_model_path):
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    reference = tmp_path / "reference"
    subprocess.run(command(reference), env=env, check=True, capture_output=True, timeout=900)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 600
    while not (killed / "checkpoint-2" / "trainer_state.json").exists():
        assert proc.poll() is None, "run ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "checkpoint-4").exists()

    resumed = subprocess.run(command(killed), env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr and "checkpoint-2" in resumed.stderr
    assert "empo train finished: steps 2 -> 4" in resumed.stdout and (killed / "training_curves.png").exists()
    state = json.loads((killed / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    done, ref = rows_by_step(killed), rows_by_step(reference)
    assert {k: r["id"] for k, r in done.items()} == {k: r["id"] for k, r in ref.items()}  # same data order
    # same seeds, same start: identical first-step completions and rewards
    assert done[0]["completions"] == ref[0]["completions"] and done[0]["rewards"] == ref[0]["rewards"]
    assert (killed / "adapter_model.safetensors").exists()


@pytest.mark.slow
def test_ctrl_c_after_a_checkpoint_says_where_to_resume(tmp_path, default_model_path):
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "run"
    proc = subprocess.Popen(command(out), env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 600
    while not (out / "checkpoint-2" / "trainer_state.json").exists():
        assert proc.poll() is None, "run ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, stdout
    assert "empo train interrupted: steps 0 -> " in stdout
    assert f"last checkpoint: {out}/checkpoint-2; the same command resumes from it" in stdout
