"""The reward test kit: the properties a reward must have before a study trusts it, checked by calling it exactly as
the trainer does (:mod:`empo.rewards.contract`). Public as :mod:`empo.testing`; on the command line
``empo reward check SPEC`` (exit 0: every property holds, 1: one fails, 2: the spec or its options are bad).

Each ``check_*`` function takes a reward -- a ``reward_funcs`` entry (``"empo"``, ``"mypkg.rewards:novelty"``,
``"path/x.py:novelty"``) or the function/class itself -- and its options, and returns a :class:`Result`, or raises
:class:`RewardCheckFailure` whose message starts with the property's name; so a pytest test is one line::

    from empo.testing import check_reward
    def test_my_reward():
        check_reward("examples/rewards/concise_consensus.py:concise_consensus")

The properties (:data:`PROPERTIES`):

- ``scores``: one finite float (or None) per completion, for every batch shape (G = 2, 4, 8; one to three groups).
- ``gold_untouched``: a label-free reward, handed gold columns that raise on any access, never touches them.
- ``gold_invariant``: a label-free reward's scores do not change when the gold answers do.
- ``group_equivariant``: permuting a group's completions permutes its scores.
- ``group_independent``: reordering the groups reorders the score blocks, and changing one group leaves the
  others' scores alone.
- ``seeded``: two rewards built alike score a batch alike at the same step (no unseeded randomness).
- ``resumable``: a reward built afresh at step k (a resumed run) scores like one that ran steps 0..k.
- ``hostile_input``: empty, unboxed, enormous and hostile completions (deep nesting, huge powers, control
  characters) get valid scores within the group time budget.
- ``process_split``: the batch split over 2 processes (real ones, gloo, a group spanning both) scores as in one.

Order-dependent rewards (``order_dependent = True``, the ``random`` control) skip the two permutation properties;
supervised ones (``label_free = False``) skip the two gold properties; ``process_split`` needs a spec string (the
child processes import it). Per-token statistics (``token_stats``) are deterministic stand-ins computed from each
completion's ids, so they move with the completion. Scores are compared to within 1e-6.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from empo.errors import ConfigError

PROPERTIES = ("scores", "gold_untouched", "gold_invariant", "group_equivariant", "group_independent", "seeded",
              "resumable", "hostile_input", "process_split")
TOLERANCE = 1e-6
#: The group time budget the hostile inputs must fit (seconds per group; empo's default: 2 x the 5 s math timeout).
GROUP_BUDGET = 10.0


class RewardCheckFailure(AssertionError):
    """A property the reward does not have; the message starts with the property's name."""

    def __init__(self, prop: str, message: str):
        super().__init__(f"{prop}: {message}")
        self.property = prop


@dataclass
class Result:
    property: str
    status: str      # "ok", "fail" or "skip"
    detail: str

    def line(self) -> str:
        return f"{self.status:<5} {self.property:<18} {self.detail}"


# --- the batches -----------------------------------------------------------------------------------------------
QUESTIONS = [("2 + 3", "5"), ("7 - 4", "3"), ("6 * 7", "42"), ("9 + 8", "17"), ("12 / 4", "3")]
#: answer patterns of a group: m = the group's majority answer, o/p = two other answers, None = no boxed answer
PATTERN = ["m", "m", "o", "m", None, "p", "m", "o"]


def _completion(question: str, answer: str | None, k: int) -> str:
    steps = " ".join(["Let me think step by step."] * (1 + k % 3))
    if answer is None:
        return f"{steps} {question} is hard to say."
    return f"{steps} We compute {question}. So the answer is \\boxed{{{answer}}}."


def batch(num_generations: int, groups: int, start: int = 0) -> dict:
    """A generation batch of ``groups`` questions x G completions, as TRL lays it out, with its columns."""
    rows = []
    for q in range(groups):
        question, gold = QUESTIONS[(start + q) % len(QUESTIONS)]
        values = {"m": gold, "o": str(int(float(gold)) + 1), "p": f"\\frac{{{gold}}}{{2}}"}
        for k in range(num_generations):
            code = PATTERN[k % len(PATTERN)]
            rows.append((question, gold, _completion(question, None if code is None else values[code], k),
                         f"q{start + q}"))
    return _columns(rows)


