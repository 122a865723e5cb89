"""Evaluation benchmarks: where each comes from and how its gold answers are graded.

Each benchmark loads, by default, from the repository's ``data/benchmarks/<name>.jsonl`` (rows with ``id``,
``problem``, ``answer`` as in ``data/README.md``); ``--data-dir DIR`` reads ``DIR/<name>.jsonl`` instead, and
``--data-dir hub`` (or a checkout without ``data/``) loads the Hugging Face hub dataset with the column mapping
below. ``arith`` is the built-in held-out arithmetic split and needs no data; ``arith:add2+sub2`` picks its levels.

Gold rules (one grading implementation for training and evaluation: :func:`empo.answers.is_equivalent`,
with these benchmark-specific additions):

* **all** -- the prediction is the last ``\\boxed{}`` of the completion (no last-number fallback: an
  unboxed completion is wrong); it is correct when ``is_equivalent(prediction, gold)``: canonical forms
  (units, ``$``, ``x=``, degree marks and thousands separators dropped), exact numbers, then math-verify
  in both directions under a timeout. A comparison that times out counts as wrong.
* **minerva_math** -- answers are rounded physical quantities, often in scientific notation
  (``4.5e33``, ``4.4 \\times 10^{7}``) and with units. Numeric predictions are correct within a relative
  tolerance of 1e-4 of the gold (the tolerance of Qwen2.5-Math's evaluation, which the EMPO paper's
  numbers come from); units are dropped by the canonical form.
* **olympiadbench** -- rows marked ``is_multiple_answer`` hold several answers, joined by ``$,$`` in the
  source (``69$,$84``) or listed as a comma-separated sequence (``(6,3),(9,3)``). The gold and the
  prediction are split at top-level commas (not inside brackets or braces) and ``$,$``; the prediction is
  correct when its parts match the gold parts one to one, in any order, or when it is equivalent to the
  whole gold string. Single answers use the common rule.
* **amc23**, **aime24** -- integer answers (AMC's were floats in some sources; ``27.0`` is read as ``27``);
  the common rule compares them exactly.
* **gsm8k** -- the gold is the number after ``####`` with thousands separators removed; ``$18``,
  ``18.00`` and ``18 dollars`` are all ``18`` by the common rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

from empo import arithmetic
from empo.answers import canonical_form, is_equivalent, numeric_value
from empo.data import DATA_DIR, DataError, DataSpec, load_questions

#: The five benchmarks the EMPO paper averages over (its "Avg." column).
PAPER_BENCHMARKS = ("math500", "minerva_math", "olympiadbench", "aime24", "amc23")


def _gsm8k_hub(row: dict) -> dict:
    return {**row, "answer": row["answer"].split("####")[-1].strip().replace(",", "")}


def _olympiad_hub(row: dict) -> dict:
    answers = [str(a).strip().strip("$") for a in row["final_answer"]]
    return {**row, "final_answer": ", ".join(answers), "answers": answers}


def _integer_answer_hub(row: dict) -> dict:
    value = row["answer"]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return {**row, "answer": str(value)}


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its hub source and column mapping, and how its answers are graded."""

    name: str
    hub_id: str | None = field(default=None, metadata={"help": "Hub dataset id (None: built in)."})
    hub_subset: str | None = field(default=None, metadata={"help": "Hub dataset config."})
    hub_split: str = field(default="test", metadata={"help": "Hub split."})
    question_field: str = field(default="problem", metadata={"help": "Hub column with the question."})
    answer_field: str = field(default="answer", metadata={"help": "Hub column with the gold answer."})
    id_field: str | None = field(default=None, metadata={"help": "Hub column with a stable id (row index if None)."})
    hub_row: Callable[[dict], dict] | None = field(default=None, metadata={
        "help": "Rewrites a raw hub row before the field mapping (e.g. GSM8K's '#### 18' -> '18')."})
    breakdown: tuple[str, ...] = field(default=(), metadata={"help": "Row fields to report accuracy by."})
    rel_tol: float | None = field(default=None, metadata={
        "help": "Relative tolerance for numeric answers (None: the exact rule of is_equivalent)."})
    multiple_answers: bool = field(default=False, metadata={"help": "Rows may hold several answers (OlympiadBench)."})


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in [
    Benchmark("arith", breakdown=("level",)),
    Benchmark("math500", "HuggingFaceH4/MATH-500", id_field="unique_id", breakdown=("level", "subject")),
    Benchmark("minerva_math", "math-ai/minervamath", question_field="question", rel_tol=1e-4),
    Benchmark("olympiadbench", "Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train", question_field="question",
              answer_field="final_answer", id_field="id", hub_row=_olympiad_hub, multiple_answers=True),
    Benchmark("aime24", "HuggingFaceH4/aime_2024", hub_split="train", id_field="id", hub_row=_integer_answer_hub),
    Benchmark("amc23", "math-ai/amc23", question_field="question", hub_row=_integer_answer_hub),
    Benchmark("gsm8k", "openai/gsm8k", "main", question_field="question", hub_row=_gsm8k_hub),
]}


