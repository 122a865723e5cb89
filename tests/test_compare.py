"""`empo compare` on tiny fake runs (no training, no generation): checks, statistics, report, plots, sweeps."""

import json
import subprocess
from pathlib import Path

import pytest

import empo.compare.comparison as compare_module
import empo.compare.sweep as sweep_module
from empo.cli import main as cli_main
from empo.compare.comparison import EvalBlock, compare
from empo.compare.runs import check_comparable, load_run
from empo.compare.stats import compare_block
from empo.compare.sweep import Sweep, run_sweep
from empo.errors import CompareError
from empo.training.checkpoints import mark_complete

PROBLEMS = [f"p{i}" for i in range(20)]


def write_eval(root, accuracy, sampled_accuracy, n=4, hard_accuracy=None):
    """Greedy and sampled rows of 20 problems on 'arith' (with ``hard_accuracy``, 20 more on 'arith:add2+sub2')."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    blocks = (("arith", accuracy, sampled_accuracy), ("arith:add2+sub2", hard_accuracy, hard_accuracy))
    for bench, acc, sampled in blocks:
        if acc is None:
            continue
        for i, pid in enumerate(PROBLEMS):
            rows.append({"benchmark": bench, "mode": "greedy", "id": pid, "sample": 0, "answer": "1",
                         "correct": i < acc * len(PROBLEMS)})
            for j in range(n):
                rows.append({"benchmark": bench, "mode": "sample", "id": pid, "sample": j, "answer": "1",
                             "correct": (i + j) % len(PROBLEMS) < sampled * len(PROBLEMS)})
    (root / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_training_samples(path, reward, steps):
    """Two groups of 4 per step, gold '1'. Group A: majority '1' (right), group B: majority '2' (wrong), both trained
    at every step but the last, where both are filtered. Advantages: the reward's, as TRL centres them."""
    rows = []
    for step in range(steps):
        kept = step < steps - 1
        for gid, answers in (("a", ["1", "1", "1", "3"]), ("b", ["2", "2", "2", "1"])):
            correct = [a == "1" for a in answers]
            if reward == "gold_accuracy":
                r = [float(c) for c in correct]
            elif reward == "random":
                r = [1.0, 0.0, 0.0, 1.0]
            else:  # a label-free cluster reward: the majority gets 1
                r = [1.0, 1.0, 1.0, 0.0]
            adv = [x - sum(r) / len(r) for x in r]
            rows.append({"step": step, "id": gid, "kept": kept, "answers": answers, "gold": "1",
                         "rewards": {reward: r}, "advantages": adv})
    (path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_run(tmp_path, reward, seed, accuracy, lr=1e-4, steps=5, empo_settings=None):
    path = tmp_path / f"{reward}-seed{seed}"
    path.mkdir(parents=True)
    (path / "empo_run.json").write_text(json.dumps({
        "empo": {"reward_funcs": [reward], "prompt": "boxed-example", "delta_low": 0.0,
                 **(empo_settings or {})},
        "model": {"model_name_or_path": "smollm2-135m-instruct", "dtype": "float32"},
        "training": {"seed": seed, "learning_rate": lr, "output_dir": str(path), "reward_weights": None}}))
    (path / "adapter_config.json").write_text("{}")
    (path / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "reward": accuracy * s / steps, "empo/entropy_mean": 1 - s / steps,
                    "empo/kept_fraction": 1.0, "empo/majority_ratio_mean": 0.5 + s / (4 * steps),
                    "empo/pseudo_label_accuracy": 0.5, "completions/mean_length": 20.0}) + "\n"
        for s in range(1, steps + 1)))
    write_training_samples(path, reward, steps)
    write_eval(path / "eval" / "arith", accuracy, accuracy)
    return path