def _columns(rows) -> dict:
    return {"prompts": [[{"role": "user", "content": f"What is {q}?"}] for q, _, _, _ in rows],
            "problem": [f"What is {q}?" for q, _, _, _ in rows],
            "answer": [g for _, g, _, _ in rows],
            "completions": [c for _, _, c, _ in rows],
            "id": [i for _, _, _, i in rows]}


HOSTILE = ["", "   ", "no box at all, just words", "9" * 200_000, "\\boxed{" * 3000,
           "\\boxed{" + "9^{" * 500 + "9" + "}" * 500 + "}", "\\boxed{\\frac{1}{0}}", "\\boxed{" + "(" * 5000 + "}",
           "\x00\x07 \u202e \U0001F600 \\boxed{\x00}", "\\boxed{" + "x" * 100_000 + "}",
           "\\boxed{10^{10^{10^{10}}}}", "\\boxed{}\\boxed{}\\boxed{\\boxed{2}}"]


def hostile_batch(num_generations: int) -> dict:
    groups = math.ceil(len(HOSTILE) / num_generations)
    texts = (HOSTILE * 2)[:groups * num_generations]
    return _columns([("1 + 1", "2", t, f"h{i // num_generations}") for i, t in enumerate(texts)])


def _token_ids(text: str) -> list[int]:
    return list(text.encode("utf-8", "replace"))


def _stand_in_stats(ids: list[int]):
    """Deterministic per-token values from a completion's ids (so they move with it), in the ranges real ones take."""
    import torch

    from empo.rewards.contract import TokenStats

    x = torch.tensor([((i * 2654435761 + 12345) % 1000) / 1000.0 for i in ids], dtype=torch.float32)
    return TokenStats(logps=-3.0 * x, entropies=4.0 * x, self_certainty=2.0 * (1.0 - x))


class Untouchable(list):
    """A gold column that records, and fails, any access."""

    touched = False

    def _boom(self, *a, **k):
        type(self).touched = True
        raise RewardCheckFailure("gold_untouched", "the reward read a gold column")

    __getitem__ = __iter__ = __len__ = __contains__ = __bool__ = __eq__ = __hash__ = _boom  # type: ignore[assignment]
    __reversed__ = index = count = copy = _boom


# --- calling a reward as the trainer does -----------------------------------------------------------------------
def source_of(reward):
    """The :class:`empo.rewards.registry.RewardSource` of a spec string or a reward object."""
    from empo.rewards.registry import RewardSource, resolve

    if isinstance(reward, RewardSource):
        return reward
    if isinstance(reward, str):
        return resolve(reward)
    name = getattr(reward, "__name__", None) or getattr(reward, "name", None) or type(reward).__name__
    return RewardSource(repr(reward), str(name), "object", reward)


def build(reward, options: dict | None, num_generations: int):
    context = {"clusterer": None, "min_majority_share": 0.0, "seed": 0}
    return source_of(reward).build(num_generations, options or {}, context)


def call(func, columns: dict, num_generations: int, step: int = 0, gold=True, offset_slice: slice | None = None):
    """Call ``func`` on ``columns`` (a whole batch, or the ``offset_slice`` of it this process holds) the way
    ``EmpoTrainer`` does: the group view, stand-in token statistics, TRL's state and log calls, the columns."""
    from empo.clustering.groups import gather_groups
    from empo.clustering.math_clusters import MathClusterer
    from empo.rewards.contract import GOLD_COLUMNS, traits

    part = {k: v[offset_slice] if offset_slice else v for k, v in columns.items()}
    texts = part["completions"]
    inputs = [{"problem": p, "answer": a, "id": i} for p, a, i in zip(part["problem"], part["answer"], part["id"])]
    refs = gather_groups(texts, inputs, MathClusterer(), num_generations).local_refs()
    ids = [_token_ids(t) for t in texts]
    metrics: dict = {}
    kwargs = dict(prompts=part["prompts"], completions=texts, completion_ids=ids, empo_group=refs,
                  token_stats=[_stand_in_stats(x) for x in ids], trainer_state=SimpleNamespace(global_step=step),
                  log_metric=lambda name, value: metrics.setdefault(name, []).append(value),
                  log_extra=lambda column, values: None, problem=part["problem"], id=part["id"])
    if gold is True:
        if not traits(func).label_free:  # as the trainer: gold reaches a supervised reward only
            kwargs.update({c: part[c] for c in GOLD_COLUMNS})
    elif gold is not None:
        kwargs.update({c: gold for c in GOLD_COLUMNS})
    scores = func(**kwargs)
    return _valid(scores, len(texts))


