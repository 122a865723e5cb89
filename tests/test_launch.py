"""`empo launch`: every paper recipe plans on 1x8 and 2x8 GPUs, and each way a recipe cannot run is refused
before anything starts, with one message naming the cause."""

import json
from pathlib import Path

import pytest
import yaml

from empo.launch import Cluster, PlanError, build_commands, make_plan
from empo.launch.commands import render_shell, render_slurm

ROOT = Path(__file__).resolve().parents[1]
GPU_RECIPES = sorted(p for p in (ROOT / "recipes").glob("*/*/*.yaml")
                     if p.parent.name != "sweeps" and "_cpu" not in p.stem)
recipe_id = lambda p: str(p.relative_to(ROOT / "recipes"))  # noqa: E731
# The 1.5B recipes are the paper's 7 trainers x 16 accumulation = 112 = 16 prompts x G=7. On 2 nodes the server
# takes node 0 and 8 GPUs train: 8 x 14 = 112 keeps the paper's batch.
# The natural-reasoning recipes are the official 6 trainers x 16 = 96 = 8 prompts x G=12 (7 GPUs). On 1x8, 7 GPUs
# train: 7 x 12 = 84 = 7 prompts x 12; on 2x8, 8 train: 8 x 12 = 96, the official batch again.
NATURAL_REASONING_1X8 = ["--gradient_accumulation_steps", "12", "--generation_batch_size", "84"]
OVERRIDES = {  # model -> nodes -> recipe overrides
    "Qwen2.5-Math-1.5B": {2: ["--gradient_accumulation_steps", "14"]},
    "Qwen2.5-3B": {1: NATURAL_REASONING_1X8, 2: ["--gradient_accumulation_steps", "12"]},
    "Qwen2.5-7B": {1: NATURAL_REASONING_1X8, 2: ["--gradient_accumulation_steps", "12"]},
}


def overrides_for(recipe: Path, nodes: int) -> list[str]:
    return OVERRIDES.get(recipe.parent.parent.name, {}).get(nodes, [])


@pytest.mark.parametrize("nodes", [1, 2])
@pytest.mark.parametrize("recipe", GPU_RECIPES, ids=recipe_id)
def test_every_paper_recipe_plans_on_one_and_two_nodes(recipe, nodes):
    plan = make_plan(recipe, Cluster(nodes=nodes, gpus_per_node=8), overrides=overrides_for(recipe, nodes))
    lo = plan.layout
    assert lo.trainers + (lo.server_gpus if lo.vllm_mode == "server" else 0) == 8 * nodes
    assert plan.completions_per_step % plan.num_generations == 0
    assert plan.generation_batch % (plan.per_device_batch * lo.trainers) == 0
    assert 0 < plan.memory_per_gpu <= 80 and plan.total_steps > 0 and plan.gpu_hours > 0
    assert all(v >= 0 for v in plan.memory.values())
    text = plan.format()
    assert "memory per training GPU" in text and "assumptions" in text and "GPU-hours" in text
    commands = build_commands(plan, str(recipe), str(ROOT / "recipes/accelerate_configs/zero3.yaml"),
                              overrides_for(recipe, nodes))
    train = next(c for c in commands if c.role == "train")
    assert train.argv[:2] == ["accelerate", "launch"] and str(recipe) in train.argv
    assert train.argv[train.argv.index("--num_processes") + 1] == str(lo.trainers)
    assert "--machine_rank" in train.argv and (lo.trainer_nodes == 1 or "$MASTER_ADDR" in train.argv)
    if lo.vllm_mode == "server":
        serve = next(c for c in commands if c.role == "vllm-server")
        assert serve.argv[:2] == ["trl", "vllm-serve"]
    script = render_slurm(plan, commands, job_name="t")
    assert "{{" not in script and f"#SBATCH --nodes={nodes}" in script and train.shell() in script
    assert render_shell(commands)


def test_one_node_plans_match_the_paper_batches():
    small = make_plan(ROOT / "recipes/Qwen2.5-Math-1.5B/empo/config_numina20k.yaml", Cluster())
    assert (small.layout.trainers, small.layout.server_gpus) == (7, 1)
    assert (small.completions_per_step, small.prompts_per_step) == (112, 16)
    assert (small.steps_per_epoch, small.total_steps) == (1250, 2500)  # 20k prompts / 16, 2 epochs
    assert small.params == pytest.approx(1.54e9, rel=0.01)  # Qwen2.5-Math-1.5B: 1.54 B parameters
    big = make_plan(ROOT / "recipes/Qwen2.5-Math-7B/empo/config_numina20k.yaml", Cluster())
    assert (big.completions_per_step, big.prompts_per_step, big.optimizer_steps_per_generation) == (512, 32, 8)
    assert big.total_steps == 2400 and big.layout.tensor_parallel == 4
    assert big.params == pytest.approx(7.62e9, rel=0.01)  # Qwen2.5-Math-7B: 7.62 B parameters
    lora = make_plan(ROOT / "recipes/Qwen2.5-Math-7B/empo/config_numina20k_lora.yaml", Cluster())
    assert lora.memory_per_gpu < big.memory_per_gpu and lora.trainable_params < big.params / 20


