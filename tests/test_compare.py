"""`empo compare` on tiny fake runs (no training, no generation): checks, statistics, report, plots, sweeps."""

import json
import subprocess

import pytest

import empo.compare as compare_module
from empo.cli import main as cli_main
from empo.compare import (CompareError, EvalBlock, Sweep, check_comparable, compare, compare_block, load_run,
                          run_sweep)

PROBLEMS = [f"p{i}" for i in range(20)]


def write_eval(root, accuracy, sampled_accuracy, n=4):
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, pid in enumerate(PROBLEMS):
        rows.append({"benchmark": "arith", "mode": "greedy", "id": pid, "sample": 0, "answer": "1",
                     "correct": i < accuracy * len(PROBLEMS)})
        for j in range(n):
            rows.append({"benchmark": "arith", "mode": "sample", "id": pid, "sample": j, "answer": "1",
                         "correct": (i + j) % len(PROBLEMS) < sampled_accuracy * len(PROBLEMS)})
    (root / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_run(tmp_path, reward, seed, accuracy, lr=1e-4, steps=5):
    path = tmp_path / f"{reward}-seed{seed}"
    path.mkdir(parents=True)
    (path / "empo_run.json").write_text(json.dumps({
        "empo": {"reward_funcs": [reward], "prompt": "boxed-example", "random_reward_seed": seed, "delta_low": 0.0},
        "model": {"model_name_or_path": "smollm2-135m-instruct", "dtype": "float32"},
        "training": {"seed": seed, "learning_rate": lr, "output_dir": str(path), "reward_weights": None}}))
    (path / "adapter_config.json").write_text("{}")
    (path / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "reward": accuracy * s / steps, "empo/entropy_mean": 1 - s / steps,
                    "empo/kept_fraction": 1.0, "empo/majority_ratio_mean": 0.5 + s / (4 * steps),
                    "completions/mean_length": 20.0}) + "\n" for s in range(1, steps + 1)))
    write_eval(path / "eval" / "arith", accuracy, accuracy)
    return path


@pytest.fixture
def fake_runs(tmp_path):
    accuracy = {"empo": 0.8, "gold_accuracy": 0.9, "random": 0.5}
    runs = [make_run(tmp_path, r, s, acc) for r, acc in accuracy.items() for s in (0, 1, 2)]
    write_eval(tmp_path / "out" / "base" / "arith", 0.5, 0.5)
    return runs


def test_runs_differing_in_more_than_reward_and_seed_are_refused(tmp_path):
    a = load_run(make_run(tmp_path, "empo", 0, 0.5))
    b = load_run(make_run(tmp_path, "random", 0, 0.5, lr=3e-4))
    with pytest.raises(CompareError, match=r"training.learning_rate: empo-seed0=0.0001, random-seed0=0.0003"):
        check_comparable([a, b])
    check_comparable([a, b], allow={"training.learning_rate"})
    c = load_run(make_run(tmp_path / "again", "empo", 0, 0.5))
    with pytest.raises(CompareError, match="same method and seed"):
        check_comparable([a, c])
    with pytest.raises(CompareError, match="not an empo training run"):
        load_run(tmp_path)


def test_compare_statistics_report_and_plots(tmp_path, fake_runs):
    out = tmp_path / "out"
    result = compare(fake_runs, [EvalBlock(name="arith", n=4)], out, evaluate=False, progress=False)
    greedy = next(t for t in result["tables"] if t["metric"] == "greedy accuracy")
    means = {m: s["mean"] for m, s in greedy["methods"].items()}
    assert means == pytest.approx({"base": 0.5, "empo": 0.8, "gold_accuracy": 0.9, "random": 0.5})
    assert greedy["methods"]["empo"]["seeds"] == 3 and greedy["methods"]["base"]["seeds"] == 1
    lo, hi = greedy["methods"]["empo"]["ci"]
    assert lo < 0.8 < hi
    assert greedy["empo_minus_control"]["mean"] == pytest.approx(0.3)
    assert greedy["empo_minus_control"]["p_empo_better"] > 0.95
    assert greedy["recovered_share"]["mean"] == pytest.approx(0.75)  # (0.8 - 0.5) / (0.9 - 0.5)
    report = (out / "report.md").read_text()
    assert "EMPO recovers **75%**" in report and "EMPO − random: **+0.300**" in report
    assert "avg@4 (T=0.8)" in report
    assert (out / "accuracy.png").stat().st_size > 1000 and (out / "training_curves.png").stat().st_size > 1000
    assert json.loads((out / "comparison.json").read_text())["tables"][0]["benchmark"] == "arith"


def test_compare_without_evals_says_which_are_missing(tmp_path, fake_runs):
    with pytest.raises(CompareError, match="no eval in .*base"):
        compare(fake_runs, [EvalBlock(name="gsm8k")], tmp_path / "out", evaluate=False, progress=False)


def test_two_level_bootstrap_widens_with_seed_spread():
    import numpy as np

    same = np.tile((np.arange(40) < 24).astype(float), (3, 1))
    spread = np.stack([(np.arange(40) < k).astype(float) for k in (16, 24, 32)])
    narrow = compare_block({"empo": same})["methods"]["empo"]["ci"]
    wide = compare_block({"empo": spread})["methods"]["empo"]["ci"]
    assert wide[1] - wide[0] > narrow[1] - narrow[0]


def test_cli_compare_refuses_mismatched_runs_in_one_line(tmp_path, capsys):
    a = make_run(tmp_path, "empo", 0, 0.5)
    b = make_run(tmp_path, "random", 0, 0.5, lr=3e-4)
    assert cli_main(["compare", str(a), str(b), "--no-eval", "--output", str(tmp_path / "o")]) == 2
    assert "--allow-diff training.learning_rate" in capsys.readouterr().err


def test_sweep_trains_only_unfinished_runs_then_compares(tmp_path, monkeypatch):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(f"recipe: r.yaml\noutput_root: {tmp_path}\nrewards: [empo, random]\nseeds: [0, 1]\n"
                    "overrides: {max_steps: 3, lora_target_modules: [q_proj, v_proj]}\n"
                    "evals: [{name: arith, n: 2}]\n")
    sweep = Sweep.from_yaml(spec)
    make_run(tmp_path, "empo", 0, 0.5)  # finished
    trained, compared = [], []
    monkeypatch.setattr(compare_module.subprocess, "run",
                        lambda cmd, check: trained.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    monkeypatch.setattr(compare_module, "compare", lambda dirs, blocks, out, **kw: compared.append((dirs, blocks, out)))
    run_sweep(sweep)
    assert len(trained) == 3
    cmd = trained[0]
    assert cmd[cmd.index("--reward_funcs") + 1] == "empo" and cmd[cmd.index("--seed") + 1] == "1"
    assert cmd[cmd.index("--max_steps") + 1] == "3"
    assert cmd[cmd.index("--lora_target_modules") + 1:][:2] == ["q_proj", "v_proj"]
    dirs, blocks, out = compared[0]
    assert len(dirs) == 4 and blocks[0].n == 2 and out == tmp_path / "compare"
    # a run that fails (e.g. a refused resume, its one line on stderr) stops the sweep with one line
    monkeypatch.setattr(compare_module.subprocess, "run", lambda cmd, check: subprocess.CompletedProcess(cmd, 2))
    with pytest.raises(CompareError, match=r"training .*empo-seed1 failed \(exit status 2\)"):
        run_sweep(sweep)
    spec.write_text("recipe: r.yaml\noutput_root: x\nrewardz: [empo]\n")
    with pytest.raises(CompareError, match="unknown key.*rewardz"):
        Sweep.from_yaml(spec)