def _valid(scores, n: int) -> list:
    try:
        scores = list(scores)
    except TypeError:
        raise RewardCheckFailure("scores", f"returned {type(scores).__name__}, not a list of scores") from None
    if len(scores) != n:
        raise RewardCheckFailure("scores", f"returned {len(scores)} scores for {n} completions")
    for i, s in enumerate(scores):
        if s is None:
            continue
        try:
            value = float(s)
        except (TypeError, ValueError):
            raise RewardCheckFailure("scores", f"score {i} is {s!r}, not a float or None") from None
        if not math.isfinite(value):
            raise RewardCheckFailure("scores", f"score {i} is {value} (return None for no opinion)")
    return [None if s is None else float(s) for s in scores]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all((x is None and y is None) or (x is not None and y is not None and
                                                                   abs(x - y) <= TOLERANCE) for x, y in zip(a, b))


def _permuted(columns: dict, order: list[int]) -> dict:
    return {k: [v[i] for i in order] for k, v in columns.items()}


def _differ(prop: str, expected: list, got: list, what: str) -> None:
    if not _same(expected, got):
        bad = next(i for i, (x, y) in enumerate(zip(expected, got)) if not _same([x], [y]))
        raise RewardCheckFailure(prop, f"{what}: completion {bad} scored {got[bad]}, expected {expected[bad]}")


# --- the properties ---------------------------------------------------------------------------------------------
SHAPES = ((2, 1), (4, 3), (8, 2))


def check_scores(reward, options=None, **_) -> Result:
    for g, groups in SHAPES:
        call(build(reward, options, g), batch(g, groups), g)
    return Result("scores", "ok", f"one finite score or None per completion, G x groups = "
                                  f"{', '.join(f'{g}x{n}' for g, n in SHAPES)}")


def _label_free(reward) -> bool:
    return source_of(reward).traits.label_free


def check_gold_untouched(reward, options=None, num_generations: int = 4) -> Result:
    if not _label_free(reward):
        return Result("gold_untouched", "skip", "declares label_free = False (a supervised reward reads gold)")
    g, columns = num_generations, batch(num_generations, 3)
    Untouchable.touched = False
    try:
        call(build(reward, options, g), columns, g, gold=Untouchable(columns["answer"]))
    except RewardCheckFailure:
        raise
    except Exception:  # noqa: BLE001 - whatever it raised, the column's record says whether it read gold
        if not Untouchable.touched:
            raise
    if Untouchable.touched:
        raise RewardCheckFailure("gold_untouched", "a label-free reward touched a gold column ('answer'); declare "
                                 "label_free = False if it is supervised")
    return Result("gold_untouched", "ok", "gold columns that raise on access were never touched")


def check_gold_invariant(reward, options=None, num_generations: int = 4) -> Result:
    if not _label_free(reward):
        return Result("gold_invariant", "skip", "declares label_free = False (a supervised reward reads gold)")
    g, columns = num_generations, batch(num_generations, 3)
    right = call(build(reward, options, g), columns, g, gold=list(columns["answer"]))
    wrong = call(build(reward, options, g), columns, g, gold=["-1"] * len(columns["answer"]))
    _differ("gold_invariant", right, wrong, "the scores changed with the gold answers")
    return Result("gold_invariant", "ok", "the same scores with right and wrong gold answers")


def _skip_order_dependent(prop: str, reward) -> Result | None:
    """The permutation properties do not apply to a reward whose scores belong to positions (the random control)."""
    if source_of(reward).traits.order_dependent:
        return Result(prop, "skip", "declares order_dependent = True")
    return None