@pytest.mark.parametrize("model", ["Qwen2.5-3B", "Qwen2.5-7B"])
def test_natural_reasoning_plans_on_the_official_layout(model):
    recipe = ROOT / "recipes" / model / "empo" / "config_natural_reasoning.yaml"
    plan = make_plan(recipe, Cluster(gpus_per_node=7))  # 6 trainers + 1 vLLM server GPU, as the official run
    assert (plan.layout.trainers, plan.layout.server_gpus) == (6, 1)
    assert (plan.completions_per_step, plan.prompts_per_step, plan.num_generations) == (96, 8, 12)
    assert plan.vllm_memory["total (utilization x GPU)"] == pytest.approx(0.5 * 80)
    assert plan.total_steps == 50000 // 8 and plan.max_model_length == 2048
    assert plan.params == pytest.approx({"Qwen2.5-3B": 3.09e9, "Qwen2.5-7B": 7.62e9}[model], rel=0.01)
    # the free-form judge (general-verifier on vLLM, its architecture in judge_model_config.json) is counted: its
    # share of each training GPU, and its forward passes over at most G x (G - 1) directed pairs per group
    judge = "verifier judge on vLLM (judge_gpu_memory_utilization x GPU)"
    assert plan.judge.engine == "vllm" and plan.judge.params == pytest.approx(1.54e9, rel=0.01)
    assert plan.memory_model.resident[judge] == pytest.approx(0.1 * 80)
    assert plan.judge.pairs_per_step == 8 * 12 * 11
    assert 0 < plan.step_seconds["judging (at most)"] < plan.step_seconds["clustering"]
    on_hf = make_plan(recipe, Cluster(gpus_per_node=7), overrides=["--judge_engine", "hf"])
    assert on_hf.memory_model.resident["verifier judge weights (transformers, fp32)"] == pytest.approx(
        4 * plan.judge.params / 1024**3)
    assert on_hf.step_seconds["judging (at most)"] == pytest.approx(15 * plan.step_seconds["judging (at most)"])
    with pytest.raises(PlanError, match="judge_gpu_memory_utilization 0.02 x 80 GiB = 1.6 GiB does not hold"):
        make_plan(recipe, Cluster(gpus_per_node=7), overrides=["--judge_gpu_memory_utilization", "0.02"])
    # a judge whose architecture is not here, or one on the CPU, is not counted, and the plan says why
    other = make_plan(recipe, Cluster(gpus_per_node=7), overrides=["--judge_model", "org/another-verifier"])
    assert other.judge is None and any("not counted: the verifier judge org/another-verifier on cuda (its "
                                       "architecture is unknown" in a for a in other.assumptions)
    cpu = make_plan(recipe, Cluster(gpus_per_node=7), overrides=["--judge_device", "cpu", "--judge_engine", "hf"])
    assert cpu.judge is None and any("(it runs on the CPU)" in a for a in cpu.assumptions)
    # a full 8-GPU node without overrides is refused: 7 trainers cannot split the 96-completion rollout, and
    # 7 x 16 = 112 completions per step would not be whole groups of G = 12
    with pytest.raises(PlanError, match=r"generation_batch_size 96 is not a multiple of the 7 completions"):
        make_plan(recipe, Cluster())
    with pytest.raises(PlanError, match=r"G=12 does not divide the global batch: 112 completions"):
        make_plan(recipe, Cluster(), overrides=["--generation_batch_size", "84"])


def test_dataset_rows_are_counted_when_the_file_is_here(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"id": i, "problem": "p", "answer": "1"}) + "\n" for i in range(500)))
    recipe = ROOT / "recipes/Qwen2.5-Math-1.5B/empo/config_numina20k.yaml"
    plan = make_plan(recipe, Cluster(), overrides=["--dataset_name", str(data)])
    assert plan.dataset_rows == 500 and "counted" in plan.dataset_rows_source
    assert plan.steps_per_epoch == 500 // 16 and plan.total_steps == 2 * (500 // 16)
    flag = make_plan(recipe, Cluster(), dataset_rows=1600)
    assert (flag.dataset_rows, flag.steps_per_epoch) == (1600, 100)


