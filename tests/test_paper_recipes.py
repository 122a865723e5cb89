"""The paper-scale (GPU) recipes: each parses into the three dataclasses and validates, the variants differ only
where they say they do, and each trains one step on CPU with only the machine-sized keys shrunk."""

from pathlib import Path

import pytest
import yaml

from empo.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
GPU_RECIPES = sorted(p for p in (ROOT / "recipes").glob("*/*/*.yaml")
                     if p.parent.name != "sweeps" and "_cpu" not in p.stem)
recipe_id = lambda p: str(p.relative_to(ROOT / "recipes"))  # noqa: E731

# What the CPU run changes, and why: the model and the free-form judge's model (no hub here), the data (a small
# file in the recipe's columns), sizes, and the switches that need a GPU or the network. Every other key of the
# recipe reaches the trainer unchanged.
MACHINE_KEYS = {"model_name_or_path", "dtype", "dataset_name", "per_device_train_batch_size",
                "gradient_accumulation_steps", "generation_batch_size", "max_completion_length",
                "vllm_max_model_length", "max_steps", "num_train_epochs", "bf16", "gradient_checkpointing",
                "use_vllm", "use_cpu", "report_to", "save_strategy", "push_to_hub", "output_dir",
                "accelerate_config", "num_threads", "judge_model", "judge_device", "judge_engine"}
# The paper's training data per recipe name (without _lora) and the models that train on it.
PAPER_DATA = {"config_numina20k": "data/train/numina_math_20k.jsonl",
              "config_natural_reasoning": "qingyangzhang/natural_reasoning_simple"}
MATH_MODELS = ("Qwen2.5-Math-1.5B", "Qwen2.5-Math-7B")
NATURAL_REASONING_MODELS = ("Qwen2.5-3B", "Qwen2.5-7B")


def load(recipe: Path) -> dict:
    return yaml.safe_load(recipe.read_text())


def test_there_are_paper_recipes_for_both_math_models_and_all_three_methods():
    names = {recipe_id(p) for p in GPU_RECIPES}
    for model in MATH_MODELS:
        for method in ("empo", "grpo", "random"):
            assert f"{model}/{method}/config_numina20k.yaml" in names
            assert f"{model}/{method}/config_numina20k_lora.yaml" in names
        assert (ROOT / "recipes" / model / "model_config.json").is_file()


def test_there_are_natural_reasoning_recipes_with_the_official_values():
    names = {recipe_id(p) for p in GPU_RECIPES}
    for model in NATURAL_REASONING_MODELS:
        assert f"{model}/empo/config_natural_reasoning.yaml" in names
        assert (ROOT / "recipes" / model / "model_config.json").is_file()
        r = load(ROOT / "recipes" / model / "empo" / "config_natural_reasoning.yaml")
        assert r["model_name_or_path"] == f"Qwen/{model}"
        # official (TRL era, 3B/7B natural reasoning): G=12, lr 1e-6, prompt 1024 + completion 1024, 6 trainers x 1 x 16
        assert (r["num_generations"], r["learning_rate"], r["max_completion_length"]) == (12, 1e-6, 1024)
        assert r["vllm_max_model_length"] == 2048 and r["vllm_gpu_memory_utilization"] == 0.5
        assert r["generation_batch_size"] == 6 * r["per_device_train_batch_size"] * r["gradient_accumulation_steps"]
        assert (r["clustering"], r["entailment_judge"], r["judge_model"]) == ("entailment", "verifier",
                                                                              "TIGER-Lab/general-verifier")
        assert r["reward_options"] == {"empo": {"no_answer_reward": -0.5}}
        assert (r["min_majority_share"], r["reward_funcs"]) == (0.2, ["empo"])
    # the 7B recipe is the 3B one with the model swapped (as the official 7B files are)
    three, seven = (load(ROOT / "recipes" / m / "empo" / "config_natural_reasoning.yaml")
                    for m in NATURAL_REASONING_MODELS)
    assert {k for k in three.keys() | seven.keys() if three.get(k) != seven.get(k)} == {
        "model_name_or_path", "hub_model_id", "output_dir"}


@pytest.mark.parametrize("recipe", GPU_RECIPES, ids=recipe_id)
def test_gpu_recipe_parses_and_validates(recipe, monkeypatch):
    # any_machine: transformers refuses bf16 on a machine without a GPU unless told it is a CPU run;
    # check_machine=False: vLLM being installed is a property of the GPU machine, not of the recipe
    r = load_recipe(recipe, any_machine=True, check_machine=False)
    empo_args, training_args, model_args = r.empo, r.training, r.model
    assert training_args.bf16 and training_args.gradient_checkpointing and training_args.use_vllm
    assert training_args.report_to and "none" not in training_args.report_to
    assert training_args.save_steps > 0 and training_args.hub_model_id
    assert empo_args.dataset_name == PAPER_DATA[recipe.stem.removesuffix("_lora")] and empo_args.dataset_rows
    assert (ROOT / empo_args.accelerate_config).is_file()
    assert training_args.beta == 0.0
    assert model_args.use_peft == recipe.stem.endswith("_lora")