def check_group_equivariant(reward, options=None, num_generations: int = 4) -> Result:
    if skip := _skip_order_dependent("group_equivariant", reward):
        return skip
    g, columns = num_generations, batch(num_generations, 3)
    base = call(build(reward, options, g), columns, g)
    for shift in (1, 2):
        order = [q * g + (g - 1 - (k + shift) % g) for q in range(3) for k in range(g)]  # reversed and rotated
        got = call(build(reward, options, g), _permuted(columns, order), g)
        _differ("group_equivariant", [base[i] for i in order], got, "permuting a group's completions")
    return Result("group_equivariant", "ok", "permuting each group's completions permutes its scores")


def check_group_independent(reward, options=None, num_generations: int = 4) -> Result:
    if skip := _skip_order_dependent("group_independent", reward):
        return skip
    g, columns = num_generations, batch(num_generations, 3)
    base = call(build(reward, options, g), columns, g)
    order = [q * g + k for q in (2, 0, 1) for k in range(g)]
    got = call(build(reward, options, g), _permuted(columns, order), g)
    _differ("group_independent", [base[i] for i in order], got, "reordering the groups")
    other = batch(g, 1, start=3)
    changed = {k: other[k] + v[g:] for k, v in columns.items()}  # group 0 replaced by another question's
    got = call(build(reward, options, g), changed, g)
    _differ("group_independent", base[g:], got[g:], "changing another group")
    return Result("group_independent", "ok", "reordering groups reorders the score blocks; one group's change "
                                             "leaves the others alone")


def check_seeded(reward, options=None, num_generations: int = 4) -> Result:
    g, columns = num_generations, batch(num_generations, 3)
    a = call(build(reward, options, g), columns, g, step=5)
    b = call(build(reward, options, g), columns, g, step=5)
    _differ("seeded", a, b, "two rewards built alike scored the same batch at the same step differently (unseeded "
                            "randomness?)")
    return Result("seeded", "ok", "built alike, the same scores at the same step")


def check_resumable(reward, options=None, num_generations: int = 4) -> Result:
    g, columns = num_generations, batch(num_generations, 3)
    running = build(reward, options, g)
    for step in range(3):
        call(running, columns, g, step=step)
    ran = [call(running, columns, g, step=3) for _ in range(2)]  # two calls in one step: dynamic sampling's rounds
    fresh = build(reward, options, g)
    resumed = [call(fresh, columns, g, step=3) for _ in range(2)]
    for a, b in zip(ran, resumed):
        _differ("resumable", a, b, "a reward built afresh at step 3 (a resumed run) scored unlike the one that ran "
                                   "steps 0-2")
    return Result("resumable", "ok", "built afresh at step 3, the scores of the run that got there")


def check_hostile_input(reward, options=None, num_generations: int = 4, budget: float = GROUP_BUDGET) -> Result:
    g, columns = num_generations, hostile_batch(num_generations)
    groups = len(columns["completions"]) // g
    func = build(reward, options, g)
    done: dict = {}

    def work():
        try:
            done["scores"] = call(func, columns, g)
        except BaseException as e:  # noqa: BLE001 - reported below, with the property
            done["error"] = e

    started = time.perf_counter()
    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(budget * groups)
    seconds = time.perf_counter() - started
    if worker.is_alive():
        raise RewardCheckFailure("hostile_input", f"still running after {budget * groups:.0f} s ({groups} groups x "
                                                  f"{budget:.0f} s budget)")
    if "error" in done:
        e = done["error"]
        if isinstance(e, RewardCheckFailure):
            raise RewardCheckFailure("hostile_input", str(e)) from e
        raise RewardCheckFailure("hostile_input", f"{type(e).__name__}: {str(e)[:200]}") from e
    return Result("hostile_input", "ok", f"{len(HOSTILE)} hostile completions scored in {seconds:.1f} s "
                                         f"(budget {budget * groups:.0f} s)")


