"""scripts/study_stopping.py on a fake sweep: the stopping rule's choice against the final and the best checkpoint,
and each method at the reference method's token budget."""

import importlib.util
import json
from pathlib import Path

import pytest

from empo.training.checkpoints import mark_complete

SCRIPT = Path(__file__).parents[1] / "scripts" / "study_stopping.py"
spec = importlib.util.spec_from_file_location("study_stopping", SCRIPT)
study_stopping = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study_stopping)

PROBLEMS = [f"p{i}" for i in range(10)]


def write_eval(root: Path, accuracy: float) -> None:
    root.mkdir(parents=True, exist_ok=True)
    rows = [{"benchmark": "arith", "mode": "greedy", "id": pid, "sample": 0, "answer": "1",
             "correct": i < accuracy * len(PROBLEMS)} for i, pid in enumerate(PROBLEMS)]
    (root / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "summary.json").write_text("{}")


def make_run(root: Path, reward: str, seed: int, entropy: list[float], tokens: float, accuracy: dict[int, float]):
    run = root / f"{reward}-seed{seed}"
    run.mkdir(parents=True)
    (run / "empo_run.json").write_text(json.dumps({
        "empo": {"reward_funcs": [reward], "prompt": "boxed-example"},
        "model": {"model_name_or_path": "m", "dtype": "float32"},
        "training": {"seed": seed, "output_dir": str(run), "reward_weights": None}}))
    (run / "metrics.jsonl").write_text("".join(json.dumps(
        {"step": s + 1, "reward": 0.5, "empo/entropy_mean": e, "empo/generated_tokens": tokens,
         "empo/no_answer_rate": 0.0, "completions/mean_length": 20.0}) + "\n" for s, e in enumerate(entropy)))
    for step, acc in accuracy.items():
        if step == 0:
            continue
        if step < 8:
            (run / f"checkpoint-{step}").mkdir()
            (run / f"checkpoint-{step}" / "adapter_config.json").write_text("{}")
            mark_complete(run / f"checkpoint-{step}")
            write_eval(run / "eval" / f"checkpoint-{step}" / "heldout-greedy", acc)
        else:
            write_eval(run / "eval" / "heldout-greedy", acc)


def test_choice_against_final_best_and_equal_tokens(tmp_path):
    root = tmp_path / "sweep"
    spec_file = tmp_path / "sweep.yaml"
    spec_file.write_text("recipe: recipes/SmolLM2-135M-Instruct/empo/config_arith_cpu.yaml\n"
                         f"output_root: {root}\nmethods: [empo, format]\nseeds: [0, 1]\n"
                         "overrides: {max_steps: 8}\n"
                         "evals: [{name: heldout-greedy, benchmarks: arith, n: 0}]\n")
    write_eval(root / "compare" / "base" / "heldout-greedy", 0.5)
    # trailing means of 4: 1.2 (step 4), 0.95, 0.7, 0.45 (step 7) <= 0.5 x 1.2: turns at 7, chooses checkpoint-4
    collapse = [1.2, 1.2, 1.2, 1.2, 0.2, 0.2, 0.2, 0.2]
    steady = [1.2] * 8
    for seed in (0, 1):
        make_run(root, "empo", seed, collapse, 100.0, {4: 0.8, 8: 0.6})
        make_run(root, "format", seed, steady, 50.0, {4: 0.5, 8: 0.7})
    sweep = study_stopping.Sweep.from_yaml(spec_file)
    result = study_stopping.study(sweep, "heldout-greedy", "empo", progress=False)
    summary = study_stopping.summarise(result)
    empo, fmt = summary["arms"]["empo"], summary["arms"]["format"]
    assert empo["turn_steps"] == [7, 7] and empo["chosen_steps"] == [4, 4]
    assert (empo["chosen"], empo["final"], empo["best"]) == (0.8, 0.6, 0.8)
    low, high = empo["chosen_minus_final"]["ci"]
    assert empo["chosen_minus_final"]["mean"] == pytest.approx(0.2) and 0 <= low < 0.2 < high
    assert fmt["turn_steps"] == [None, None] and fmt["chosen_steps"] == [8, 8] and fmt["best_steps"] == [8, 8]
    # budget: empo's 800 tokens; format spends 400 by step 8, within it
    assert summary["budget_tokens"] == 800 and fmt["equal_token_steps"] == [8, 8] and empo["at_equal_tokens"] == 0.6
    text = study_stopping.report(summary, result, {"provenance": study_stopping.provenance(["test"])})
    assert "| empo | [7, 7] | [4, 4] | 0.800 | 0.600 | 0.800" in text


def fake_runs(accuracy_by_seed: dict[int, dict[int, float]], entropy: list[float]) -> dict:
    rows = [{"step": s + 1, "empo/entropy_mean": e, "empo/no_answer_rate": 0.0, "completions/mean_length": 20.0}
            for s, e in enumerate(entropy)]
    seeds = [{"seed": seed, "rows": rows, "accuracy": acc} for seed, acc in accuracy_by_seed.items()]
    return {"arms": {"empo": {"method": "empo", "seeds": seeds}}, "final_step": 8}


def test_the_rule_is_fitted_on_named_seeds_and_judged_on_the_others():
    collapse = [1.2, 1.2, 1.2, 1.2, 0.2, 0.2, 0.2, 0.2]  # the default turns at step 7 and chooses checkpoint-4
    # seed 0 (fit): checkpoint-4 is worse than the final, so the fit moves off the default to a rule choosing step 8;
    # seed 1 (judged): checkpoint-4 is better, which only the default finds -- the fit never saw seed 1
    result = fake_runs({0: {0: 0.5, 4: 0.4, 8: 0.7}, 1: {0: 0.5, 4: 0.8, 8: 0.6}}, collapse)
    fj = study_stopping.fit_and_judge(result, [0])
    assert fj["fit_runs"] == 1 and fj["fit_gain"]["default"] == pytest.approx(-0.3) and fj["fit_gain"]["fitted"] == 0
    assert fj["fitted"] != fj["default"] and fj["default"] == {"window": 4, "entropy_fraction": 0.5, "patience": 2}
    judged = fj["judged"]["empo"]
    assert judged["seeds"] == [1] and judged["default"] == [pytest.approx(0.2)] and judged["fitted"] == [0.0]
    text = "\n".join(study_stopping.judged_lines(fj))
    assert "| empo | [1] | +0.200 (+0.200) | +0.000 (+0.000) |" in text
    assert "Default rule on the judged runs: no worse than the final in 1 of 1 arms, better in 1" in text
    # no rule does better than the default on the fit seeds: the default stays
    flat = fake_runs({0: {0: 0.5, 4: 0.5, 8: 0.5}, 1: {0: 0.5, 4: 0.8, 8: 0.6}}, collapse)
    assert study_stopping.fit_and_judge(flat, [0])["fitted"] == fj["default"]
