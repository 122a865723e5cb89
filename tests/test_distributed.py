"""Two CPU processes (torchrun, gloo) give the same rewards, entropies and filter mask as one process, with a
question's group split across the processes."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scripted import free_port, make_tiny_model

HERE = Path(__file__).resolve().parent / "helpers"  # the scripts the tests run in other processes


def run(tmp_path, tiny, nproc, per_device):
    out = tmp_path / f"result_{nproc}.json"
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [torchrun, "--nproc_per_node", str(nproc), "--master_port", str(free_port()), str(HERE / "dist_check.py"),
           str(out), tiny, str(per_device)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_two_processes_match_one(tmp_path, default_model_path):
    tiny = make_tiny_model(tmp_path / "tiny", default_model_path)
    single = run(tmp_path, tiny, 1, 12)
    double = run(tmp_path, tiny, 2, 6)  # 6 per process: the second group of 4 straddles both processes
    assert double["world_size"] == 2 and single["world_size"] == 1
    assert double["rewards"] == single["rewards"]
    assert double["keep"] == single["keep"]
    assert double["num_items_in_batch"] == single["num_items_in_batch"]
    assert double["advantages"] == pytest.approx(single["advantages"], abs=1e-6)
    assert math.isclose(double["entropy_mean"], single["entropy_mean"])
    assert single["keep"] == [True] * 4 + [False] * 4 + [True] * 4
    assert [r[0] for r in single["rewards"]] == pytest.approx([.5, .5, .25, 0, 1, 1, 1, 1, .5, .5, .25, .25])


def test_the_training_entry_point_destroys_its_process_group(monkeypatch, tmp_path):
    """A process group left to interpreter exit can abort a finished run (SIGABRT from Gloo's threads, seen in CI on
    a 2-process ZeRO-2 run): empo.train ends the group it trained in, whatever status the run returns."""
    import torch.distributed as dist

    import empo.recipe
    import empo.train
    import empo.training.run

    def train_in_a_group(recipe):
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
        return 75  # a preempted run's status comes back unchanged

    monkeypatch.setattr(empo.training.run, "train", train_in_a_group)
    monkeypatch.setattr(empo.recipe, "load_recipe", lambda *args: None)
    assert empo.train.main([]) == 75
    assert not dist.is_initialized()
