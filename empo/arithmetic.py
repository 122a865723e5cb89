"""The default task: seeded arithmetic questions with gold answers, in levels of difficulty.

It needs no download, so the default job runs anywhere. Each question belongs to exactly one split,
decided by a hash of its text (20% test), so train and held-out test never overlap whatever the seed
or size asked for.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from empo.errors import DataError

Question = tuple[str, int]  # (problem text, gold answer)


def _add1(r: random.Random) -> Question:
    a, b = r.randint(0, 9), r.randint(0, 9)
    return f"What is {a} + {b}?", a + b


def _sub1(r: random.Random) -> Question:
    a = r.randint(0, 9)
    b = r.randint(0, a)
    return f"What is {a} - {b}?", a - b


def _add2(r: random.Random) -> Question:
    a, b = r.randint(10, 50), r.randint(1, 50)
    return f"What is {a} + {b}?", a + b


def _sub2(r: random.Random) -> Question:
    a = r.randint(10, 50)
    b = r.randint(1, a)
    return f"What is {a} - {b}?", a - b


def _add21(r: random.Random) -> Question:
    a, b = r.randint(10, 99), r.randint(1, 9)
    return f"What is {a} + {b}?", a + b


def _sub21(r: random.Random) -> Question:
    a, b = r.randint(10, 99), r.randint(1, 9)
    return f"What is {a} - {b}?", a - b


def _mul1(r: random.Random) -> Question:
    a, b = r.randint(2, 9), r.randint(2, 9)
    return f"What is {a} × {b}?", a * b


def _mul2(r: random.Random) -> Question:
    a, b = r.randint(11, 99), r.randint(11, 99)
    return f"What is {a} × {b}?", a * b


def _expr2(r: random.Random) -> Question:
    a, b, c = r.randint(1, 9), r.randint(1, 9), r.randint(1, 9)
    return f"What is {a} + {b} - {c}?", a + b - c


def _expr3(r: random.Random) -> Question:
    a, b, c, d = r.randint(2, 9), r.randint(2, 9), r.randint(1, 9), r.randint(1, 9)
    return f"What is {a} × {b} + {c} - {d}?", a * b + c - d


_NAMES = ["Sam", "Ana", "Li", "Tom", "Maya", "Omar", "Zoe", "Ivan"]
_THINGS = ["apples", "pencils", "stickers", "marbles", "books", "cards"]


def _word(r: random.Random) -> Question:
    name, thing = r.choice(_NAMES), r.choice(_THINGS)
    kind = r.randrange(3)
    if kind == 0:
        a, b = r.randint(2, 20), r.randint(2, 20)
        return f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?", a + b
    if kind == 1:
        a = r.randint(5, 20)
        b = r.randint(1, a)
        return f"{name} has {a} {thing} and gives away {b}. How many {thing} does {name} have left?", a - b
    a, b = r.randint(2, 9), r.randint(2, 9)
    return f"{name} has {a} bags with {b} {thing} in each bag. How many {thing} does {name} have?", a * b


LEVELS: dict[str, Callable[[random.Random], Question]] = {
    "add1": _add1,    # one-digit addition
    "sub1": _sub1,    # one-digit subtraction, non-negative result
    "add2": _add2,    # two numbers up to 50
    "sub2": _sub2,
    "add21": _add21,  # a two-digit number plus a one-digit one (between add1 and add2)
    "sub21": _sub21,  # a two-digit number minus a one-digit one
    "mul1": _mul1,    # one-digit multiplication
    "mul2": _mul2,    # two-digit multiplication
    "expr2": _expr2,  # two steps: a + b - c
    "expr3": _expr3,  # three steps: a × b + c - d
    "word": _word,    # one-step word problems
}
# Calibrated on SmolLM2-135M-Instruct (eval/results/calibration.md): the levels where the majority answer of 8 samples
# is right clearly more often than one sample *and* more often than not, with room left to improve. On add2,
# expr2, mul2 and word the majority is usually wrong, so label-free RL would reinforce wrong answers there.
DEFAULT_LEVELS = ("add1", "sub1", "mul1")
TEST_FRACTION_MOD = 5  # one question in five (by hash) is held out


def split_of(problem: str) -> str:
    h = int(hashlib.sha256(problem.encode()).hexdigest()[:8], 16)
    return "test" if h % TEST_FRACTION_MOD == 0 else "train"


def generate(split: str, n: int, levels: tuple[str, ...] | list[str] = DEFAULT_LEVELS, seed: int = 0) -> list[dict]:
    """Return up to ``n`` distinct questions of ``split`` ("train" or "test"), cycling through ``levels``.

    Small levels (one-digit addition has 100 questions) run out; the others then fill the quota.
    """
    if split not in ("train", "test"):
        raise DataError(f"arithmetic split must be 'train' or 'test', got '{split}'")
    unknown = [lv for lv in levels if lv not in LEVELS]
    if unknown:
        raise DataError(f"unknown arithmetic level(s) {unknown}; known: {sorted(LEVELS)}")
    rng = random.Random(f"{seed}-{split}")
    seen: set[str] = set()
    rows: list[dict] = []
    misses = {lv: 0 for lv in levels}
    active = list(levels)
    while len(rows) < n and active:
        for level in list(active):
            if len(rows) >= n:
                break
            problem, answer = LEVELS[level](rng)
            if problem in seen or split_of(problem) != split:
                misses[level] += 1
                if misses[level] > 2000:  # this level's share of the split is exhausted
                    active.remove(level)
                continue
            misses[level] = 0
            seen.add(problem)
            digest = hashlib.sha256(problem.encode()).hexdigest()[:10]
            rows.append({"id": f"arith-{level}-{digest}", "problem": problem, "answer": str(answer),
                         "level": level, "source": "arith"})
    return rows
