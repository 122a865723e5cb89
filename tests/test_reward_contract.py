"""The reward contract on the trainer path (empo.rewards.contract): what EmpoTrainer calls a reward with -- no gold
for a label-free reward, gold for a supervised one, TRL's token statistics, the group view -- and a reward from a file
outside the package trained from a recipe in one process and two."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from scripted import SCRIPT, G, free_port, generation_batch, make_trainer

from empo.errors import ConfigError
from empo.rewards import GOLD_COLUMNS, reward

QUESTIONS = list(SCRIPT)
ROOT = Path(__file__).resolve().parents[1]


def recorder(name, **traits):
    calls = []

    @reward(**traits)
    def record(prompts, completions, **kwargs):
        calls.append(kwargs)
        return [0.5] * len(completions)

    record.__name__, record.calls = name, calls
    return record


def test_a_label_free_reward_receives_no_gold_column_and_a_supervised_one_does(tmp_path, tiny):
    free, supervised = recorder("free"), recorder("supervised", label_free=False)
    trainer = make_trainer(tmp_path, tiny, QUESTIONS, rewards=(free, supervised), entropy_filter=False)
    trainer.model.train()
    trainer._generate_and_score_completions(generation_batch(trainer, QUESTIONS))
    (seen_free,), (seen_supervised,) = free.calls, supervised.calls
    assert not set(GOLD_COLUMNS) & set(seen_free)
    assert seen_supervised["answer"] == ["0"] * len(QUESTIONS) * G
    for kw in (seen_free, seen_supervised):  # the rest of the contract reaches both
        assert {"id", "completion_ids", "empo_group", "trainer_state", "log_metric"} <= set(kw)
        assert "token_stats" not in kw  # no reward of this run asked for token statistics


def test_token_statistics_are_the_policys_own_values(tmp_path, tiny):
    asked = recorder("stats", token_statistics=("logps", "entropies", "self_certainty"))
    trainer = make_trainer(tmp_path, tiny, QUESTIONS, rewards=(asked,), entropy_filter=False, temperature=0.7)
    generated = []
    original = trainer._generate
    trainer._generate = lambda prompts: generated.append(original(prompts)) or generated[-1]
    trainer.model.train()
    trainer._generate_and_score_completions(generation_batch(trainer, QUESTIONS))
    (kw,) = asked.calls
    prompt_ids, completion_ids = generated[0][0], generated[0][1]
    assert kw["completion_ids"] == completion_ids
    model = trainer.model
    for i in (0, 5, len(completion_ids) - 1):  # each completion alone, no padding: the reference
        ids = torch.tensor([prompt_ids[i] + completion_ids[i]])
        p, n = len(prompt_ids[i]), len(completion_ids[i])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, p - 1:p - 1 + n].float() / 0.7
        logp = torch.log_softmax(logits, -1)
        stats = kw["token_stats"][i]
        token_logp = logp.gather(1, ids[0, p:].unsqueeze(1)).squeeze(1)
        entropy = -(logp.exp() * logp).sum(-1)
        certainty = -torch.log(torch.tensor(float(logp.shape[-1]))) - logp.mean(-1)
        assert stats.logps.shape == stats.entropies.shape == stats.self_certainty.shape == (n,)
        assert torch.allclose(stats.logps, token_logp, atol=1e-4)
        assert torch.allclose(stats.entropies, entropy, atol=1e-4)
        assert torch.allclose(stats.self_certainty, certainty, atol=1e-4)


def test_a_rewards_own_metric_reaches_the_logs(tmp_path, tiny):
    def measured(prompts, completions, log_metric, **kwargs):
        log_metric("mine/answer_chars", sum(len(c) for c in completions) / len(completions))
        return [1.0] * len(completions)

    trainer = make_trainer(tmp_path, tiny, QUESTIONS, rewards=(measured,), entropy_filter=False)
    trainer.model.train()
    trainer._generate_and_score_completions(generation_batch(trainer, QUESTIONS))
    assert trainer._metrics["train"]["mine/answer_chars"][-1] > 0


def test_callables_with_their_weights_and_positional_construction_take_the_recipes_checks(tmp_path, tiny):
    from trl import GRPOConfig

    from empo.configs import EmpoArguments
    from empo.training.trainer import EmpoTrainer

    a, b = recorder("a"), recorder("b")
    trainer = make_trainer(tmp_path, tiny, QUESTIONS, rewards=(a, b), reward_weights=[1.0, 0.5])
    assert trainer.reward_func_names == ["a", "b"]
    ready = make_trainer(tmp_path, tiny, QUESTIONS)
    args = GRPOConfig(output_dir=str(tmp_path / "p"), num_generations=G, per_device_train_batch_size=G * 4,
                      loss_type="bnpo", use_cpu=True, report_to="none", bf16=False)
    with pytest.raises(ConfigError, match="bnpo"):  # the filter cannot be exact with bnpo: refused, positionally too
        EmpoTrainer(ready.model, [a], args, ready.train_dataset, empo_args=EmpoArguments())


REWARD_FILE = '''
def shortest_wins(prompts, completions, bonus: float = 1.0, **kwargs):
    """Label-free: the shorter half of each call's completions gets the bonus (a reward only a test would want)."""
    lengths = sorted(len(c) for c in completions)
    middle = lengths[len(lengths) // 2]
    return [bonus if len(c) < middle else 0.0 for c in completions]
'''


def write_recipe(tmp_path, tiny, **extra) -> Path:
    (tmp_path / "rewards").mkdir(exist_ok=True)
    (tmp_path / "rewards" / "short.py").write_text(REWARD_FILE)
    recipe = {"model_name_or_path": tiny, "dataset_name": "arith", "dataset_limit": 8, "num_generations": 4,
              "per_device_train_batch_size": 4, "max_completion_length": 8, "max_steps": 1, "use_peft": True,
              "lora_r": 4, "lora_alpha": 8, "lora_target_modules": ["q_proj", "v_proj"], "bf16": False,
              "use_cpu": True, "report_to": "none", "save_strategy": "no", "logging_steps": 1, "num_threads": 1,
              "reward_funcs": ["empo", "rewards/short.py:shortest_wins"],
              "reward_options": {"shortest_wins": {"bonus": 0.25}}, "output_dir": str(tmp_path / "out"), **extra}
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps(recipe))  # JSON is YAML
    return path


def test_a_reward_from_a_file_trains_from_a_recipe(tmp_path, tiny, monkeypatch):
    from empo.recipe import load_recipe
    from empo.training.run import train

    recipe = write_recipe(tmp_path, tiny)
    monkeypatch.chdir(ROOT)  # the file is found relative to the recipe, wherever the command runs
    assert train(load_recipe(recipe)) == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/shortest_wins/mean" in r for r in rows)
    sample = json.loads((tmp_path / "out" / "samples.jsonl").read_text().splitlines()[0])
    assert set(sample["rewards"]) == {"empo", "shortest_wins"} and set(sample["rewards"]["shortest_wins"]) <= {0, .25}


@pytest.mark.parametrize("change, message", [
    ({"reward_funcs": ["rewards/missing.py:f"]}, "no file 'rewards/missing.py'"),
    ({"reward_funcs": ["rewards/short.py:nothing"]}, "has no 'nothing'"),
    ({"reward_funcs": ["no_such_pkg.rewards:f"]}, "cannot import module 'no_such_pkg.rewards'"),
    ({"reward_options": {"shortest_wins": {"bonnus": 1}}}, r"has no option\(s\) \['bonnus'\]"),
    ({"reward_options": {"novelty": {}}}, r"\['novelty'\] name no reward"),
    ({"reward_funcs": ["gold_accuracy"], "reward_options": None, "answer_field": None}, "read the gold answers"),
])
def test_a_bad_reward_is_one_line_before_any_model_loads(tmp_path, tiny, change, message):
    from empo.recipe import load_recipe

    with pytest.raises(ConfigError, match=message):
        load_recipe(write_recipe(tmp_path, "no-such-model-is-loaded", **change))


@pytest.mark.slow
def test_a_reward_from_a_file_trains_in_two_processes(tmp_path, tiny):
    recipe = write_recipe(tmp_path, tiny, per_device_train_batch_size=2)  # 2 processes x 2: a group spans both
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "empo.train",
                           "--config", str(recipe)], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/shortest_wins/mean" in r for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["token_entropy", "novelty", "negative_labels", "self_certainty"])
def test_the_fields_rewards_train_a_step_of_the_cpu_default(name, tmp_path, default_model_path):
    out = tmp_path / "run"
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "2", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "empo.train", "--reward_funcs", name, "--max_steps", "1",
                           "--save_strategy", "no", "--output_dir", str(out)], env=env, capture_output=True, text=True,
                          timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert f"rewards/{name}/mean" in row and "empo train finished: steps 0 -> 1" in done.stdout
