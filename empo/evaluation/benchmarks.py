"""Evaluation benchmarks: where each comes from and how its gold answers are graded.

Each benchmark loads, by default, from the repository's ``data/benchmarks/<name>.jsonl`` (rows with ``id``,
``problem``, ``answer`` as in ``data/README.md``); ``--data-dir DIR`` reads ``DIR/<name>.jsonl`` instead, and
``--data-dir hub`` (or a checkout without ``data/``) loads the Hugging Face hub dataset with the column mapping
below. ``arith`` is the built-in held-out arithmetic split and needs no data; ``arith:add2+sub2`` picks its levels.

Gold rules (one grading implementation for training and evaluation: :func:`empo.grading.answers.is_equivalent`,
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

Multiple-choice benchmarks (``kind="multiple_choice"``: the natural-reasoning evaluation of the EMPO paper)
-------------------------------------------------------------------------------------------------------------
Rows hold ``id``, ``problem`` (the question), ``options`` (a list of 2-26 texts) and ``answer`` (the gold
letter); a local ``<name>.jsonl`` has these fields (others are kept). The prompt's question is the problem
followed by one line per option, ``A. text``, ``B. text``, ... (:func:`format_choices`; the layout of the official
EMPO GPQA evaluation, ``eval_natural/eval/gpqa/run_eval.py``, and of MMLU-Pro's ``evaluate_from_local.py``).

The prediction (:func:`extract_choice`) is read from the completion's **last** ``\\boxed{}`` only (no unboxed
fallback, as for math): after unwrapping ``$...$`` and ``\\text{}``-style wrappers, the content must be one
capital letter, bare (``C``), in parentheses (``(C)``, ``(C) text``), or followed by ``.``, ``:`` or ``)`` and
optionally the option's text (``C.``, ``C. 10^-4 eV``, ``C) text``). Anything else is no answer: ``C D``, ``A, C``,
a lower-case ``c``, an option's text without its letter, and ``A metal compound ...`` (a letter followed by a
space and words is a sentence, not a choice). The prediction is correct iff it is the gold letter, so a letter
that is not one of the offered options (``E`` for a 4-option question) is wrong; it still counts as boxed and as
a vote in maj@k, where votes are the letters themselves.

* **mmlu_pro** -- ``TIGER-Lab/MMLU-Pro``, test split (about 12,000 questions, up to 10 options, accuracy broken down
  by ``category``). Placeholder options ``"N/A"`` are dropped, as MMLU-Pro's ``evaluate_from_local.py``
  ``preprocess`` does, and the gold letter is recomputed from ``answer_index`` (a row whose ``answer`` letter
  and ``answer_index`` disagree, or whose gold option is ``N/A``, is an error).
* **gpqa_diamond** -- ``Idavidrein/gpqa``, config ``gpqa_diamond``, train split (its only one; 198 questions;
  the dataset is gated on the hub). The four options ``Correct Answer`` and ``Incorrect Answer 1..3`` (stripped)
  are shuffled **deterministically per question** (:func:`shuffled_options`): the permutation is drawn by
  ``random.Random`` seeded with the SHA-256 of ``"{GPQA_SHUFFLE_SEED}\\n{question}"`` (seed 0), so a question
  always shows the same order, whatever the row order, the process or ``PYTHONHASHSEED``. (The source gives the
  correct answer first; evaluations shuffle it -- simple-evals with ``random.Random(0)`` over the whole list,
  lm-eval-harness with the global ``random`` -- so the letters, though not the questions, differ between
  harnesses.)
"""

from __future__ import annotations

import hashlib
import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from empo import arithmetic
from empo.clustering.groups import analyse_group
from empo.data import DATA_DIR, DataError, DataSpec, load_questions
from empo.errors import ConfigError
from empo.grading.answers import canonical_form, is_equivalent, numeric_value
from empo.grading.extract import extract_answer

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


#: Letters of multiple-choice options, in order (MMLU-Pro uses up to J).
OPTION_LETTERS = string.ascii_uppercase
#: Placeholder option in MMLU-Pro rows with fewer than 10 real options.
MMLU_PRO_PLACEHOLDER = "N/A"


def _mmlu_pro_hub(row: dict) -> dict:
    # Columns (huggingface.co/datasets/TIGER-Lab/MMLU-Pro, README.md dataset_info): question_id, question,
    # options (list of strings), answer (letter), answer_index, cot_content, category, src.
    options, index = list(row["options"]), int(row["answer_index"])
    if not 0 <= index < len(options) or row["answer"] != OPTION_LETTERS[index]:
        raise DataError(f"MMLU-Pro question {row.get('question_id')}: answer '{row['answer']}' does not match "
                        f"answer_index {index} of its {len(options)} options")
    if options[index] == MMLU_PRO_PLACEHOLDER:
        raise DataError(f"MMLU-Pro question {row.get('question_id')}: its gold option is the placeholder 'N/A'")
    kept = [i for i, opt in enumerate(options) if opt != MMLU_PRO_PLACEHOLDER]
    return {**row, "options": [options[i] for i in kept], "answer": OPTION_LETTERS[kept.index(index)]}