@pytest.fixture
def fake_runs(tmp_path):
    accuracy = {"empo": 0.8, "gold_accuracy": 0.9, "random": 0.5, "format": 0.6}
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
    assert means == pytest.approx({"base": 0.5, "empo": 0.8, "gold_accuracy": 0.9, "random": 0.5, "format": 0.6})
    empo = greedy["methods"]["empo"]
    assert empo["seeds"] == 3 and greedy["methods"]["base"]["seeds"] == 1
    lo, hi = empo["ci"]
    assert lo < 0.8 < hi
    assert empo["minus_base"]["mean"] == pytest.approx(0.3) and empo["minus_random"]["mean"] == pytest.approx(0.3)
    assert empo["minus_format"]["mean"] == pytest.approx(0.2)
    assert empo["minus_random"]["p_ahead"] > 0.95 and empo["minus_random"]["ci"][0] > 0
    assert empo["gold_share"]["mean"] == pytest.approx(0.75)  # (0.8 - 0.5) / (0.9 - 0.5)
    assert greedy["methods"]["format"]["gold_share"]["mean"] == pytest.approx(0.25)
    assert "gold_share" not in greedy["methods"]["gold_accuracy"] and "minus_random" not in greedy["methods"]["random"]
    assert greedy["gold_gain"]["mean"] == pytest.approx(0.4)
    # every sample of a fake problem has the same answer, so the majority vote is right as often as a sample
    maj = next(t for t in result["tables"] if t["metric"] == "maj@4 (T=0.8)")
    avg = next(t for t in result["tables"] if t["metric"] == "avg@4 (T=0.8)")
    assert maj["methods"]["empo"]["mean"] == pytest.approx(avg["methods"]["empo"]["mean"])
    # what the rewards taught (write_training_samples): one right and one wrong majority per trained step
    training = result["methods"]["empo"]["training"][0]
    assert training["pseudo_label_accuracy"] == pytest.approx(0.5)
    assert training["kept_groups"] == 8 and training["groups"] == 10 and training["skipped_step_share"] == 0.2
    # group a: all four advantages agree with gold; group b: all four point against it
    assert training["sign_disagreement"] == pytest.approx(0.5)
    assert training["agreement"] == {"same": 0.5, "opposite": 0.5, "other": 0.0, "no signal": 0.0}
    gold = result["methods"]["gold_accuracy"]["training"][0]
    assert gold["sign_disagreement"] == 0.0 and gold["agreement"]["same"] == 1.0
    report = (out / "report.md").read_text()
    assert "| empo | 0.800 |" in report and "| +0.300 [" in report and "| 75% [" in report
    assert "avg@4 (T=0.8)" in report and "maj@4 (T=0.8)" in report
    assert "| empo | 0.500 (0.50 0.50 0.50) | 0.500 (0.50 0.50 0.50) |" in report
    for png in ("accuracy.png", "training_curves.png", "accuracy_vs_pseudo_label.png"):
        assert (out / png).stat().st_size > 1000
    assert json.loads((out / "comparison.json").read_text())["tables"][0]["benchmark"] == "arith"


def test_a_block_of_several_benchmarks_is_also_compared_pooled(tmp_path, fake_runs):
    for run in fake_runs:
        write_eval(run / "eval" / "arith", 0.8, 0.8, hard_accuracy=0.2)
    write_eval(tmp_path / "out" / "base" / "arith", 0.5, 0.5, hard_accuracy=0.1)
    result = compare(fake_runs, [EvalBlock(name="arith", benchmarks="arith,arith:add2+sub2", n=4)], tmp_path / "out",
                     evaluate=False, progress=False)
    greedy = {t["benchmark"]: t for t in result["tables"] if t["metric"] == "greedy accuracy"}
    pooled = "arith + arith:add2+sub2"
    assert list(greedy) == ["arith", "arith:add2+sub2", pooled]
    assert greedy[pooled]["methods"]["empo"]["mean"] == pytest.approx(0.5)  # 20 problems at 0.8, 20 at 0.2
    assert greedy[pooled]["methods"]["base"]["mean"] == pytest.approx(0.3)
    assert greedy[pooled]["methods"]["empo"]["problems"] == 40
    assert f"## {pooled} -- greedy accuracy" in (tmp_path / "out" / "report.md").read_text()


def test_a_block_limited_to_some_seeds_is_evaluated_and_compared_on_those_runs_only(tmp_path, fake_runs, monkeypatch):
    # seed 0 of every method has a costly 'sampled' eval; seeds 1 and 2 have none, and none is asked of them
    for run in fake_runs:
        if run.name.endswith("seed0"):
            write_eval(run / "eval" / "sampled", 0.7, 0.7)
    write_eval(tmp_path / "out" / "base" / "sampled", 0.4, 0.4)
    blocks = [EvalBlock(name="arith", n=4), EvalBlock(name="sampled", greedy=False, n=4, seeds=[0])]
    evaluated = []
    monkeypatch.setattr(compare_module, "run_eval", lambda config, generator, progress: evaluated.append(config))
    monkeypatch.setattr("empo.model.load_tokenizer", lambda name: None)
    monkeypatch.setattr("empo.model.load_model", lambda *a, **k: None)
    monkeypatch.setattr("empo.rollout.hf.HFGenerator", lambda model, tokenizer: None)
    compare_module.evaluate_all([load_run(r) for r in fake_runs], blocks, tmp_path / "out", progress=False)
    sampled = sorted(Path(c.output_dir).parent.parent.name for c in evaluated if c.output_dir.endswith("sampled"))
    assert sampled == ["empo-seed0", "format-seed0", "gold_accuracy-seed0", "out", "random-seed0"]
    assert all("seeds" not in vars(c) for c in evaluated)
    result = compare(fake_runs, blocks, tmp_path / "out", evaluate=False, progress=False)
    table = next(t for t in result["tables"] if t["block"] == "sampled" and t["metric"] == "avg@4 (T=0.8)")
    assert table["methods"]["empo"]["seeds"] == 1 and table["methods"]["empo"]["mean"] == pytest.approx(0.7)
    assert table["seeds"]["empo"] == [0]
    full = next(t for t in result["tables"] if t["block"] == "arith" and t["metric"] == "greedy accuracy")
    assert full["methods"]["empo"]["seeds"] == 3
    assert "(eval block `sampled`, seeds [0] only)" in (tmp_path / "out" / "report.md").read_text()


