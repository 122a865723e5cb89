"""Question sources: the built-in arithmetic task, the repository's data files, local files, and hub datasets.

A dataset name is resolved in this order: ``arith[:levels]``; an existing path (``.jsonl``/``.json``/``.parquet``);
the name of a file in the repository's ``data/`` (``math500`` is ``data/benchmarks/math500.jsonl``,
``numina_math_20k`` is ``data/train/numina_math_20k.jsonl``; see ``data/README.md``); otherwise a hub dataset id.

Every source comes out as a list of rows with the same three columns, whatever it called them:
``id``, ``problem`` (the question) and ``answer`` (the gold answer, or ``None`` for unlabeled data).
Other columns are kept. A row without the mapped field is an error naming the file, the row and the field
(``answer_optional``: a row without a gold answer keeps ``answer: None`` instead).

Hub datasets whose columns are known (:data:`HUB_SCHEMAS`) need no mapping: a field left at its default names
the dataset's own column (``qingyangzhang/natural_reasoning_simple``: ``question`` is the problem,
``reference_answer`` the answer, logged only and optional); a field the recipe sets wins.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from empo import arithmetic, resources
from empo.errors import DataError


@dataclass
class DataSpec:
    """Where questions come from and which columns hold what."""

    name: str = field(default="arith", metadata={"help": "'arith' (or 'arith:add1,mul1' to pick levels), a local "
                                                 ".jsonl/.json/.parquet file, or a hub dataset id."})
    split: str = field(default="train", metadata={"help": "Split: 'train'/'test' for arith and hub datasets."})
    question_field: str = field(default="problem", metadata={"help": "Column holding the question text."})
    answer_field: str | None = field(default="answer", metadata={
        "help": "Column holding the gold answer (logged, and read only by the supervised reward); None if unlabeled."})
    id_field: str | None = field(default="id", metadata={"help": "Column with a stable row id; row index if absent."})
    subset: str | None = field(default=None, metadata={"help": "Hub dataset config name."})
    limit: int | None = field(default=None, metadata={"help": "Keep the first N rows (arith: generate N questions)."})
    seed: int = field(default=0, metadata={"help": "Seed of the arithmetic generator."})
    answer_optional: bool = field(default=False, metadata={
        "help": "A row without a gold answer (missing, null or blank) keeps answer None instead of being an error "
                "(reference answers that are only logged, e.g. natural_reasoning's, missing for some questions)."})


@dataclass(frozen=True)
class HubSchema:
    """The columns of a known hub dataset, so that a recipe naming only the dataset maps it right."""

    question_field: str = field(metadata={"help": "Column with the question."})
    answer_field: str | None = field(metadata={"help": "Column with the (reference) answer; None: unlabeled."})
    id_field: str | None = field(default=None, metadata={"help": "Column with a stable id (row index if None)."})
    answer_optional: bool = field(default=False, metadata={"help": "Rows may lack the answer (kept as None)."})
    source: str = field(default="", metadata={"help": "Where the column names were read (repository and path)."})

    def apply(self, spec: DataSpec) -> DataSpec:
        """``spec`` with every field it left at DataSpec's default replaced by this dataset's column."""
        default = DataSpec()
        changes = {name: getattr(self, name) for name in ("question_field", "answer_field", "id_field")
                   if getattr(spec, name) == getattr(default, name)}
        if spec.answer_optional == default.answer_optional:
            changes["answer_optional"] = self.answer_optional
        return replace(spec, **changes)


# Both natural-reasoning sets: the official EMPO code reads example["question"] for the prompt
# (github.com/QingyangZhang/EMPO, src/open_r1/empo.py, make_conversation: 'natural' datasets) and
# reference_answer for its supervised baseline (src/open_r1/rewards.py, get_general_accuracy_reward:
# accuracy_reward(completions, reference_answer, question)); facebook/natural_reasoning's card (huggingface.co/
# datasets/facebook/natural_reasoning, README.md) says 18.29% of its questions have no reference answer, so the
# answer is optional. Its third column, responses (Llama-3.3-70B's answers), is kept but never read.
_NATURAL_REASONING = dict(question_field="question", answer_field="reference_answer", id_field=None,
                          answer_optional=True,
                          source="QingyangZhang/EMPO src/open_r1/empo.py + src/open_r1/rewards.py")
HUB_SCHEMAS: dict[str, HubSchema] = {
    "qingyangzhang/natural_reasoning_simple": HubSchema(**_NATURAL_REASONING),
    "facebook/natural_reasoning": HubSchema(**_NATURAL_REASONING),
}


ARITH_DEFAULT_SIZE = {"train": 2000, "test": 200}

#: The shipped data (the repository's ``data/``: benchmarks and training prompts; ``data/manifest.json`` lists them).
DATA_DIR = resources.root("data")
DATA_SUBDIRS = ("benchmarks", "train")


def repo_data_file(name: str) -> Path | None:
    """A shipped data file: ``data/<benchmarks|train>/<name>.jsonl`` for a bare ``name``, or ``name`` itself when it is
    a repository path (``data/train/numina_math_20k.jsonl``) and no such file is here; else ``None``."""
    if name.startswith("data/") and not Path(name).exists():
        return resources.resolve(name, "data", suffix=".jsonl")
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    for sub in DATA_SUBDIRS:
        path = DATA_DIR / sub / f"{name}.jsonl"
        if path.is_file():
            return path
    return None


def load_questions(spec: DataSpec, transform: Callable[[dict], dict] | None = None) -> list[dict]:
    """Rows of ``spec`` in the common schema; ``transform`` first rewrites each raw row (e.g. GSM8K's '#### 18')."""
    name = spec.name.strip()
    if name == "arith" or name.startswith("arith:"):
        levels = tuple(lv for lv in name.partition(":")[2].split(",") if lv) or arithmetic.DEFAULT_LEVELS
        n = spec.limit or ARITH_DEFAULT_SIZE.get(spec.split, 200)
        return arithmetic.generate(spec.split, n, levels=levels, seed=spec.seed)
    path = repo_data_file(name) or Path(name).expanduser()
    if path.suffix in (".jsonl", ".json", ".parquet") or path.exists():
        if not path.is_file():
            raise DataError(f"dataset file '{name}' does not exist")
        raw = _read_local(path)
        where = str(path)
    else:
        if name in HUB_SCHEMAS:
            spec = HUB_SCHEMAS[name].apply(spec)
        # A transform maps the raw columns itself (a field it misses is named by _transform) and the mapped fields
        # are checked on its output (_map_row), so the hub is asked only for the data, not for the mapped columns.
        raw = read_hub(spec if transform is None else replace(spec, question_field="", answer_field=None))
        where = f"hub dataset '{name}' (split '{spec.split}')"
    if transform is not None:
        raw = [_transform(transform, r, i, where) for i, r in enumerate(raw)]
    rows = [_map_row(r, i, spec, where) for i, r in enumerate(raw)]
    return rows[: spec.limit] if spec.limit else rows


def _read_local(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import datasets

        return list(datasets.Dataset.from_parquet(str(path)))
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        rows = json.loads(text)
    else:
        rows = []
        # split on "\n" only: str.splitlines() would also split at U+2028 and other separators inside strings
        for lineno, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {lineno} is not valid JSON ({e.msg})") from None
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise DataError(f"{path}: row {i} is a {type(r).__name__}, expected a JSON object")
    return rows


def read_hub(spec: DataSpec) -> list[dict]:
    import datasets

    try:
        ds = datasets.load_dataset(spec.name, spec.subset, split=spec.split)
    except Exception as e:  # the hub's errors are long; keep the cause and say what was asked for
        raise DataError(f"could not load hub dataset '{spec.name}' (subset {spec.subset}, split '{spec.split}'): "
                        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. "
                        "Offline? Pass a local .jsonl/.parquet file instead.") from e
    missing = [f for f in (spec.question_field, spec.answer_field) if f and f not in ds.column_names]
    if missing:
        raise DataError(f"hub dataset '{spec.name}' has no column(s) {missing}; columns are {ds.column_names}")
    return list(ds)


def _transform(transform: Callable[[dict], dict], row: dict, index: int, where: str) -> dict:
    try:
        return transform(row)
    except KeyError as e:
        raise DataError(f"{where}: row {index} has no field {e} (fields: {sorted(row)})") from None


def _map_row(row: dict, index: int, spec: DataSpec, where: str) -> dict:
    def need(field_name: str):
        if field_name not in row or row[field_name] is None:
            raise DataError(f"{where}: row {index} has no field '{field_name}' "
                            f"(fields: {sorted(row)}); set the field mapping to the right column")
        return row[field_name]

    out = {k: v for k, v in row.items() if k not in ("id", "problem", "answer")}
    out["problem"] = str(need(spec.question_field))
    if spec.answer_field and spec.answer_optional:
        gold = row.get(spec.answer_field)
        out["answer"] = None if gold is None or not str(gold).strip() else str(gold)
    else:
        out["answer"] = str(need(spec.answer_field)) if spec.answer_field else None
    out["id"] = str(row[spec.id_field]) if spec.id_field and row.get(spec.id_field) is not None else str(index)
    return out