#: Seed of the per-question option order of GPQA (see the module docstring).
GPQA_SHUFFLE_SEED = 0


def shuffled_options(question: str, correct: str, incorrect: list[str], seed: int = GPQA_SHUFFLE_SEED) \
        -> tuple[list[str], str]:
    """The options ``[correct, *incorrect]`` in a permutation fixed by the question's text and ``seed``, and the
    letter of the correct one. Hash-seeded (not Python's ``hash``), so the same in every process."""
    digest = hashlib.sha256(f"{seed}\n{question}".encode()).digest()
    order = list(range(1 + len(incorrect)))
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    texts = [correct, *incorrect]
    return [texts[i] for i in order], OPTION_LETTERS[order.index(0)]


def _gpqa_hub(row: dict) -> dict:
    # Columns of Idavidrein/gpqa (the names lm-evaluation-harness reads, lm_eval/tasks/gpqa/cot_zeroshot/utils.py,
    # and openai/simple-evals gpqa_eval.py): Question, Correct Answer, Incorrect Answer 1, 2, 3 (and others, kept).
    question = str(row["Question"]).strip()
    options, letter = shuffled_options(question, str(row["Correct Answer"]).strip(),
                                       [str(row[f"Incorrect Answer {i}"]).strip() for i in (1, 2, 3)])
    return {**row, "Question": question, "options": options, "answer": letter}


#: What a benchmark's answers are: ``math`` (a boxed expression, mathematical equivalence) or ``multiple_choice``
#: (lettered options in the prompt, a boxed letter, identity with the gold letter).
MATH, MULTIPLE_CHOICE = "math", "multiple_choice"
BENCHMARK_KINDS = (MATH, MULTIPLE_CHOICE)


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
    kind: str = field(default=MATH, metadata={
        "help": "'math': a boxed expression graded by mathematical equivalence; 'multiple_choice': rows carry "
                "'options', the prompt lists them lettered, the boxed letter is graded against the gold letter."})

    def __post_init__(self):
        if self.kind not in BENCHMARK_KINDS:
            raise ValueError(f"benchmark '{self.name}': kind '{self.kind}' is not one of {list(BENCHMARK_KINDS)}")


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in [
    Benchmark("arith", breakdown=("level",)),
    Benchmark("math500", "HuggingFaceH4/MATH-500", id_field="unique_id", breakdown=("level", "subject")),
    Benchmark("minerva_math", "math-ai/minervamath", question_field="question", rel_tol=1e-4),
    Benchmark("olympiadbench", "Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train", question_field="question",
              answer_field="final_answer", id_field="id", hub_row=_olympiad_hub, multiple_answers=True),
    Benchmark("aime24", "HuggingFaceH4/aime_2024", hub_split="train", id_field="id", hub_row=_integer_answer_hub),
    Benchmark("amc23", "math-ai/amc23", question_field="question", hub_row=_integer_answer_hub),
    Benchmark("gsm8k", "openai/gsm8k", "main", question_field="question", hub_row=_gsm8k_hub),
    Benchmark("mmlu_pro", "TIGER-Lab/MMLU-Pro", question_field="question", id_field="question_id",
              hub_row=_mmlu_pro_hub, breakdown=("category",), kind=MULTIPLE_CHOICE),
    # GPQA has no id column that the harnesses read: the row index is the id (the split is fixed)
    Benchmark("gpqa_diamond", "Idavidrein/gpqa", "gpqa_diamond", "train", question_field="Question",
              hub_row=_gpqa_hub, kind=MULTIPLE_CHOICE),
]}


def get_benchmark(name: str) -> Benchmark:
    """A registered benchmark, or ``arith:LEVEL[+LEVEL...]``: the held-out arithmetic split of those levels."""
    if name.startswith("arith:"):
        levels = arith_levels(name)
        unknown = [lv for lv in levels if lv not in arithmetic.LEVELS]
        if unknown or not levels:
            raise ConfigError(f"benchmark '{name}': unknown arithmetic level(s) {unknown}; known: "
                             f"{', '.join(arithmetic.LEVELS)} "
                             "(join several with '+', e.g. arith:add2+sub2)")
        return Benchmark(name, breakdown=("level",))
    if name not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark '{name}'; known: {', '.join(BENCHMARKS)}, or arith:LEVEL[+LEVEL...]")
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
        where = str(path)
    else:
        rows = load_questions(DataSpec(name=bench.hub_id, subset=bench.hub_subset, split=bench.hub_split,
                                       question_field=bench.question_field, answer_field=bench.answer_field,
                                       id_field=bench.id_field, limit=limit), transform=bench.hub_row)
        where = f"hub dataset '{bench.hub_id}'"
    if bench.kind == MULTIPLE_CHOICE:
        rows = [check_choice_row(r, i, where) for i, r in enumerate(rows)]
    return rows


