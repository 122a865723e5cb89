"""The repository's data files and how each is rebuilt from its hub source (``empo data check|prepare``).

``data/manifest.json`` lists every committed file under ``data/``: its row count and sha256, its licence, and its
*source*: the hub dataset (id, subset, split), the column mapping, the id template and the extra columns kept.
``empo data check`` verifies the committed files against the manifest; ``empo data prepare NAME`` downloads the
source, maps it into the common schema and writes the file only if it matches the manifest (otherwise it writes
``<file>.rebuilt`` beside it and names the first differing row).

A file's rows are written canonically: one ``json.dumps(row, ensure_ascii=False)`` per line, keys in the order of
the source's ``columns`` (``id``, ``problem``, ``answer``, ``source`` and the source columns kept), so a rebuild is
byte-identical when the source is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from empo.data import DATA_DIR, DataError, DataSpec, read_hub
from empo.evaluation.benchmarks import _gsm8k_hub, _integer_answer_hub, _olympiad_hub
from empo.io import atomic_write_text

MANIFEST = DATA_DIR / "manifest.json"


#: Row rewrites a source may name (``source.transform``); the same ones ``empo eval`` applies to hub rows.
TRANSFORMS: dict[str, Callable[[dict], dict]] = {
    "gsm8k_hash_answer": _gsm8k_hub,
    "olympiad_answers": _olympiad_hub,
    "integer_answer": _integer_answer_hub,
}


def load_manifest(path: Path = MANIFEST) -> dict[str, dict]:
    """Name (the file's stem) -> entry."""
    if not path.is_file():
        raise DataError(f"data manifest '{path}' does not exist")
    entries = json.loads(path.read_text(encoding="utf-8"))["files"]
    return {Path(e["file"]).stem: e for e in entries}


def serialise(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def map_source_rows(raw: list[dict], source: dict) -> list[dict]:
    """Hub rows -> rows in the common schema, as the manifest's ``source`` block says."""
    transform = TRANSFORMS[source["transform"]] if source.get("transform") else None
    out = []
    for index, row in enumerate(raw):
        row = transform(row) if transform else row
        mapped = {"id": source["id"].format(index=index, **row), "problem": row[source["question_field"]],
                  "answer": str(row[source["answer_field"]]), "source": source["tag"]}
        mapped.update({k: row[k] for k in source["columns"] if k not in mapped and k in row})
        out.append({k: mapped[k] for k in source["columns"] if k in mapped})
    return out


def check(name: str | None = None, data_dir: Path = DATA_DIR) -> list[str]:
    """Problems with the committed files (rows or sha256 off the manifest, file missing); empty when all match."""
    entries = load_manifest(data_dir / "manifest.json")
    problems = []
    for stem, entry in entries.items():
        if name not in (None, stem):
            continue
        path = data_dir / entry["file"]
        if not path.is_file():
            problems.append(f"{entry['file']}: missing")
            continue
        text = path.read_text(encoding="utf-8")
        rows = sum(1 for line in text.split("\n") if line.strip())
        if rows != entry["rows"]:
            problems.append(f"{entry['file']}: {rows} rows, manifest says {entry['rows']}")
        if digest(text) != entry["sha256"]:
            problems.append(f"{entry['file']}: sha256 {digest(text)[:12]}… differs from the manifest's "
                            f"{entry['sha256'][:12]}…")
    if name is not None and name not in entries:
        raise DataError(f"no data file '{name}' in the manifest; known: {', '.join(sorted(entries))}")
    return problems


def prepare(name: str, data_dir: Path = DATA_DIR) -> Path:
    """Rebuild ``name`` from its hub source; write it when it matches the manifest, else raise naming the difference."""
    entries = load_manifest(data_dir / "manifest.json")
    if name not in entries:
        raise DataError(f"no data file '{name}' in the manifest; known: {', '.join(sorted(entries))}")
    entry = entries[name]
    source = entry["source"]
    if not source.get("hub_id"):
        note = source.get("note", "see data/README.md")
        raise DataError(f"{entry['file']} has no hub source to rebuild from: {note}")
    raw = read_hub(DataSpec(name=source["hub_id"], subset=source.get("subset"), split=source["split"],
                             question_field=None, answer_field=None))
    try:
        rows = map_source_rows(raw, source)
    except KeyError as e:
        raise DataError(f"hub dataset '{source['hub_id']}' rows have no field {e}; the manifest's mapping for "
                        f"{entry['file']} no longer fits the source") from None
    text = serialise(rows)
    path = data_dir / entry["file"]
    if len(rows) == entry["rows"] and digest(text) == entry["sha256"]:
        atomic_write_text(path, text)
        return path
    rebuilt = path.with_name(path.name + ".rebuilt")
    atomic_write_text(rebuilt, text)
    committed = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()] \
        if path.is_file() else []
    first = next((i for i, (a, b) in enumerate(zip(rows, committed)) if a != b), min(len(rows), len(committed)))
    where = rows[first]["id"] if first < len(rows) else f"row {first}"
    raise DataError(f"{entry['file']}: the rebuild from '{source['hub_id']}' ({len(rows)} rows, sha256 "
                    f"{digest(text)[:12]}…) does not match the manifest ({entry['rows']} rows, "
                    f"{entry['sha256'][:12]}…); first difference at {where}; written to {rebuilt}")