@pytest.mark.parametrize("recipe", [p for p in GPU_RECIPES if p.stem.endswith("_lora")], ids=recipe_id)
def test_lora_variant_differs_from_the_paper_variant_only_in_peft_lr_and_names(recipe):
    lora, full = load(recipe), load(recipe.with_name(recipe.name.replace("_lora", "")))
    diff = {k for k in lora.keys() | full.keys() if lora.get(k) != full.get(k)}
    peft_keys = {k for k in lora if k.startswith(("lora_", "use_peft"))}
    assert diff - {"learning_rate", "output_dir", "hub_model_id"} == peft_keys


@pytest.mark.parametrize("model", MATH_MODELS)
@pytest.mark.parametrize("variant", ["config_numina20k.yaml", "config_numina20k_lora.yaml"])
def test_methods_differ_only_in_the_reward(model, variant):
    base = load(ROOT / "recipes" / model / "empo" / variant)
    for method in ("grpo", "random"):
        other = load(ROOT / "recipes" / model / method / variant)
        diff = {k for k in base.keys() | other.keys() if base.get(k) != other.get(k)}
        assert diff == {"reward_funcs", "output_dir", "hub_model_id"}, method


def shrink(recipe: Path, tmp_path: Path, model: str) -> Path:
    import json

    config = load(recipe)
    # a few questions in the columns the recipe reads (numina: id, problem, answer; natural reasoning: question,
    # reference_answer)
    q, a = config.get("question_field", "problem"), config.get("answer_field", "answer")
    data = tmp_path / "sample.jsonl"
    data.write_text("".join(json.dumps({"id": f"q-{i}", q: f"What is {i} + {i}?", a: str(2 * i)}) + "\n"
                            for i in range(4)))
    g = config["num_generations"]
    config.update(model_name_or_path=model, dtype="float32", dataset_name=str(data),
                  per_device_train_batch_size=g, gradient_accumulation_steps=1, generation_batch_size=g,
                  max_completion_length=8, vllm_max_model_length=None, max_steps=1, num_train_epochs=1,
                  bf16=False, gradient_checkpointing=False, use_vllm=False, use_cpu=True, report_to="none",
                  save_strategy="no", push_to_hub=False, output_dir=str(tmp_path / "out"),
                  accelerate_config=None, num_threads=2)
    if config.get("clustering", "math") != "math":  # the free-form judge: the tiny model too, as a verifier
        config.update(judge_model=model, judge_device="cpu", judge_engine="hf")  # no vLLM in the default run
    assert set(config) - set(load(recipe)) <= MACHINE_KEYS
    path = tmp_path / recipe.name
    path.write_text(yaml.safe_dump(config))
    return path


# ~10-20 s each on 2 shared cores: one canary per kind of reward (math, free-form) in the default run, all of them
# under `pytest -m slow`
CANARIES = ("Qwen2.5-Math-1.5B/empo/config_numina20k.yaml", "Qwen2.5-3B/empo/config_natural_reasoning.yaml")
ONE_STEP = [pytest.param(p, marks=() if recipe_id(p) in CANARIES else pytest.mark.slow, id=recipe_id(p))
            for p in GPU_RECIPES]


@pytest.mark.parametrize("recipe", ONE_STEP)
def test_gpu_recipe_trains_one_step_on_cpu(recipe, tmp_path, tiny):
    import json

    from empo.train import main

    shrunk = shrink(recipe, tmp_path, tiny)
    changed = {k for k, v in load(shrunk).items() if load(recipe).get(k) != v}
    assert changed <= MACHINE_KEYS  # nothing else was touched
    assert main(["--config", str(shrunk)]) == 0
    out = tmp_path / "out"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows and rows[-1]["step"] == 1
    run = json.loads((out / "empo_run.json").read_text())
    original = load(recipe)
    for key in ("num_generations", "learning_rate", "loss_type", "epsilon", "epsilon_high", "beta",
                "importance_sampling_level", "temperature", "reward_funcs", "entropy_filter", "use_peft",
                "clustering", "entailment_judge", "reward_options", "min_majority_share", "question_field"):
        if key in original:
            section = next(s for s in ("training", "empo", "model") if key in run[s])
            assert run[section][key] == original[key], key
    weights = "adapter_model.safetensors" if original["use_peft"] else "model.safetensors"
    assert (out / weights).is_file()