def test_empo_is_also_measured_against_the_other_label_free_rewards(tmp_path, fake_runs):
    runs = fake_runs + [make_run(tmp_path, "majority_vote", s, 0.7) for s in (0, 1, 2)]
    result = compare(runs, [EvalBlock(name="arith")], tmp_path / "out", evaluate=False, progress=False)
    greedy = result["tables"][0]["methods"]
    assert greedy["empo"]["minus_majority_vote"]["mean"] == pytest.approx(0.1)  # 0.8 - 0.7, paired by problem
    assert 0.5 < greedy["empo"]["minus_majority_vote"]["p_ahead"] < 1.0  # ahead, not in every draw (20 problems)
    assert "minus_majority_vote" not in greedy["gold_accuracy"] and "minus_empo" not in greedy["majority_vote"]
    assert "empo − majority_vote: +0.100 [" in (tmp_path / "out" / "report.md").read_text()


def test_the_entropy_filter_is_part_of_the_method(tmp_path):
    runs = [load_run(make_run(tmp_path / "a", "empo", 0, 0.5)),
            load_run(make_run(tmp_path / "b", "empo", 0, 0.5, empo_settings={"entropy_filter": False})),
            load_run(make_run(tmp_path / "c", "empo", 0, 0.5, empo_settings={"delta_low": 0.5, "delta_high": 1.5})),
            load_run(make_run(tmp_path / "d", "empo", 0, 0.5, empo_settings={"delta_low": 0.2}))]
    assert [r.method for r in runs] == ["empo", "empo[no filter]", "empo[H in (0.5, 1.5)]", "empo[H in (0.2, log G)]"]
    check_comparable(runs)  # different methods, not different settings