def broken(tmp_path, base: str, **changes) -> Path:
    """A copy of a shipped recipe with some keys changed, kept beside a model_config.json like the real ones."""
    src = ROOT / "recipes" / base
    config = yaml.safe_load(src.read_text())
    config.update(changes)
    model_dir = tmp_path / src.parent.parent.name
    (model_dir / "m").mkdir(parents=True, exist_ok=True)
    (model_dir / "model_config.json").write_text((src.parent.parent / "model_config.json").read_text())
    path = model_dir / "m" / "broken.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


SMALL = "Qwen2.5-Math-1.5B/empo/config_numina20k.yaml"
BIG = "Qwen2.5-Math-7B/empo/config_numina20k.yaml"


def test_refuses_when_g_does_not_divide_the_global_batch(tmp_path):
    recipe = broken(tmp_path, SMALL, vllm_mode="colocate")  # 8 trainers x 1 x 16 = 128 completions, G = 7
    with pytest.raises(PlanError, match=r"G=7 does not divide the global batch: 128 completions per optimizer step"):
        make_plan(recipe, Cluster())


def test_refuses_when_g_does_not_divide_the_generation_batch(tmp_path):
    recipe = broken(tmp_path, BIG, num_generations=12)  # TRL's own check, reached through the same parse
    with pytest.raises(PlanError, match=r"broken\.yaml: generation_batch_size \(4096\) must be divisible by "
                                        r"num_generations \(12\)"):
        make_plan(recipe, Cluster())


def test_refuses_when_memory_is_over_budget_with_the_figure(tmp_path):
    recipe = broken(tmp_path, BIG, accelerate_config="recipes/accelerate_configs/ddp.yaml")  # nothing sharded
    with pytest.raises(PlanError, match=r"memory over budget: ~\d+\.\d GiB per training GPU > 80 GiB "
                                        r"\(Adam moments \(parameter dtype\) 28\.4"):
        make_plan(recipe, Cluster())
    make_plan(recipe, Cluster(gpu_memory_gib=1000))  # the same recipe fits a (hypothetical) bigger GPU


def test_refuses_vllm_tensor_parallel_larger_than_its_gpus(tmp_path):
    colocated = broken(tmp_path, BIG, vllm_tensor_parallel_size=16)
    with pytest.raises(PlanError, match=r"tensor parallel size 16 is larger than the 8 GPUs of a node"):
        make_plan(colocated, Cluster())
    served = broken(tmp_path, SMALL, vllm_tensor_parallel_size=16)
    with pytest.raises(PlanError, match=r"tensor parallel size 16 is larger than the 8 GPUs"):
        make_plan(served, Cluster(nodes=2))


def test_refuses_fewer_gpus_than_the_server_plus_one_trainer(tmp_path):
    with pytest.raises(PlanError, match=r"server mode needs the vLLM server's 1 GPU\(s\) plus at least one trainer"):
        make_plan(ROOT / "recipes" / SMALL, Cluster(gpus_per_node=1))
    with pytest.raises(PlanError,
                       match=r"needs the vLLM server's 4 GPU\(s\) plus at least one trainer; the node has 4"):
        make_plan(ROOT / "recipes" / BIG, Cluster(gpus_per_node=4), vllm_mode="server")


def test_refuses_a_vllm_share_too_small_for_its_weights(tmp_path):
    recipe = broken(tmp_path, BIG, vllm_gpu_memory_utilization=0.03)
    with pytest.raises(PlanError, match=r"vLLM's share .* does not hold its weights"):
        make_plan(recipe, Cluster())


def test_refuses_an_unknown_key_and_a_missing_recipe(tmp_path):
    with pytest.raises(PlanError, match=r"unknown recipe key.*'vllm_tensor_paralel_size'"):
        make_plan(broken(tmp_path, BIG, vllm_tensor_paralel_size=4), Cluster())
    with pytest.raises(PlanError, match="does not exist"):
        make_plan(tmp_path / "nope.yaml", Cluster())


