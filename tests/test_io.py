import json

from empo.io import JsonlAppender, atomic_write_json, read_jsonl


def test_atomic_write_leaves_no_temp(tmp_path):
    atomic_write_json(tmp_path / "a" / "s.json", {"x": 1})
    assert json.loads((tmp_path / "a" / "s.json").read_text()) == {"x": 1}
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["s.json"]


def test_torn_tail_is_dropped_and_repaired(tmp_path):
    f = tmp_path / "r.jsonl"
    f.write_text('{"id": 1}\n{"id": 2}\n{"id": 3, "tr')
    assert [r["id"] for r in read_jsonl(f)] == [1, 2]
    with JsonlAppender(f) as sink:
        sink.write({"id": 3})
    assert [r["id"] for r in read_jsonl(f)] == [1, 2, 3]