def test_a_gold_reward_that_did_not_gain_gives_no_share(tmp_path):
    import numpy as np

    flat = np.tile((np.arange(40) < 20).astype(float), (3, 1))
    result = compare_block({"base": flat[:1], "gold_accuracy": flat, "empo": np.tile((np.arange(40) < 30), (3, 1))})
    assert result["gold_gain"]["mean"] == 0.0 and result["methods"]["empo"]["gold_share"] == {"mean": None, "ci": None}


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
    spec.write_text("recipe: recipes/SmolLM2-135M-Instruct/empo/config_arith_cpu.yaml\n"
                    f"output_root: {tmp_path}\nseeds: [0, 1]\n"
                    "methods: [empo, random, {name: empo-nofilter, reward_funcs: [empo], "
                    "overrides: {entropy_filter: false, max_steps: 4}}]\n"
                    "overrides: {max_steps: 3, lora_target_modules: [q_proj, v_proj]}\n"
                    "evals: [{name: arith, n: 2}]\n")
    sweep = Sweep.from_yaml(spec)
    for run, step in ((make_run(tmp_path, "empo", 0, 0.5), 3),  # finished
                      (make_run(tmp_path, "random", 1, 0.5), 2)):  # finished a shorter sweep: resumed
        (run / f"checkpoint-{step}").mkdir()
        mark_complete(run / f"checkpoint-{step}")
    (make_run(tmp_path, "random", 0, 0.5) / "checkpoint-3").mkdir()  # incomplete: a kill cut its save short
    trained, compared = [], []
    monkeypatch.setattr(sweep_module.subprocess, "run",
                        lambda cmd, check: trained.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    monkeypatch.setattr(sweep_module, "compare", lambda dirs, blocks, out, **kw: compared.append((dirs, blocks, out)))
    run_sweep(sweep)
    assert [c[c.index("--output_dir") + 1].rsplit("/", 1)[-1] for c in trained] == \
        ["empo-seed1", "random-seed0", "random-seed1", "empo-nofilter-seed0", "empo-nofilter-seed1"]
    cmd = trained[0]
    assert cmd[cmd.index("--reward_funcs") + 1] == "empo" and cmd[cmd.index("--seed") + 1] == "1"
    assert cmd[cmd.index("--max_steps") + 1] == "3"
    assert cmd[cmd.index("--lora_target_modules") + 1:][:2] == ["q_proj", "v_proj"]
    nofilter = trained[3]  # the method's own keys come after the sweep's, so they win
    assert nofilter[nofilter.index("--entropy_filter") + 1] == "False"
    assert nofilter[nofilter.index("--reward_funcs") + 1] == "empo"
    assert nofilter[len(nofilter) - nofilter[::-1].index("--max_steps")] == "4"
    dirs, blocks, out = compared[0]
    assert len(dirs) == 6 and blocks[0].n == 2 and out == tmp_path / "compare"
    # a run that fails (e.g. a refused resume, its one line on stderr) stops the sweep with one line
    monkeypatch.setattr(sweep_module.subprocess, "run", lambda cmd, check: subprocess.CompletedProcess(cmd, 2))
    with pytest.raises(CompareError, match=r"training .*empo-seed1 failed \(exit status 2\)"):
        run_sweep(sweep)
    spec.write_text("recipe: r.yaml\noutput_root: x\nmethodz: [empo]\n")
    with pytest.raises(CompareError, match="unknown key.*methodz"):
        Sweep.from_yaml(spec)
    spec.write_text("recipe: r.yaml\noutput_root: x\nmethods: [empo, {name: empo, overides: {}}]\n")
    with pytest.raises(CompareError, match="sweep method .*overides"):
        Sweep.from_yaml(spec)
    spec.write_text("recipe: r.yaml\noutput_root: x\nmethods: [empo, {name: empo}]\n")
    with pytest.raises(CompareError, match="a name appears twice"):
        Sweep.from_yaml(spec)


def test_methods_name_which_groups_train_and_free_form_runs_have_no_math_diagnostics(tmp_path):
    from empo.compare.comparison import training_diagnostics

    named = {
        "empo": {}, "empo[no filter]": {"entropy_filter": False},
        "empo[H in (0.0, 1.04)]": {"delta_high": 1.04},
        "empo[majority >= 0.5, dynamic]": {"min_majority_share": 0.5, "dynamic_sampling": True},
        "empo[H in (0.0, 1.04), dynamic x6, skip short]": {"delta_high": 1.04, "dynamic_sampling": True,
                                                           "max_sampling_rounds": 6,
                                                           "dynamic_sampling_unfilled": "skip"},
    }
    for i, (name, settings) in enumerate(named.items()):
        assert load_run(make_run(tmp_path / str(i), "empo", 0, 0.5, empo_settings=settings)).method == name
    math_run = load_run(make_run(tmp_path / "m", "empo", 0, 0.5))
    free_run = load_run(make_run(tmp_path / "f", "empo", 0, 0.5, empo_settings={"clustering": "entailment"}))
    assert training_diagnostics(math_run) is not None and training_diagnostics(free_run) is None


def test_a_sweep_method_names_a_reward_file_with_its_options(tmp_path):
    from empo.compare.runs import method_name
    from empo.recipe import load_recipe

    example = Path(__file__).resolve().parents[1] / "examples" / "rewards" / "concise_consensus.py"
    spec = tmp_path / "sweep.yaml"
    spec.write_text("recipe: recipes/SmolLM2-135M-Instruct/empo/config_arith_cpu.yaml\n"
                    f"output_root: {tmp_path}\nseeds: [0]\n"
                    f"methods: [empo, {{name: concise, reward_funcs: ['{example}:concise_consensus'], "
                    "overrides: {reward_options: {concise_consensus: {target_tokens: 24}}}}]\n")
    sweep = Sweep.from_yaml(spec)
    cmd = sweep.train_command(sweep.arms()[1], 0)
    recipe = load_recipe(cmd[cmd.index("--config") + 1], cmd[cmd.index("--config") + 2:])  # as empo train reads it
    assert recipe.empo.reward_funcs == [f"{example}:concise_consensus"]
    record = {"empo": {"reward_funcs": recipe.empo.reward_funcs, "reward_options": recipe.empo.reward_options},
              "training": {}}
    assert method_name(record) == "concise_consensus{concise_consensus.target_tokens=24}"
