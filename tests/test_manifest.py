"""data/: the committed files match data/manifest.json, and `empo data prepare` rebuilds them from (faked) hub rows."""

import json
import shutil

import pytest

from empo import data as data_module
from empo import manifest
from empo.cli import main as cli_main
from empo.data import DATA_DIR, DataError


def committed_rows(name):
    entry = manifest.load_manifest()[name]
    text = (DATA_DIR / entry["file"]).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n") if line.strip()]


# committed row -> the row the hub source holds (the inverse of the manifest's mapping), per benchmark
TO_HUB = {
    "gsm8k": lambda i, r: {"question": r["problem"], "answer": f"Some reasoning.\n#### {r['answer']}"},
    "amc23": lambda i, r: {"id": int(r["id"].split("/")[1]), "question": r["problem"], "answer": float(r["answer"])},
    "math500": lambda i, r: {"unique_id": r["id"], "problem": r["problem"], "answer": r["answer"], "solution": "...",
                             "subject": r["subject"], "level": r["level"]},
}


def test_committed_files_match_the_manifest():
    entries = manifest.load_manifest()
    assert set(entries) == {"math500", "minerva_math", "olympiadbench", "aime24", "amc23", "gsm8k", "gsm8k_train",
                            "numina_math_20k", "facts_freeform"}
    assert manifest.check() == []
    assert entries["numina_math_20k"]["rows"] == 20000 and entries["gsm8k"]["rows"] == 1319


def test_check_names_a_changed_file(tmp_path):
    shutil.copytree(DATA_DIR, tmp_path / "data", ignore=shutil.ignore_patterns("train"))
    path = tmp_path / "data" / "benchmarks" / "amc23.jsonl"
    path.write_text(path.read_text().replace('"27"', '"28"', 1))
    problems = manifest.check(data_dir=tmp_path / "data")
    assert any(p.startswith("benchmarks/amc23.jsonl: sha256") for p in problems)
    assert "train/numina_math_20k.jsonl: missing" in problems


@pytest.mark.parametrize("name", sorted(TO_HUB))
def test_prepare_rebuilds_the_committed_file_from_hub_rows(tmp_path, monkeypatch, name):
    shutil.copytree(DATA_DIR / "benchmarks", tmp_path / "data" / "benchmarks")
    shutil.copy(DATA_DIR / "manifest.json", tmp_path / "data")
    target = tmp_path / "data" / "benchmarks" / f"{name}.jsonl"
    committed = target.read_bytes()
    target.unlink()  # prepare must write it anew
    hub_rows = [TO_HUB[name](i, r) for i, r in enumerate(committed_rows(name))]
    source = manifest.load_manifest()[name]["source"]
    asked = []

    def fake_hub(spec):
        asked.append((spec.name, spec.subset, spec.split))
        return hub_rows

    monkeypatch.setattr(manifest, "read_hub", fake_hub)
    assert manifest.prepare(name, data_dir=tmp_path / "data") == target
    assert target.read_bytes() == committed
    assert asked == [(source["hub_id"], source["subset"], source["split"])]

    hub_rows[3] = {**hub_rows[3], **({"question": "changed"} if "question" in hub_rows[3] else {"problem": "changed"})}
    with pytest.raises(DataError, match=rf"benchmarks/{name}.jsonl: the rebuild .* does not match the manifest .*"
                                        rf"first difference at {committed_rows(name)[3]['id']}"):
        manifest.prepare(name, data_dir=tmp_path / "data")
    assert target.read_bytes() == committed  # the committed file is left alone
    assert (target.parent / f"{name}.jsonl.rebuilt").exists()


def test_prepare_refuses_a_file_without_hub_source_and_unknown_names(capsys):
    with pytest.raises(DataError, match="numina_math_20k.jsonl has no hub source"):
        manifest.prepare("numina_math_20k")
    assert cli_main(["data", "prepare", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no data file 'nope' in the manifest" in err and len(err.strip().splitlines()) == 1


def test_data_check_command(capsys):
    assert cli_main(["data", "check"]) == 0
    assert "match data/manifest.json" in capsys.readouterr().out


def test_bare_names_resolve_to_repository_files(monkeypatch):
    monkeypatch.setattr(data_module, "read_hub", lambda spec: pytest.fail(f"hub asked for {spec.name}"))
    rows = data_module.load_questions(data_module.DataSpec(name="numina_math_20k", limit=3))
    assert [r["id"] for r in rows] == ["numina20k/0", "numina20k/1", "numina20k/2"]
    assert data_module.repo_data_file("../gsm8k") is None and data_module.repo_data_file("gsm8k").name == "gsm8k.jsonl"