# --------------------------------------------------------------------------------------------------
# Multiple choice
# --------------------------------------------------------------------------------------------------

def check_choice_row(row: dict, index: int, where: str) -> dict:
    """The row with stripped options and an upper-case gold letter; a DataError naming the row if it is not a
    well-formed multiple-choice question (2-26 non-empty options, the gold letter one of them)."""
    def bad(what: str) -> DataError:
        return DataError(f"{where}: row {index} (id {row.get('id')}) {what}; a multiple-choice row has 'problem', "
                         f"'options' (a list of 2-{len(OPTION_LETTERS)} texts) and 'answer' (the gold letter)")

    options = row.get("options")
    if not isinstance(options, (list, tuple)):
        raise bad(f"has no list of 'options' (got {type(options).__name__})")
    options = [str(o).strip() for o in options]
    if not 2 <= len(options) <= len(OPTION_LETTERS) or not all(options):
        raise bad(f"has {len(options)} options{', some empty' if not all(options) else ''}")
    gold = str(row["answer"]).strip().upper()
    if gold not in OPTION_LETTERS[:len(options)]:
        raise bad(f"has gold answer '{row['answer']}', not one of its option letters "
                  f"{OPTION_LETTERS[0]}-{OPTION_LETTERS[len(options) - 1]}")
    return {**row, "options": options, "answer": gold}


def format_choices(question: str, options: list[str]) -> str:
    """The question, then one line per option: ``A. text``."""
    return "\n".join([question, *(f"{OPTION_LETTERS[i]}. {opt}" for i, opt in enumerate(options))])


def prompt_text(benchmark: Benchmark, row: dict) -> str:
    """What the prompt template's ``{problem}`` receives for a row: the problem, with lettered options for MC."""
    if benchmark.kind == MULTIPLE_CHOICE:
        return format_choices(row["problem"], row["options"])
    return row["problem"]


_WRAPPER_RE = re.compile(r"^\\(?:text|textbf|textrm|textit|mathrm|mathbf|mbox)\s*\{(.*)\}$", re.DOTALL)
# one capital letter: bare, in parentheses (optionally followed by text), or followed by . : ) and optional text
_CHOICE_RE = re.compile(r"^(?:\(([A-Z])\)(?:[\s.:].*)?|([A-Z])(?:[.:)](?:\s.*)?)?)$", re.DOTALL)


def extract_choice(text: str) -> str | None:
    """The option letter in the completion's last ``\\boxed{}``, or None (the rule: the module docstring)."""
    content = extract_answer(text)
    while content is not None:
        inner = content.strip()
        if len(inner) >= 2 and inner[0] == inner[-1] == "$":
            inner = inner[1:-1].strip()
        m = _WRAPPER_RE.match(inner)
        inner = m.group(1).strip() if m else inner
        if inner == content:
            break
        content = inner
    m = _CHOICE_RE.match(content) if content else None
    return (m.group(1) or m.group(2)) if m else None


def extract_prediction(benchmark: Benchmark, text: str) -> str | None:
    """The answer of a completion as the benchmark reads it: an option letter (MC) or the last boxed expression."""
    return extract_choice(text) if benchmark.kind == MULTIPLE_CHOICE else extract_answer(text)


def vote_labels(benchmark: Benchmark, answers: list[str | None]) -> list[int | None]:
    """One cluster label per sample for maj@k (None: no answer, abstains). MC votes are the letters themselves;
    math answers are clustered by the training equivalence."""
    if benchmark.kind == MULTIPLE_CHOICE:
        labels: dict[str, int] = {}
        return [None if a is None else labels.setdefault(a, len(labels)) for a in answers]
    cluster_ids = analyse_group(answers).cluster_ids
    return [c if a is not None else None for c, a in zip(cluster_ids, answers)]


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
    if benchmark.kind == MULTIPLE_CHOICE:
        return prediction is not None and prediction == row["answer"]
    if prediction is None or not canonical_form(prediction):
        return False
    gold = row["answer"]
    if benchmark.multiple_answers and row.get("is_multiple_answer", True):
        gold_parts = [p for a in row.get("answers") or [gold] for p in split_top_level(a)]
        if len(gold_parts) > 1:
            return (_match_all(split_top_level(prediction), gold_parts, benchmark.rel_tol)
                    or _equal(prediction, gold, benchmark.rel_tol))
    return _equal(prediction, gold, benchmark.rel_tol)

