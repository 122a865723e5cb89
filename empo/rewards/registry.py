"""Finding and building rewards: a recipe's ``reward_funcs`` entry names one of

- a reward shipped with empo: ``empo``, ``majority_vote``, ``gold_accuracy``, ``format``, ``random``,
  ``self_certainty`` (:mod:`empo.rewards.builtin`) and the field's ``token_entropy``, ``novelty``,
  ``negative_labels`` (:mod:`empo.rewards.token_entropy`, :mod:`~empo.rewards.novelty`,
  :mod:`~empo.rewards.negative_labels`);
- a reward an installed package registers under the entry-point group ``empo.rewards`` (``[project.entry-points.
  "empo.rewards"] novelty = "mypkg.rewards:novelty"``), by its entry-point name;
- an import path: ``mypkg.rewards.novelty`` (the form ``trl grpo --reward_funcs`` accepts) or ``mypkg.rewards:novelty``;
- a file: ``path/to/my_reward.py:novelty`` (relative to the working directory, else to the recipe's folder).

The attribute is a reward function in TRL's contract (it has a ``completions`` parameter; :mod:`empo.rewards.contract`),
or a class or factory that builds one: it is called with ``num_generations=G``, the run's context where it takes a
parameter of that name (``clusterer``: the trainer's clusterer, so a judge loads once; ``min_majority_share``;
``seed``: the run's seed) and the reward's options. A reward function's options are its keyword parameters with
defaults, bound to every call. Options for every reward live in one recipe key::

    reward_funcs: [empo, random, examples/rewards/concise_consensus.py:concise_consensus]
    reward_options:
      empo: {no_answer_reward: -0.5}
      concise_consensus: {length_weight: 0.2}     # by the entry as written, or by the reward's name

:func:`check_rewards` resolves every entry and checks its options against the signature (an unknown option, a
required one missing) without building anything; the recipe layer runs it before any model loads, on every process
that reads the recipe. :func:`build_rewards` builds them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from empo.configs import parse_options
from empo.errors import ConfigError
from empo.rewards.contract import CALL_KEYWORDS, Traits, traits

#: What a factory may take from the run besides its options (see the module docstring).
CONTEXT = ("clusterer", "min_majority_share", "seed")
ENTRY_POINT_GROUP = "empo.rewards"


@dataclass(frozen=True)
class RewardSource:
    """Where a ``reward_funcs`` entry leads: its short name (TRL's column, the options key), origin and object."""

    spec: str
    name: str
    origin: str
    target: object

    @property
    def is_function(self) -> bool:
        """A reward function itself (it takes ``completions``), rather than a class or factory that builds one."""
        return not inspect.isclass(self.target) and "completions" in _parameters(self.target)

    @property
    def traits(self) -> Traits:
        return traits(self.target)

    def option_names(self) -> tuple[set[str], set[str], bool]:
        """(options it accepts, options it requires, whether it accepts any keyword)."""
        params = _parameters(self.target)
        if any(p.kind is p.VAR_KEYWORD for p in params.values()) and not self.is_function:
            return set(), set(), True
        named = {n: p for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if self.is_function:
            return {n for n, p in named.items() if p.default is not p.empty and n not in CALL_KEYWORDS}, set(), False
        accepted = {n for n in named if n not in ("self", "num_generations")}
        required = {n for n, p in named.items() if p.default is p.empty and n not in ("self", "num_generations")}
        return accepted, required - set(CONTEXT), False

    def check_options(self, options: dict) -> None:
        accepted, required, any_keyword = self.option_names()
        if not isinstance(options, dict):
            raise ConfigError(f"reward_options: the options of '{self.spec}' are a mapping, got {options!r}")
        unknown = sorted(set(options) - accepted - {"num_generations"}) if not any_keyword else []
        if "num_generations" in options:
            raise ConfigError(f"reward_options: '{self.spec}' takes num_generations from the recipe's "
                              "num_generations, not from its options")
        if unknown:
            raise ConfigError(f"reward_options: reward '{self.spec}' has no option(s) {unknown}; its options: "
                              f"{sorted(accepted - set(CONTEXT)) or 'none'}")
        missing = sorted(required - set(options))
        if missing:
            raise ConfigError(f"reward_options: reward '{self.spec}' needs option(s) {missing} "
                              f"(reward_options: {{{self.name}: {{{missing[0]}: ...}}}})")

    def build(self, num_generations: int, options: dict | None = None, context: dict | None = None) -> Callable:
        """The reward, ready for TRL's reward call (named, its traits on it)."""
        options = dict(options or {})
        self.check_options(options)
        if self.is_function:
            built = functools.partial(self.target, **options) if options else self.target
        elif callable(self.target) and not inspect.isclass(self.target) and not inspect.isfunction(self.target) \
                and not _parameters(self.target):
            built = self.target  # an instance: a reward object as it is
        else:
            accepted, _, any_keyword = self.option_names()
            given = {k: v for k, v in (context or {}).items() if any_keyword or k in accepted}
            try:
                built = self.target(num_generations=num_generations, **{**given, **options})
            except ConfigError:
                raise
            except (TypeError, ValueError) as e:
                raise ConfigError(f"reward '{self.spec}': {e}") from None
            if not callable(built):
                raise ConfigError(f"reward '{self.spec}': {self.origin} built {type(built).__name__}, not a callable "
                                  "reward")
        if isinstance(built, functools.partial) or not getattr(built, "__name__", None):
            try:
                built.__name__ = self.name
            except (AttributeError, TypeError):
                raise ConfigError(f"reward '{self.spec}' has no __name__ and takes none (TRL names its column "
                                  "after it)") from None
        if isinstance(built, functools.partial):
            t = self.traits
            built.label_free, built.order_dependent, built.token_statistics = (t.label_free, t.order_dependent,
                                                                               t.token_statistics)
        traits(built)  # its token_statistics are known ones
        return built


def shipped() -> dict[str, tuple[object, str]]:
    """The rewards that ship with empo: name -> (class, origin)."""
    from empo.rewards.builtin import BUILTIN
    from empo.rewards.negative_labels import NegativeLabelsReward
    from empo.rewards.novelty import NoveltyReward
    from empo.rewards.token_entropy import TokenEntropyReward

    FIELD = {c.name: c for c in (TokenEntropyReward, NoveltyReward, NegativeLabelsReward)}
    return {**{n: (c, "built-in") for n, c in BUILTIN.items()},
            **{n: (c, f"built-in, the field's: {c.paper}") for n, c in FIELD.items()}}


def entry_points() -> dict[str, object]:
    """The entry points of group ``empo.rewards`` of the installed distributions, by name (not loaded yet)."""
    from importlib.metadata import entry_points as find

    return {ep.name: ep for ep in find(group=ENTRY_POINT_GROUP)}


def resolve(spec: str, base_dirs: tuple[Path, ...] = ()) -> RewardSource:
    """The reward a ``reward_funcs`` entry names (module docstring); one :class:`ConfigError` when it leads nowhere."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"reward_funcs: {spec!r} is not a reward name, import path or file")
    spec = spec.strip()
    table = shipped()
    if spec in table:
        target, origin = table[spec]
        return RewardSource(spec, spec, origin, target)
    if ":" in spec and spec.rsplit(":", 1)[0].endswith(".py"):
        path, attr = spec.rsplit(":", 1)
        return RewardSource(spec, attr, f"file {path}", _attribute(_load_file(spec, path, base_dirs), attr, spec))
    if ":" in spec or "." in spec:
        module, attr = spec.split(":", 1) if ":" in spec else spec.rsplit(".", 1)
        return RewardSource(spec, attr.rsplit(".", 1)[-1], f"module {module}",
                            _attribute(_import(spec, module), attr, spec))
    points = entry_points()
    if spec in points:
        ep = points[spec]
        try:
            target = ep.load()
        except Exception as e:  # noqa: BLE001 - a plugin's import error, whatever it is, is one line
            raise ConfigError(f"reward_funcs: '{spec}': the entry point {ep.value} failed to load: "
                              f"{type(e).__name__}: {e}") from None
        dist = getattr(getattr(ep, "dist", None), "name", None)
        return RewardSource(spec, spec, f"entry point {ep.value}" + (f" ({dist})" if dist else ""), target)
    import difflib

    known = sorted(table) + sorted(points)
    close = difflib.get_close_matches(spec, known, n=1)
    raise ConfigError(f"reward_funcs: unknown reward '{spec}'" + (f" (did you mean '{close[0]}'?)" if close else "")
                      + f"; known: {known}, or an import path (mypkg.rewards:novelty) or a file (path/x.py:novelty)")


def _import(spec: str, module: str):
    try:
        return importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - an import error of the user's module, whatever it is, is one line
        raise ConfigError(f"reward_funcs: '{spec}': cannot import module '{module}': {type(e).__name__}: {e}") from None


def _load_file(spec: str, path: str, base_dirs: tuple[Path, ...]):
    candidates = [Path(path).expanduser()] + [Path(b) / path for b in base_dirs if not Path(path).is_absolute()]
    file = next((c.resolve() for c in candidates if c.is_file()), None)
    if file is None:
        raise ConfigError(f"reward_funcs: '{spec}': no file '{path}' (looked in: "
                          f"{', '.join(str(c.parent.resolve()) for c in candidates)})")
    # one module per file, under a name of its own, so a class loaded twice is the same class
    name = f"empo_reward_file_{file.stem}_{hashlib.sha1(str(file).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    loader = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(loader)
    sys.modules[name] = module
    try:
        loader.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - the user's file failed to run: one line, with where
        del sys.modules[name]
        raise ConfigError(f"reward_funcs: '{spec}': {file} failed to load: {type(e).__name__}: {e}") from None
    return module


def _attribute(module, attr: str, spec: str):
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            public = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
            raise ConfigError(f"reward_funcs: '{spec}': {module.__name__} has no '{attr}' (callables there: "
                              f"{public[:12]})")
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"reward_funcs: '{spec}' is a {type(target).__name__}, not a reward function or class")
    return target


def _parameters(target) -> dict:
    try:
        return dict(inspect.signature(target).parameters)
    except (TypeError, ValueError):  # a builtin without a signature
        return {}


def check_rewards(reward_funcs, reward_options=None, base_dirs: tuple[Path, ...] = ()) -> list[RewardSource]:
    """Resolve every entry and check its options (module docstring), building nothing; the sources, in order."""
    if not reward_funcs:
        raise ConfigError("reward_funcs: a run needs at least one reward")
    sources = [resolve(spec, base_dirs) for spec in reward_funcs]
    names = [s.name for s in sources]
    if len(set(names)) < len(names):
        raise ConfigError(f"reward_funcs: two rewards are named alike ({names}): TRL keys its columns by name")
    for source, options in zip(sources, options_per_reward(sources, parse_options(reward_options))):
        source.check_options(options)
    return sources


def options_per_reward(sources: list[RewardSource], reward_options: dict) -> list[dict]:
    """Each source's options from ``reward_options``, keyed by the entry as written or by the reward's name."""
    keys = {s.spec for s in sources} | {s.name for s in sources}
    unknown = sorted(set(reward_options) - keys)
    if unknown:
        raise ConfigError(f"reward_options: {unknown} name no reward of reward_funcs ({[s.spec for s in sources]})")
    out = []
    for s in sources:
        given = [reward_options[k] for k in dict.fromkeys((s.spec, s.name)) if k in reward_options]
        if len(given) > 1:
            raise ConfigError(f"reward_options: '{s.spec}' has options under both '{s.spec}' and '{s.name}'")
        out.append(dict(given[0]) if given and given[0] else {})
    return out


def build_rewards(reward_funcs, num_generations: int, reward_options=None, context: dict | None = None,
                  base_dirs: tuple[Path, ...] = ()) -> list[Callable]:
    """Every reward of ``reward_funcs``, built with its options and the run's ``context`` (:data:`CONTEXT`)."""
    sources = check_rewards(reward_funcs, reward_options, base_dirs)
    options = options_per_reward(sources, parse_options(reward_options))
    return [s.build(num_generations, o, context) for s, o in zip(sources, options)]


def build_reward(spec: str, num_generations: int, **options) -> Callable:
    """One reward, e.g. ``build_reward("empo", 8, no_answer_reward=-0.5)``; context keys (``clusterer``, ``seed``,
    ``min_majority_share``) go where the reward takes them, like options."""
    source = resolve(spec)
    context = {k: options.pop(k) for k in CONTEXT if k in options and k not in source.option_names()[0]}
    return source.build(num_generations, options, context)