def test_cli_dry_run_prints_plan_and_commands(capsys):
    from empo.cli import main

    assert main(["launch", str(ROOT / "recipes" / BIG), "--gpus-per-node", "8", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "empo launch plan" in out and "accelerate launch" in out and "--vllm_mode colocate" in out
    assert main(["launch", str(ROOT / "recipes" / SMALL), "--gpus-per-node", "8", "--nodes", "2", "--slurm",
                 "--dry-run", "--", "--gradient_accumulation_steps", "14"]) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --nodes=2" in out and "trl vllm-serve" in out and "--gradient_accumulation_steps 14" in out


def test_cli_refusal_is_one_line_and_starts_nothing(capsys, monkeypatch):
    import subprocess

    from empo.cli import main

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("started a process"))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("started a process"))
    assert main(["launch", str(ROOT / "recipes" / SMALL), "--gpus-per-node", "8", "--nodes", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("empo launch: error: G=7 does not divide the global batch")
    # a hand-started multi-node run needs its rendezvous variables before anything runs
    for key in ("NODE_RANK", "MASTER_ADDR", "VLLM_HOST"):
        monkeypatch.delenv(key, raising=False)
    assert main(["launch", str(ROOT / "recipes" / BIG), "--gpus-per-node", "8", "--nodes", "2"]) == 2
    assert "needs NODE_RANK, MASTER_ADDR set on every node" in capsys.readouterr().err


def test_refuses_a_generation_batch_that_is_not_whole_micro_steps(tmp_path):
    recipe = broken(tmp_path, SMALL, generation_batch_size=119, vllm_mode="colocate")  # 17 x G=7, over 8 processes
    with pytest.raises(PlanError, match=r"generation_batch_size 119 is not a multiple of the 8 completions"):
        make_plan(recipe, Cluster())


def test_the_slurm_script_forwards_the_warning_and_requeues_a_preempted_run(tmp_path):
    """The generated script run for real, with srun and scontrol stood in for: SIGUSR1 to the batch shell reaches the
    training as SIGTERM; the training's preempted.json makes the script requeue the job; a run that ends normally
    is not requeued."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from empo.launch.commands import Command

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')
    (bin_dir / "scontrol").write_text('#!/bin/bash\n[ "$1" = show ] && echo node0 || echo "$@" >> "$SCONTROL_LOG"\n')
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    fake_train = tmp_path / "train.py"
    fake_train.write_text(
        "import json, pathlib, signal, sys, time\n"
        "out = pathlib.Path(sys.argv[1]); out.mkdir(exist_ok=True)\n"
        "def stop(*_):\n    (out / 'preempted.json').write_text('{}'); sys.exit(75)\n"
        "signal.signal(signal.SIGTERM, stop)\n(out / 'started').write_text('')\n"
        "time.sleep(float(sys.argv[2]))\n")
    plan = make_plan(ROOT / "recipes" / BIG, Cluster(gpus_per_node=8))  # colocated: no server to stand in for
    log = tmp_path / "scontrol.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "node0",
           "SLURM_JOB_ID": "42", "SCONTROL_LOG": str(log)}
    for name, seconds, preempt in (("preempted", 60, True), ("finished", 0, False)):
        log.unlink(missing_ok=True)
        out = tmp_path / name
        plan.output_dir = str(out)
        script = tmp_path / f"{name}.slurm"
        script.write_text(render_slurm(plan, [Command("train", [sys.executable, str(fake_train), str(out),
                                                                str(seconds)])], job_name=name))
        proc = subprocess.Popen(["bash", str(script)], env=env, cwd=tmp_path)
        if preempt:
            deadline = time.time() + 60
            while not (out / "started").exists():
                assert time.time() < deadline and proc.poll() is None
                time.sleep(0.1)
            proc.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@300 sends before the time limit
        assert proc.wait(timeout=60) == 0
        assert (out / "preempted.json").exists() == preempt
        assert (log.read_text() if log.exists() else "") == ("requeue 42\n" if preempt else "")


def test_a_reward_from_a_file_is_planned_with_its_token_statistics(capsys):
    from empo.cli import main

    example = ROOT / "examples" / "rewards" / "concise_consensus.py"
    base = make_plan(str(ROOT / "recipes" / SMALL), Cluster(gpus_per_node=8))
    assert main(["launch", str(ROOT / "recipes" / SMALL), "--gpus-per-node", "8", "--dry-run", "--json", "--",
                 "--reward_funcs", "empo", "token_entropy", f"{example}:concise_consensus",
                 "--reward_options", json.dumps({"concise_consensus": {"target_tokens": 256}})]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["rewards"][2] == f"concise_consensus (file {example}; label-free)"
    assert plan["token_statistics"] == ["entropies"]
    assert plan["step_seconds"]["training"] > base.step_seconds["training"]  # the rewards' extra forward pass
    with pytest.raises(PlanError, match="has no option"):
        make_plan(str(ROOT / "recipes" / SMALL), Cluster(gpus_per_node=8),
                  overrides=["--reward_funcs", f"{example}:concise_consensus", "--reward_options",
                             json.dumps({"concise_consensus": {"target": 1}})])
