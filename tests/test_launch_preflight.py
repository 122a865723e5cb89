"""The first GPU run works (issue 21): what would fail it is refused before anything starts, one line each."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from empo.errors import ConfigError, MissingExtraError, PreflightError
from empo.launch import Cluster, build_commands, make_plan, preflight
from empo.launch.plan import accelerate_config_path

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "recipes/Qwen2.5-Math-1.5B/empo/config_numina20k.yaml"   # server mode, ZeRO-3
BIG = ROOT / "recipes/Qwen2.5-Math-7B/empo/config_numina20k.yaml"       # colocated, ZeRO-3


# 1. report_to wandb without wandb, or without a key -----------------------------------------------------------------
def test_a_missing_or_unauthenticated_report_to_integration_is_refused(monkeypatch):
    import importlib.util

    from empo import reporting

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    assert "pip install \"empo[wandb]\"" in reporting.reporting_problem(["wandb"])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "wandb" else real(name, *a))
    for var in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent")
    assert "wandb login" in reporting.reporting_problem(["wandb"])
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert reporting.reporting_problem(["wandb"]) is None and reporting.reporting_problem(["none"]) is None
    # empo train refuses the paper recipe here before any model loads (this machine has no wandb key)
    monkeypatch.delenv("WANDB_MODE")
    from empo.recipe import load_recipe

    with pytest.raises(ConfigError, match=r"config_numina20k\.yaml: report_to wandb, but wandb has no API key"):
        load_recipe(SMALL, any_machine=True)
    load_recipe(SMALL, ["--report_to", "none"], any_machine=True, check_machine=False)


# 2. the vllm extra's pin: tests/test_packaging.py (TRL's declared range) --------------------------------------------
# 3. the CUDA stack: the driver against the wheels; the CUDA build of vLLM without CUDA ------------------------------
def test_a_driver_older_than_the_wheels_and_vllm_without_cuda_are_refused(monkeypatch):
    import torch

    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch._C, "_cuda_getDriverVersion", lambda: 12080, raising=False)
    check = preflight.driver()
    assert not check.ok and "the driver supports CUDA 12.8, the torch wheels are built for CUDA 13.0" in check.message
    monkeypatch.setattr(torch._C, "_cuda_getDriverVersion", lambda: 13010, raising=False)
    assert preflight.driver().ok
    from empo.rollout import vllm_engine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(vllm_engine, "_cpu_build", lambda: False)
    with pytest.raises(MissingExtraError, match="vLLM's CUDA build is installed but CUDA is not usable here"):
        vllm_engine.on_cpu()
    monkeypatch.setattr(vllm_engine, "_cpu_build", lambda: True)
    assert vllm_engine.on_cpu()


# 4. a cold vLLM server: the launch waits for /health/, the trainers wait long enough --------------------------------
class _Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health/" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_local_launch_waits_for_a_cold_server_and_names_a_dead_one(monkeypatch):
    import subprocess
    import time

    from empo import launch

    monkeypatch.setattr(time, "sleep", lambda s: None)
    server = HTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        launch.wait_for_server(alive, "127.0.0.1", port=server.server_address[1], timeout=30)
    finally:
        alive.kill()
        server.shutdown()
    dead = subprocess.Popen(["true"])
    dead.wait()
    with pytest.raises(PreflightError, match="the vLLM server exited with status 0 before it came up"):
        launch.wait_for_server(dead, "127.0.0.1", port=1, timeout=30)
    plan = make_plan(SMALL, Cluster())
    train = next(c for c in build_commands(plan, str(SMALL), str(accelerate_config_path("zero3")), [])
                 if c.role == "train")
    assert train.argv[train.argv.index("--vllm_server_timeout") + 1] == "1200"


# 5. every rank takes every core -------------------------------------------------------------------------------------
def test_each_rank_takes_its_share_of_the_cores(monkeypatch):
    import os

    import torch

    from empo.model import set_threads

    before = torch.get_num_threads()
    try:
        for var in ("EMPO_NUM_THREADS", "OMP_NUM_THREADS"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setattr(os, "cpu_count", lambda: 16)
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
        assert set_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "3")  # what the launcher chose wins
        assert set_threads() == 3
        assert set_threads(5) == 5  # and the recipe's num_threads over both
    finally:
        torch.set_num_threads(before)


# 6. no compiler -----------------------------------------------------------------------------------------------------
def test_no_compiler_is_refused(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CC", raising=False)
    check = preflight.compiler()
    assert not check.ok and "no C compiler on PATH" in check.message


# 7. the vLLM server never listens on every interface ----------------------------------------------------------------
def test_the_vllm_server_binds_loopback_on_one_node_and_the_cluster_address_on_several():
    one = make_plan(SMALL, Cluster())
    serve = next(c for c in build_commands(one, str(SMALL), "zero3.yaml", []) if c.role == "vllm-server")
    assert serve.argv[serve.argv.index("--host") + 1] == "127.0.0.1"
    two = make_plan(SMALL, Cluster(nodes=2), overrides=["--gradient_accumulation_steps", "14"])
    serve = next(c for c in build_commands(two, str(SMALL), "zero3.yaml", []) if c.role == "vllm-server")
    assert serve.argv[serve.argv.index("--host") + 1] == "$VLLM_HOST"


# the preflight with the plan, as text and as JSON -------------------------------------------------------------------
def test_dry_run_json_has_the_plan_and_the_preflight(capsys, tmp_path):
    from empo.cli import main

    out = tmp_path / "out"
    assert main(["launch", str(BIG), "--gpus-per-node", "8", "--dry-run", "--json", "--", "--output_dir",
                 str(out)]) == 0
    plan = json.loads(capsys.readouterr().out)
    memory = plan["memory_per_gpu_gib"]
    assert memory["components"]["model_states"] == pytest.approx(17.99, abs=0.01)  # DeepSpeed's ZeRO-3 estimate
    assert memory["total"] <= 80 and plan["steps"]["total"] == 2400 and plan["gpu_hours"] > 0
    assert {c["check"] for c in plan["preflight"]} == set(preflight.CHECKS)
    assert all(set(c) == {"check", "ok", "message"} for c in plan["preflight"])
    assert plan["disk_gb"] and plan["generation_waves"] >= 1 and plan["commands"]
    assert not out.exists()  # a dry run creates nothing
    # a failing check refuses a real launch with one line, unless skipped
    assert main(["launch", str(BIG), "--gpus-per-node", "8", "--", "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("empo launch: error: preflight failed, nothing started: ")
    assert main(["launch", str(BIG), "--gpus-per-node", "8", "--skip-preflight", "nonsense"]) == 2
    assert "not a preflight check" in capsys.readouterr().err
