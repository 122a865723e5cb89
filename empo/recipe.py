"""Recipes: one YAML file (open-r1 layout) that fills the three dataclasses, read and checked in one place.

    recipe = load_recipe("recipes/SmolLM2-135M-Instruct/empo/config_arith_cpu.yaml", ["--max_steps", "10"])
    recipe.empo, recipe.training, recipe.model     # EmpoArguments, trl.GRPOConfig, trl.ModelConfig

A recipe is named by a path or by its place among the shipped recipes (:mod:`empo.resources`), from any directory;
flags after it override it. Every command that reads a recipe (``empo train``, ``python -m empo.train`` under
accelerate or torchrun, ``empo launch``, the sweeps of ``empo compare``) calls :func:`load_recipe`, and every check a
recipe gets is in :func:`validate`: an unknown key (with the closest known one), a setting out of range, a reward
that cannot be found or takes other options (:mod:`empo.rewards.registry`), a filter setting that could not be
exact, a missing extra. Each is one :class:`ConfigError` naming the key, before any model loads. ``EmpoTrainer``
runs :func:`validate` too, for code that builds it directly.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from pathlib import Path

from empo.errors import ConfigError


@dataclass
class Recipe:
    """A parsed recipe: the file, the mapping it holds, the flags that override it, and the three dataclasses."""

    path: Path
    raw: dict
    overrides: list[str]
    empo: object       # empo.configs.EmpoArguments
    training: object   # trl.GRPOConfig
    model: object      # trl.ModelConfig

    def sets(self, key: str) -> bool:
        """Whether the recipe file or a flag sets ``key`` (rather than leaving the dataclass default)."""
        return key in self.raw or f"--{key}" in self.overrides

    def argv(self) -> list[str]:
        """The arguments that load this recipe again (``--config FILE`` and the overrides)."""
        return ["--config", str(self.path), *self.overrides]


def find_recipe(spec: str | Path) -> Path:
    """The recipe file ``spec`` names: a path, or a shipped recipe (``recipes/<model>/<method>/config_x.yaml``, with
    or without ``recipes/`` and ``.yaml``)."""
    from empo import resources

    path = resources.resolve(spec, "recipes")
    if path is not None:
        return path
    if Path(spec).expanduser().exists():
        raise ConfigError(f"recipe '{spec}' is not a file")
    raise ConfigError(f"recipe '{spec}' does not exist, neither as a file nor as a shipped recipe (empo recipes "
                      "lists them)")


def split_config(argv: list[str]) -> tuple[str, list[str]]:
    """(recipe spec, the other arguments) of an ``empo train`` command line; no ``--config``: the default recipe."""
    from empo.resources import DEFAULT_RECIPE

    argv = list(argv)
    if "--config" not in argv:
        return DEFAULT_RECIPE, argv
    i = argv.index("--config")
    if i + 1 >= len(argv):
        raise ConfigError("--config needs a recipe file")
    return argv[i + 1], argv[:i] + argv[i + 2:]


def load_recipe(spec: str | Path | None = None, overrides: list[str] | tuple = (), *, any_machine: bool = False,
                check_machine: bool = True) -> Recipe:
    """Read, parse and check a recipe. ``any_machine``: parse as if on a GPU machine wherever this runs (``empo launch``
    plans on a login node; transformers refuses bf16 without a GPU unless told ``use_cpu``). ``check_machine``: also
    require what this machine must have to train it (the vLLM extra)."""
    from trl import GRPOConfig, ModelConfig, TrlParser

    from empo.configs import EmpoArguments
    from empo.io import read_yaml
    from empo.resources import DEFAULT_RECIPE

    path = find_recipe(spec or DEFAULT_RECIPE)
    overrides = list(overrides)
    raw = read_yaml(path, "recipe")
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe '{path}' is not a YAML mapping")
    types = (EmpoArguments, GRPOConfig, ModelConfig)
    try:
        check_known_keys(raw, {f.name for dc in types for f in fields(dc)} | {"env"}, "recipe")
        argv = ["--config", str(path), *overrides, *(["--use_cpu", "true"] if any_machine else [])]
        empo_args, training_args, model_args = TrlParser(types).parse_args_and_config(argv)
        validate(empo_args, training_args, check_machine=check_machine, base_dirs=(path.parent,))
    except ValueError as e:  # ConfigError, and the dataclasses' own checks (TRL: batch not a whole number of groups)
        raise ConfigError(f"{path}: {e}") from None
    return Recipe(path=path, raw=raw, overrides=overrides, empo=empo_args, training=training_args, model=model_args)


def check_known_keys(config: dict, known: set[str], what: str) -> None:
    """Raise one error naming every key of ``config`` not in ``known``, each with the closest known key."""
    unknown = [k for k in config if k not in known]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, known, n=1)
            hints.append(f"'{k}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise ConfigError(f"unknown {what} key(s): {', '.join(hints)}")


def validate(empo_args, training_args, check_machine: bool = True, num_rewards: int | None = None,
             base_dirs: tuple[Path, ...] = ()) -> None:
    """Every check a recipe gets, before any model loads; one :class:`ConfigError` naming the setting.
    ``num_rewards``: the rewards a direct caller of ``EmpoTrainer`` hands it (their weights are checked against those,
    not against ``reward_funcs``); ``base_dirs``: where a reward file named relative to the recipe is looked for."""
    from empo.configs import CLUSTERINGS, ENTAILMENT_JUDGES, JUDGE_ENGINES, ROUND_SIZES, STOPPING_MODES, UNFILLED
    from empo.rewards.registry import check_rewards

    e = empo_args
    if e.clustering not in CLUSTERINGS:
        raise ConfigError(f"clustering: '{e.clustering}' is not one of {list(CLUSTERINGS)}")
    if e.entailment_judge not in ENTAILMENT_JUDGES:
        raise ConfigError(f"entailment_judge: '{e.entailment_judge}' is not one of {list(ENTAILMENT_JUDGES)}")
    if e.clustering == "entailment" and e.entailment_judge == "nli" and not e.judge_model:
        raise ConfigError("judge_model: the 'nli' entailment judge needs a model (sequence classification with an "
                          "entailment label)")
    if not 0.0 <= e.min_majority_share <= 1.0:
        raise ConfigError(f"min_majority_share: {e.min_majority_share} is not in [0, 1]")
    if e.max_answer_chars is not None and e.max_answer_chars < 1:
        raise ConfigError(f"max_answer_chars: {e.max_answer_chars} must be >= 1 (or None for no limit)")
    if e.judge_template is not None and not (e.clustering == "entailment" and e.entailment_judge == "verifier"):
        raise ConfigError("judge_template: only the verifier judge (clustering: entailment, entailment_judge: "
                          "verifier) has a prompt")
    if e.judge_batch_size is not None and e.judge_batch_size < 1:
        raise ConfigError(f"judge_batch_size: {e.judge_batch_size} must be >= 1")
    if e.judge_engine not in JUDGE_ENGINES:
        raise ConfigError(f"judge_engine: '{e.judge_engine}' is not one of {list(JUDGE_ENGINES)}")
    vllm_judge = e.judge_engine == "vllm"
    if vllm_judge and (e.clustering, e.entailment_judge) != ("entailment", "verifier"):
        judge = e.entailment_judge if e.clustering == "entailment" else f"clustering '{e.clustering}'"
        raise ConfigError(f"judge_engine: 'vllm' runs the verifier judge (clustering: entailment, entailment_judge: "
                          f"verifier), not {judge}: use judge_engine: hf")
    colocated = training_args is not None and training_args.use_vllm and training_args.vllm_mode == "colocate"
    if vllm_judge and colocated:
        # vLLM's parallel state is one per process: TRL's colocated engine already holds it
        raise ConfigError("judge_engine: 'vllm' cannot run beside TRL's colocated vLLM engine (vllm_mode: "
                          "colocate): use vllm_mode: server, or judge_engine: hf")
    if not 0.0 < e.judge_gpu_memory_utilization < 1.0:
        raise ConfigError(f"judge_gpu_memory_utilization: {e.judge_gpu_memory_utilization} is not in (0, 1)")
    if check_machine and vllm_judge:
        from empo.errors import MissingExtraError
        from empo.rollout.vllm_engine import require_vllm

        try:
            require_vllm()
        except MissingExtraError as err:
            reason = str(err).replace("; or use --backend hf", "")  # that is the rollouts' way out, not the judge's
            raise ConfigError(f"judge_engine is 'vllm' but {reason}; or use judge_engine: hf") from None
    if e.dynamic_sampling and not (e.entropy_filter or e.min_majority_share > 0):
        raise ConfigError("dynamic_sampling needs a criterion: entropy_filter (the band delta_low < H < delta_high) "
                          "or min_majority_share > 0")
    if e.max_sampling_rounds < 1:
        raise ConfigError(f"max_sampling_rounds: {e.max_sampling_rounds} must be >= 1")
    if e.sampling_round_size not in ROUND_SIZES:
        raise ConfigError(f"sampling_round_size: '{e.sampling_round_size}' is not one of {list(ROUND_SIZES)}")
    if e.sampling_round_cap < 1:
        raise ConfigError(f"sampling_round_cap: {e.sampling_round_cap} must be >= 1 (generation batches)")
    if e.dynamic_sampling_unfilled not in UNFILLED:
        raise ConfigError(f"dynamic_sampling_unfilled: '{e.dynamic_sampling_unfilled}' is not one of {list(UNFILLED)}")
    if e.log_samples_every < 1:
        raise ConfigError(f"log_samples_every: {e.log_samples_every} must be >= 1")
    if e.stopping not in STOPPING_MODES:
        raise ConfigError(f"stopping: '{e.stopping}' is not one of {list(STOPPING_MODES)}")
    if e.stopping_window < 1 or e.stopping_patience < 1 or not 0.0 < e.stopping_entropy_fraction < 1.0:
        raise ConfigError("stopping_window and stopping_patience must be >= 1 and stopping_entropy_fraction in (0, 1); "
                          f"got {e.stopping_window}, {e.stopping_patience}, {e.stopping_entropy_fraction}")
    if num_rewards is None:  # the recipe's rewards: each resolved, its options checked (empo.rewards.registry)
        supervised = [s.spec for s in check_rewards(e.reward_funcs, e.reward_options, base_dirs)
                      if not s.traits.label_free]
        if supervised and e.answer_field is None:
            raise ConfigError(f"answer_field: reward(s) {supervised} read the gold answers (label_free = False), but "
                              "answer_field is None (unlabeled data)")
    if training_args is None:
        return
    count = len(e.reward_funcs) if num_rewards is None else num_rewards
    if training_args.reward_weights is not None and len(training_args.reward_weights) != count:
        raise ConfigError(f"reward_weights has {len(training_args.reward_weights)} entries for {count} "
                          + ("reward_funcs" if num_rewards is None else "rewards"))
    if training_args.num_generations < 2:
        raise ConfigError("num_generations must be >= 2 (EMPO compares answers within a group)")
    if e.entropy_filter or e.dynamic_sampling:  # a short dynamic-sampling batch masks its filler groups the same way
        from empo.training.filter import check_filter_exact

        check_filter_exact(training_args)
    if check_machine:
        from empo.reporting import reporting_problem

        problem = reporting_problem(training_args.report_to)
        if problem:
            raise ConfigError(problem)
    if check_machine and training_args.use_vllm:
        from empo.errors import MissingExtraError
        from empo.rollout.vllm_engine import require_vllm

        try:
            require_vllm()
        except MissingExtraError as err:
            raise ConfigError(f"use_vllm is set but {err}") from None