def check_process_split(reward, options=None, num_generations: int = 4, timeout: float = 300.0) -> Result:
    if not isinstance(reward, str):
        return Result("process_split", "skip", "needs a spec string (the 2 processes import the reward)")
    g = num_generations
    columns = batch(g, 3)
    alone = call(build(reward, options, g), columns, g)
    n = len(columns["completions"])
    half = n // 2 + (1 if (n // 2) % g == 0 else 0)  # a group spans the two processes
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        procs = []
        for rank in range(2):
            # torchrun's variables: the reward sees what it sees in a launched run, and the worker ends like one
            env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
            job = json.dumps({"reward": reward, "options": options or {}, "G": g, "split": half,
                              "out": str(Path(tmp) / f"rank{rank}.json"), "cwd": os.getcwd()})
            procs.append(subprocess.Popen([sys.executable, "-m", "empo.rewards.kit", job], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        deadline = time.monotonic() + timeout
        errors = []
        for p in procs:
            try:
                _, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                for q in procs:
                    q.kill()
                raise RewardCheckFailure("process_split", f"the 2 processes did not finish in {timeout:.0f} s") \
                    from None
            if p.returncode:
                errors.append(err.strip().splitlines()[-1] if err.strip() else f"exit {p.returncode}")
        if errors:
            raise RewardCheckFailure("process_split", f"failed in 2 processes: {errors[0]}")
        split = [s for rank in range(2) for s in json.loads((Path(tmp) / f"rank{rank}.json").read_text())]
    _differ("process_split", alone, split, f"the batch split {half}/{n - half} over 2 processes")
    return Result("process_split", "ok", f"split {half}/{n - half} over 2 processes (a group spanning both): "
                                         "the one-process scores")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHECKS = {"scores": check_scores, "gold_untouched": check_gold_untouched, "gold_invariant": check_gold_invariant,
          "group_equivariant": check_group_equivariant, "group_independent": check_group_independent,
          "seeded": check_seeded, "resumable": check_resumable, "hostile_input": check_hostile_input,
          "process_split": check_process_split}


def check_reward(reward, options: dict | None = None, properties=PROPERTIES, raise_on_failure: bool = True,
                 num_generations: int = 4) -> list[Result]:
    """Every property (or those named) of ``reward`` with ``options``. A spec or options that cannot be used raise
    :class:`empo.errors.ConfigError` first. ``raise_on_failure``: raise the first failure; otherwise every result."""
    unknown = [p for p in properties if p not in CHECKS]
    if unknown:
        raise ConfigError(f"unknown reward propert(ies) {unknown}; known: {list(PROPERTIES)}")
    build(reward, options, num_generations)  # a bad spec or option: one ConfigError, before any property
    results = []
    for prop in properties:
        try:
            result = CHECKS[prop](reward, options) if prop == "scores" else \
                CHECKS[prop](reward, options, num_generations=num_generations)
        except RewardCheckFailure as e:
            if raise_on_failure:
                raise
            result = Result(prop, "fail", str(e).split(": ", 1)[-1])
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - a reward that crashes on the kit's batches fails the property
            failure = RewardCheckFailure(prop, f"{type(e).__name__}: {str(e)[:200]}")
            if raise_on_failure:
                raise failure from e
            result = Result(prop, "fail", str(failure).split(": ", 1)[-1])
        results.append(result)
    return results


def _split_worker(job: dict) -> None:
    """One of the two processes of :func:`check_process_split` (``python -m empo.rewards.kit JOB``, under the
    variables torchrun sets). It leaves the group to :func:`~empo.distributed.exit_worker`, which destroys it."""
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    os.chdir(job["cwd"])
    sys.path.insert(0, job["cwd"])
    dist.init_process_group("gloo")  # env:// from the variables above
    g = job["G"]
    columns = batch(g, 3)
    part = slice(0, job["split"]) if rank == 0 else slice(job["split"], None)
    scores = call(build(job["reward"], job["options"], g), columns, g, offset_slice=part)
    Path(job["out"]).write_text(json.dumps(scores))


if __name__ == "__main__":
    import traceback

    from empo.distributed import exit_worker

    try:
        _split_worker(json.loads(sys.argv[1]))
        status = 0
    except Exception:  # noqa: BLE001 - its last line is what check_process_split reports
        traceback.print_exc()
        status = 1
    exit_worker(status)  # as empo.train ends: a finished worker does not abort in interpreter teardown
