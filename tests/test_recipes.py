"""Recipes parse into the three dataclasses; bad ones fail before any model loads, naming the problem."""

from pathlib import Path

import pytest
import yaml
from extras import HAVE_VLLM, REQUIRE_VLLM

from empo.errors import ConfigError
from empo.recipe import load_recipe, validate

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (ROOT / "recipes").glob("*/*/*.yaml") if p.parent.name != "sweeps")
CPU_RECIPES = [p for p in RECIPES if "_cpu" in p.stem]
GPU_RECIPES = [p for p in RECIPES if "_cpu" not in p.stem]
SWEEPS = sorted((ROOT / "recipes").glob("*/sweeps/*.yaml"))
recipe_id = lambda p: str(p.relative_to(ROOT / "recipes"))  # noqa: E731


@pytest.mark.parametrize("recipe", CPU_RECIPES, ids=recipe_id)
def test_shipped_cpu_recipes_parse_and_validate(recipe):
    r = load_recipe(recipe, check_machine=False)
    empo_args, training_args, model_args = r.empo, r.training, r.model
    if training_args.use_vllm and not HAVE_VLLM and not REQUIRE_VLLM:
        # without the extra, a vLLM recipe must stop at validation with the one-line install hint
        with pytest.raises(ConfigError, match="use_vllm is set but vLLM is not installed.*install_vllm_cpu.sh"):
            validate(empo_args, training_args)
    else:
        validate(empo_args, training_args)
    assert training_args.bf16 is False and training_args.gradient_checkpointing is False  # CPU recipes
    assert model_args.use_peft


def test_recipes_differ_only_in_reward():
    empo = yaml.safe_load((ROOT / "recipes/SmolLM2-135M-Instruct/empo/config_arith_cpu.yaml").read_text())
    grpo = yaml.safe_load((ROOT / "recipes/SmolLM2-135M-Instruct/grpo/config_arith_cpu.yaml").read_text())
    diff = {k for k in empo.keys() | grpo.keys() if empo.get(k) != grpo.get(k)}
    assert diff == {"reward_funcs", "entropy_filter", "output_dir"}


def test_the_default_recipe_is_the_league_arm_that_lifted_greedy_accuracy():
    """`empo train` runs what the league measured (eval/results/league_cpu/): its arm 'empo-band-ds', every defining
    setting the same but the seed (the league ran 0, 1, 2)."""
    from empo.compare.sweep import Sweep
    from empo.resources import DEFAULT_RECIPE
    from empo.training.run_dir import defining_differences, run_record

    league = Sweep.from_yaml(ROOT / "recipes/SmolLM2-135M-Instruct/sweeps/league_cpu.yaml")
    arm = next(a for a in league.arms() if a.name == "empo-band-ds")
    default = load_recipe(DEFAULT_RECIPE, check_machine=False)
    differences = defining_differences(league.run_record(arm, 0), run_record(default.empo, default.training,
                                                                            default.model))
    assert differences == ["seed: 0 -> 42"]
    # its run summary names the suite that measures it (empo.training.report keeps that list by hand)
    from empo.training.report import CPU_DEFAULT_DATASETS
    assert default.empo.dataset_name in CPU_DEFAULT_DATASETS


def write(tmp_path, **changes):
    base = yaml.safe_load((ROOT / "recipes/SmolLM2-135M-Instruct/empo/config_arith_cpu.yaml").read_text())
    base.update(changes)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(base))
    return str(path)


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match="unknown recipe key.*'lerning_rate' \\(did you mean 'learning_rate'\\?\\)"):
        load_recipe(write(tmp_path, lerning_rate=0.1))


def test_unknown_reward_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"r\.yaml: reward_funcs: unknown reward 'gold'"):
        load_recipe(write(tmp_path, reward_funcs=["empo", "gold"]))


def test_batch_not_whole_groups(tmp_path):
    with pytest.raises(ConfigError,
                       match=r"r\.yaml: generation_batch_size \(12\) must be divisible by num_generations"):
        load_recipe(write(tmp_path, per_device_train_batch_size=12))


def test_command_line_overrides_recipe(tmp_path):
    r = load_recipe(write(tmp_path), ["--max_steps", "3", "--delta_low", "0.2"])
    assert r.training.max_steps == 3 and r.empo.delta_low == 0.2 and r.sets("max_steps") and not r.sets("weight_decay")


@pytest.mark.parametrize("spec", SWEEPS, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_shipped_sweeps_parse_and_their_recipe_exists(spec):
    from empo.compare.sweep import Sweep

    sweep = Sweep.from_yaml(spec)
    assert (ROOT / sweep.recipe).is_file() and sweep.blocks()