def get_benchmark(name: str) -> Benchmark:
    """A registered benchmark, or ``arith:LEVEL[+LEVEL...]``: the held-out arithmetic split of those levels."""
    if name.startswith("arith:"):
        levels = arith_levels(name)
        unknown = [lv for lv in levels if lv not in arithmetic.LEVELS]
        if unknown or not levels:
            raise ValueError(f"benchmark '{name}': unknown arithmetic level(s) {unknown}; known: "
                             f"{', '.join(arithmetic.LEVELS)} "
                             "(join several with '+', e.g. arith:add2+sub2)")
        return Benchmark(name, breakdown=("level",))
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark '{name}'; known: {', '.join(BENCHMARKS)}, or arith:LEVEL[+LEVEL...]")
    return BENCHMARKS[name]


def arith_levels(name: str) -> tuple[str, ...]:
    """The levels of an ``arith:a+b`` benchmark name; () for plain ``arith`` (the default levels)."""
    return tuple(lv for lv in name.partition(":")[2].split("+") if lv)


#: ``data_dir`` value that forces the hub source.
HUB = "hub"


def load_benchmark(name: str, data_dir: str | Path | None = None, limit: int | None = None) -> list[dict]:
    """The benchmark's rows (``id``, ``problem``, ``answer`` and extra fields), first ``limit`` of them.

    ``data_dir``: ``None`` -> the repository's ``data/benchmarks`` when it has the file, else the hub;
    ``"hub"`` -> the hub; a directory -> ``<data_dir>/<name>.jsonl``.
    """
    bench = get_benchmark(name)
    if bench.hub_id is None:  # the generator: 'arith' (default levels) or 'arith:a+b'; --limit generates that many
        levels = arith_levels(name)
        return load_questions(DataSpec(name="arith" + (":" + ",".join(levels) if levels else ""), split="test",
                                       limit=limit))[:limit]
    if data_dir is None and (DATA_DIR / "benchmarks" / f"{name}.jsonl").is_file():
        data_dir = DATA_DIR / "benchmarks"
    if data_dir is not None and str(data_dir) != HUB:
        path = Path(data_dir).expanduser() / f"{name}.jsonl"
        if not path.is_file():
            raise DataError(f"benchmark file '{path}' does not exist (--data-dir holds one <benchmark>.jsonl each)")
        rows = load_questions(DataSpec(name=str(path), limit=limit))
    else:
        rows = load_questions(DataSpec(name=bench.hub_id, subset=bench.hub_subset, split=bench.hub_split,
                                       question_field=bench.question_field, answer_field=bench.answer_field,
                                       id_field=bench.id_field, limit=limit), transform=bench.hub_row)
    return rows


# --------------------------------------------------------------------------------------------------
# Grading
# --------------------------------------------------------------------------------------------------

_OPEN, _CLOSE = "([{", ")]}"


def split_top_level(answer: str) -> list[str]:
    """Split at commas outside brackets/braces and at OlympiadBench's ``$,$``; empty parts dropped."""
    parts, depth, current = [], 0, []
    text = answer.replace("$,$", ",")
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "{}":  # \{ \} are set braces: they nest too
            depth += 1 if text[i + 1] == "{" else -1
            current.append(text[i:i + 2])
            i += 2
            continue
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth = max(depth - 1, 0)
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return [p.strip().strip("$").strip() for p in parts if p.strip().strip("$").strip()]


def _equal(pred: str, gold: str, rel_tol: float | None) -> bool:
    if rel_tol is not None:
        x, y = numeric_value(pred), numeric_value(gold)
        if x is not None and y is not None:
            return abs(x - y) <= Fraction(rel_tol) * max(abs(x), abs(y))
    return is_equivalent(pred, gold)


def _match_all(pred_parts: list[str], gold_parts: list[str], rel_tol: float | None) -> bool:
    """A one-to-one matching of prediction parts to gold parts, in any order (greedy suffices: equivalence
    is transitive within a row's few distinct answers)."""
    if len(pred_parts) != len(gold_parts):
        return False
    left = list(gold_parts)
    for p in pred_parts:
        hit = next((g for g in left if _equal(p, g, rel_tol)), None)
        if hit is None:
            return False
        left.remove(hit)
    return True


def grade(benchmark: Benchmark, prediction: str | None, row: dict) -> bool:
    """Whether an extracted answer is correct for a benchmark row (``None``: no answer, wrong)."""
    if prediction is None or not canonical_form(prediction):
        return False
    gold = row["answer"]
    if benchmark.multiple_answers and row.get("is_multiple_answer", True):
        gold_parts = [p for a in row.get("answers") or [gold] for p in split_top_level(a)]
        if len(gold_parts) > 1:
            return (_match_all(split_top_level(prediction), gold_parts, benchmark.rel_tol)
                    or _equal(prediction, gold, benchmark.rel_tol))
    return _equal(prediction, gold, benchmark.rel_tol)

