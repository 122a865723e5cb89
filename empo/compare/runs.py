"""A training run as ``empo compare`` sees it: its method (the reward(s) and the entropy filter), its seed and
its settings; and the rule that runs may be compared only when they differ in method and seed alone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from empo.errors import CompareError

#: Settings that name or place a run rather than change what it learns.
BOOKKEEPING = {"training.output_dir", "training.logging_dir", "training.run_name", "training.resume_from_checkpoint",
               "training.hub_model_id", "training.overwrite_output_dir", "empo.num_threads"}


#: The replicate variable.
SEED_KEYS = {"training.seed", "training.data_seed",
             "empo.random_reward_seed"}  # older records' seed of the random reward (it now takes the run's seed)


#: The intended variable: the reward and its options, and which groups train -- the entropy filter (switching it off
#: is the paper's ablation), a minimum majority share, and dynamic sampling.
METHOD_KEYS = {"empo.reward_funcs", "empo.reward_options", "training.reward_weights", "empo.entropy_filter",
               "empo.delta_low", "empo.delta_high", "empo.min_majority_share", "empo.dynamic_sampling",
               "empo.max_sampling_rounds", "empo.dynamic_sampling_unfilled", "empo.sampling_round_size",
               "empo.sampling_round_cap"}


@dataclass
class Run:
    path: Path
    method: str
    seed: int
    settings: dict

    @property
    def name(self) -> str:
        return self.path.name


def load_run(path: str | Path) -> Run:
    path = Path(path)
    config = path / "empo_run.json"
    if not config.is_file():
        raise CompareError(f"'{path}' is not an empo training run (no empo_run.json)")
    from empo.training.run_dir import complete_record

    # completed as a resume reads it: a run recorded before a library added a setting compares equal on it
    raw = complete_record(json.loads(config.read_text(encoding="utf-8")))
    settings = {f"{section}.{k}": v for section in ("empo", "model", "training") for k, v in raw[section].items()}
    return Run(path, method_name(raw), int(raw["training"]["seed"]), settings)


def method_name(record: dict) -> str:
    """The reward(s) and their options, then which groups train when that is not the default: ``empo``,
    ``empo+format@1.0,0.5``, ``empo{empo.no_answer_reward=-0.5}``,
    ``empo[no filter]``, ``empo[H in (0.0, 1.04)]``, ``empo[majority >= 0.5, dynamic]``,
    ``empo[H in (0.0, 1.04), dynamic x6, skip short]`` (dynamic sampling with other rounds or short-batch rule),
    ``empo[..., dynamic, shortfall rounds <= 2.0x]`` (rounds sized to the shortfall)."""
    from empo.configs import EmpoArguments

    empo, defaults = record["empo"], EmpoArguments()
    setting = lambda key: empo.get(key, getattr(defaults, key))  # noqa: E731 - absent: an older record's default
    name = "+".join(short_name(spec) for spec in empo["reward_funcs"])
    options = empo.get("reward_options") or {}
    if isinstance(options, str):
        options = json.loads(options)
    if options:
        name += "{" + ", ".join(f"{short_name(r)}.{k}={v}" for r, o in options.items() for k, v in o.items()) + "}"
    if record["training"].get("reward_weights"):
        name += "@" + ",".join(str(w) for w in record["training"]["reward_weights"])
    tags = []
    if not setting("entropy_filter"):
        tags.append("no filter")
    elif (setting("delta_low"), setting("delta_high")) != (defaults.delta_low, defaults.delta_high):
        high = setting("delta_high")
        tags.append(f"H in ({setting('delta_low')}, {'log G' if high is None else high})")
    if setting("min_majority_share"):
        tags.append(f"majority >= {setting('min_majority_share')}")
    if setting("dynamic_sampling"):
        rounds = setting("max_sampling_rounds")
        tags.append("dynamic" + (f" x{rounds}" if rounds != defaults.max_sampling_rounds else "")
                    + (", skip short" if setting("dynamic_sampling_unfilled") == "skip" else "")
                    + (f", shortfall rounds <= {setting('sampling_round_cap')}x" if setting("sampling_round_size")
                       == "shortfall" else ""))
    return name + (f"[{', '.join(tags)}]" if tags else "")


def short_name(spec: str) -> str:
    """A reward's name from its reward_funcs entry without importing it: ``mypkg.rewards:novelty``, ``x.py:novelty``
    and ``mypkg.rewards.novelty`` are ``novelty`` (what empo.rewards.registry names them)."""
    if ":" in spec:
        return spec.rsplit(":", 1)[1].rsplit(".", 1)[-1]
    return spec.rsplit(".", 1)[-1]


def setting_differences(runs: list[Run], allow: set[str] = frozenset()) -> dict[str, dict[str, object]]:
    """Settings (other than method, seed and bookkeeping) whose value is not the same in every run."""
    ignored = BOOKKEEPING | SEED_KEYS | METHOD_KEYS | set(allow)
    keys = sorted({k for r in runs for k in r.settings} - ignored)
    diffs = {}
    for k in keys:
        values = {r.name: r.settings.get(k) for r in runs}
        if len({json.dumps(v, sort_keys=True) for v in values.values()}) > 1:
            diffs[k] = values
    return diffs


def check_comparable(runs: list[Run], allow: set[str] = frozenset()) -> None:
    if not runs:
        raise CompareError("no runs to compare")
    seen = {}
    for r in runs:
        if (r.method, r.seed) in seen:
            raise CompareError(f"runs '{seen[(r.method, r.seed)]}' and '{r.path}' are the same method and seed "
                               f"({r.method}, seed {r.seed})")
        seen[(r.method, r.seed)] = r.path
    diffs = setting_differences(runs, allow)
    if diffs:
        lines = [f"  {k}: " + ", ".join(f"{run}={v!r}" for run, v in values.items()) for k, values in diffs.items()]
        raise CompareError("the runs differ in more than the reward and the seed:\n" + "\n".join(lines)
                           + "\n(pass --allow-diff " + ",".join(diffs) + " to compare them anyway)")
